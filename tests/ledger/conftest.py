"""Fixtures: a real PostgreSQL server for the session, and every ledger test run against SQLite and PostgreSQL.

Other suites reuse the server through ``postgres_server_url`` / ``postgres_url`` (import them from here into their
own conftest) or the plain ``tests.pgserver.postgres_server()`` context manager.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuquota.ledger import open_ledger
from gpuquota.ledger.store import SqlLedger
from tests.pgserver import fresh_ledger_database, postgres_server


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """One throwaway PostgreSQL server per test session (never skipped: a missing server is a failure)."""
    with postgres_server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """An empty database of its own for one test."""
    with fresh_ledger_database(postgres_server_url) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    with fresh_ledger_database(request.getfixturevalue("postgres_server_url")) as url:
        yield url


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[SqlLedger]:
    opened = open_ledger(ledger_url)
    try:
        yield opened
    finally:
        opened.close()
