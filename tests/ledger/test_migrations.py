"""Schema migrations: an older database upgrades in place with its data; replicas starting together against an
empty database migrate it exactly once; a database newer than the code is refused."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gpuquota.ledger import LedgerError, ReservationState, ReserveStatus, open_ledger
from gpuquota.ledger.database import Database
from gpuquota.ledger.schema import LATEST, MIGRATIONS, migrate
from gpuquota.ledger.sqlite import SqliteDatabase
from tests.ledger import migrate_worker
from tests.ledger.builders import NOW, reservation


@contextmanager
def raw_database(url: str) -> Iterator[Database]:
    if url.startswith("sqlite:///"):
        db: Database = SqliteDatabase(url[len("sqlite:///") :])
    else:
        from gpuquota.ledger.postgres import PostgresDatabase  # noqa: PLC0415 - psycopg only for this param

        db = PostgresDatabase(url)
    try:
        yield db
    finally:
        db.close()


def versions(db: Database) -> list[int]:
    with db.transaction(write=False) as tx:
        return [int(r[0]) for r in tx.execute("SELECT version FROM schema_version ORDER BY version")]


def test_there_is_history_to_upgrade_from() -> None:
    assert LATEST >= 2
    assert len(MIGRATIONS) == LATEST


def test_version_1_database_upgrades_in_place(ledger_url: str) -> None:
    with raw_database(ledger_url) as db:
        assert migrate(db, target=1) == 0
        with db.transaction(write=True) as tx:  # rows as gpuquota at schema 1 wrote them
            tx.execute(
                "INSERT INTO reservations (request_uid, namespace, kind, api_group, name, tenant, jurisdiction, tier, "
                "model, gpus, tpp, operations, operations_per_second, max_runtime_s, profile, profile_version, state, "
                "charge_day, reserved_at) VALUES ('old-1', 'acme-train', 'Job', 'batch', 'old', 'acme', 'JP', "
                "'tier2', 'nvidia-h100-sxm5-80gb', 8, 126656, 3.6e18, 1e15, 3600, 'ai-diffusion-2025', "
                "'2025-01-15', 'reserved', '2026-11-26', ?)",
                (db.ts(NOW),),
            )
            tx.execute(
                "INSERT INTO reservation_counters VALUES (1, 'tenant', 'acme', 'concurrent-tpp', 126656)",
            )
            tx.execute("INSERT INTO counters VALUES ('tenant', 'acme', 'concurrent-tpp', 'now', 126656)")
            tx.execute(
                "INSERT INTO decisions (time, request_uid, operation, user_name, namespace, kind, name, tenant, "
                "jurisdiction, tier, allowed, dry_run, message, rules, gpus, model, tpp, operations, profile, "
                "profile_version, reservation_id) VALUES (?, 'old-1', 'CREATE', 'alice', 'acme-train', 'Job', 'old', "
                "'acme', 'JP', 'tier2', ?, ?, 'admitted', ?, 8, 'nvidia-h100-sxm5-80gb', 126656, 3.6e18, "
                "'ai-diffusion-2025', '2025-01-15', 1)",
                (db.ts(NOW), True, False, json.dumps(["tier2-tenant-concurrent"])),
            )
        assert versions(db) == [1]

    ledger = open_ledger(ledger_url)
    try:
        assert ledger.schema_version_found == 1
        assert versions(ledger.db) == list(range(1, LATEST + 1))
        [old] = ledger.decisions()
        assert old.request_uid == "old-1"
        assert old.warnings == ()  # the column added by migration 2 defaults for old rows
        assert old.rules == ("tier2-tenant-concurrent",)
        [active] = ledger.active_reservations()
        assert active.request_uid == "old-1"
        assert active.state is ReservationState.RESERVED
        # The upgraded ledger keeps counting on top of the old counters.
        new = reservation("new-1", tenant_cap=2 * 126656)
        assert ledger.reserve(new, NOW).status is ReserveStatus.RESERVED
        assert ledger.reserve(reservation("new-2", tenant_cap=2 * 126656), NOW).status is ReserveStatus.CAP_EXCEEDED
    finally:
        ledger.close()
    reopened = open_ledger(ledger_url)
    assert reopened.schema_version_found == LATEST
    reopened.close()


def test_a_newer_schema_is_refused(ledger_url: str) -> None:
    open_ledger(ledger_url).close()
    with raw_database(ledger_url) as db, db.transaction(write=True) as tx:
        tx.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, 'later')", (LATEST + 1,))
    with pytest.raises(LedgerError, match="newer than this gpuquota"):
        open_ledger(ledger_url)


def _start_replicas(url: str, count: int) -> list[int]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Manager().Barrier(count)
    with ctx.Pool(count) as pool:
        return pool.starmap(migrate_worker.start, [(url, barrier)] * count)


@pytest.mark.slow
@pytest.mark.postgres
def test_replicas_starting_together_migrate_an_empty_postgresql_once(postgres_url: str) -> None:
    found = _start_replicas(postgres_url, 6)
    assert sorted(found) == [0] + [LATEST] * 5  # exactly one replica saw the empty database
    with raw_database(postgres_url) as db:
        assert versions(db) == list(range(1, LATEST + 1))


@pytest.mark.slow
def test_replicas_starting_together_migrate_an_empty_sqlite_file_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    found = _start_replicas(url, 6)
    assert sorted(found) == [0] + [LATEST] * 5
    with raw_database(url) as db:
        assert versions(db) == list(range(1, LATEST + 1))
