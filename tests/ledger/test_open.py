"""Opening a ledger: bad URLs get clear errors, an unreachable or locked database is reported as unavailable."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gpuquota.ledger import LedgerError, LedgerUnavailable, ReserveStatus, open_ledger
from gpuquota.ledger.sqlite import SqliteDatabase
from gpuquota.ledger.store import SqlLedger
from tests.ledger.builders import NOW, reservation
from tests.pgserver import _free_port, running_postgres


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root:hunter2@db/ledger", "unsupported ledger URL 'db/ledger'"),
        ("ledger.db", "unsupported ledger URL"),
        ("sqlite:///", "names no file"),
        ("sqlite:///no/such/dir/ledger.db", "does not exist"),
    ],
)
def test_bad_urls_are_refused_clearly(url: str, message: str) -> None:
    with pytest.raises(LedgerError, match=message) as info:
        open_ledger(url)
    assert "hunter2" not in str(info.value)


def test_relative_sqlite_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "state").mkdir()
    open_ledger("sqlite:///state/ledger.db").close()
    assert (tmp_path / "state" / "ledger.db").exists()


def test_sqlite_uses_wal_and_normal_sync(tmp_path: Path) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'l.db'}")
    try:
        with ledger.db.transaction(write=False) as tx:
            assert tx.execute("PRAGMA journal_mode")[0][0] == "wal"
            assert tx.execute("PRAGMA synchronous")[0][0] == 1  # NORMAL
            assert tx.execute("PRAGMA busy_timeout")[0][0] == 10_000
    finally:
        ledger.close()


def test_unreachable_postgresql_is_unavailable() -> None:
    with pytest.raises(LedgerUnavailable, match="cannot connect"):
        open_ledger(f"postgresql://postgres@127.0.0.1:{_free_port()}/postgres")


def test_locked_sqlite_is_unavailable_and_nothing_is_written(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    ledger = SqlLedger(SqliteDatabase(str(path), busy_timeout_s=0.2))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a long write
    try:
        with pytest.raises(LedgerUnavailable, match="locked"):
            ledger.reserve(reservation("a"), NOW)
        ledger.usage([], NOW)  # readers are not blocked by the writer (WAL)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert ledger.reservations() == []
    assert ledger.reserve(reservation("a"), NOW).status is ReserveStatus.RESERVED
    ledger.close()


@pytest.mark.postgres
def test_postgresql_going_away_and_coming_back() -> None:
    from gpuquota.ledger.postgres import PostgresDatabase  # noqa: PLC0415 - psycopg only where it is tested

    with running_postgres() as server:
        ledger = SqlLedger(PostgresDatabase(server.url, pool_size=2, pool_timeout_s=1.0))
        try:
            assert ledger.reserve(reservation("a"), NOW).status is ReserveStatus.RESERVED
            server.stop()
            with pytest.raises(LedgerUnavailable):
                ledger.reserve(reservation("b"), NOW)
            with pytest.raises(LedgerUnavailable):
                ledger.ping()
            server.start()
            # The pool replaces broken connections; the request that failed can be retried.
            for _ in range(3):
                try:
                    ledger.ping()
                    break
                except LedgerUnavailable:
                    continue
            assert ledger.reserve(reservation("b"), NOW).status is ReserveStatus.RESERVED
            assert [r.request_uid for r in ledger.reservations()] == ["a", "b"]
        finally:
            ledger.close()
