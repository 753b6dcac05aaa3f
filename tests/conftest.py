"""Shared test configuration. Subsystem fixtures live beside their tests (tests/<subsystem>/conftest.py)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# CI machines have 2 cores shared with a PostgreSQL server: give property tests room, keep them deterministic.
settings.register_profile(
    "ci", deadline=None, derandomize=True, max_examples=200, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")
