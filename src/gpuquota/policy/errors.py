"""The error an operator sees for a profile that cannot be used."""

from __future__ import annotations

from gpuquota.errors import UserError


class PolicyError(UserError):
    """A profile is missing, unreadable or invalid. The message names the file, the field path and the problem,
    e.g. ``my-profile.yaml: rules[2] (tier2-cap).cap.amount: must be at least 0 (got -5)``."""
