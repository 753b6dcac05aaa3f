"""The ledger schema as an ordered list of migrations, applied in place and recorded in ``schema_version``.

Migrations are append-only: a released migration is never edited, a change is a new one. They run inside one
transaction under a database-wide lock (PostgreSQL advisory lock, SQLite BEGIN IMMEDIATE), so replicas that start
at the same moment against an empty database apply each migration exactly once.
"""

from __future__ import annotations

from gpuquota.ledger.database import Database, Tx
from gpuquota.ledger.types import LedgerError

# Templates: {id} an auto-increment primary key, {real} a double, {ts} a timestamp, {bool} a boolean.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: reservations, their counter increments, the aggregate counters, the decision audit.
    (
        """CREATE TABLE reservations (
            id {id} PRIMARY KEY,
            request_uid TEXT NOT NULL UNIQUE,
            namespace TEXT NOT NULL,
            kind TEXT NOT NULL,
            api_group TEXT NOT NULL,
            name TEXT NOT NULL,
            tenant TEXT NOT NULL,
            jurisdiction TEXT,
            tier TEXT,
            model TEXT,
            gpus {real} NOT NULL,
            tpp {real} NOT NULL,
            operations {real},
            operations_per_second {real} NOT NULL,
            max_runtime_s {real},
            profile TEXT NOT NULL,
            profile_version TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('reserved', 'running', 'settled', 'released', 'expired')),
            charge_day TEXT NOT NULL,
            reserved_at {ts} NOT NULL,
            started_at {ts},
            ended_at {ts},
            actual_operations {real},
            reason TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE INDEX reservations_active ON reservations (namespace, name, kind, api_group)
            WHERE state IN ('reserved', 'running')""",
        "CREATE INDEX reservations_reserved_at ON reservations (reserved_at)",
        """CREATE TABLE reservation_counters (
            reservation_id BIGINT NOT NULL REFERENCES reservations (id),
            scope TEXT NOT NULL,
            subject TEXT NOT NULL,
            metric TEXT NOT NULL,
            amount {real} NOT NULL,
            PRIMARY KEY (reservation_id, scope, subject, metric)
        )""",
        """CREATE TABLE counters (
            scope TEXT NOT NULL,
            subject TEXT NOT NULL,
            metric TEXT NOT NULL,
            bucket TEXT NOT NULL,
            amount {real} NOT NULL DEFAULT 0,
            PRIMARY KEY (scope, subject, metric, bucket)
        )""",
        """CREATE TABLE decisions (
            id {id} PRIMARY KEY,
            time {ts} NOT NULL,
            request_uid TEXT NOT NULL,
            operation TEXT NOT NULL,
            user_name TEXT NOT NULL,
            namespace TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            tenant TEXT,
            jurisdiction TEXT,
            tier TEXT,
            allowed {bool} NOT NULL,
            dry_run {bool} NOT NULL,
            message TEXT NOT NULL,
            rules TEXT NOT NULL,
            gpus {real} NOT NULL,
            model TEXT,
            tpp {real} NOT NULL,
            operations {real},
            profile TEXT NOT NULL,
            profile_version TEXT NOT NULL,
            reservation_id BIGINT REFERENCES reservations (id)
        )""",
    ),
    # 2: warnings on the audit record; indexes the compliance report reads by.
    (
        "ALTER TABLE decisions ADD COLUMN warnings TEXT NOT NULL DEFAULT '[]'",
        "CREATE INDEX decisions_time ON decisions (time)",
        "CREATE INDEX reservations_ended_at ON reservations (ended_at)",
    ),
)

LATEST = len(MIGRATIONS)


def schema_version(tx: Tx) -> int:
    """The version recorded in ``schema_version`` (0 for an empty database)."""
    tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    rows = tx.execute("SELECT max(version) FROM schema_version")
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def migrate(db: Database, target: int = LATEST) -> int:
    """Bring the schema to ``target`` (default: the latest); returns the version found before."""
    types = db.ddl_types()
    with db.migration_lock() as tx:
        found = schema_version(tx)
        if found > LATEST:
            raise LedgerError(
                f"the ledger schema is at version {found}, newer than this gpuquota knows ({LATEST}): upgrade gpuquota"
            )
        for version in range(found + 1, target + 1):
            for statement in MIGRATIONS[version - 1]:
                tx.execute(statement.format(**types))
            tx.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, CURRENT_TIMESTAMP)", (version,))
        return found
