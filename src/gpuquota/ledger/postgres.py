"""PostgreSQL backend: the ledger for several webhook replicas (HA).

Transactions run at READ COMMITTED; the reserving transaction serialises on the counter rows it changes by
upserting them in one deterministic order (the upsert takes each row's lock and returns its latest committed
value), and reads window sums only after holding those locks, so each statement sees every earlier committed
reservation. See docs/ledger.md for the argument. A deadlock or serialisation failure (which the lock order
rules out, but a database may still report) is retried by the caller.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors

from gpuquota.ledger.database import CapCheckFailed, DuplicateRequest, Row, TransientConflict
from gpuquota.ledger.reserving import ReservePlan
from gpuquota.ledger.timeutil import utc
from gpuquota.ledger.types import LedgerError, LedgerFull, LedgerUnavailable

# Any fixed 64-bit number: every gpuquota replica migrating this database takes the same advisory lock.
MIGRATION_LOCK_KEY = 0x6770_7571_756F_7461 & 0x7FFF_FFFF_FFFF_FFFF  # "gpuquota"
CONNECT_TIMEOUT_S = 3
# How long a request waits for a connection before the ledger is reported unavailable: well inside the API
# server's webhook timeout (10 s by default), so the webhook can answer with a clear refusal.
POOL_TIMEOUT_S = 3.0

_translated: dict[str, str] = {}

# One autocommit statement: the function's inserts, counter locks and cap checks commit (or roll back) together.
_RESERVE_CALL = (
    "SELECT gpuquota_reserve("
    + ", ".join(["%s::text"] * 9 + ["%s::float8"] * 5 + ["%s::text"] * 4 + ["%s::timestamptz", "%s::text", "%s::text"])
    + ", "
    + "%s::timestamptz, %b::text[], %b::boolean[], %b::float8[]"
    + ", "
    + ", ".join(["%b::text[]"] * 3 + ["%b::float8[]"] + ["%b::text[]"] * 4 + ["%b::float8[]"])
    + ", "
    + ", ".join(["%b::text[]"] * 5 + ["%b::float8[]"] * 3)
    + ")"
)


def _sql(sql: str) -> str:
    """``?`` placeholders (the ledger's SQL dialect) → psycopg's ``%s``."""
    out = _translated.get(sql)
    if out is None:
        out = _translated[sql] = sql.replace("%", "%%").replace("?", "%s")
    return out


def _translate(exc: Exception) -> LedgerError:
    if isinstance(exc, pg_errors.DiskFull):  # 53100: no space on the volume (or a quota on it)
        return LedgerFull(f"PostgreSQL ledger full: {str(exc).strip()}")
    if isinstance(exc, pg_errors.DeadlockDetected | pg_errors.SerializationFailure):
        return TransientConflict(f"PostgreSQL ledger: {exc}")
    if isinstance(exc, psycopg_pool.PoolTimeout | psycopg.OperationalError | psycopg.InterfaceError):
        return LedgerUnavailable(f"PostgreSQL ledger unavailable: {str(exc).strip()}")
    return LedgerError(f"PostgreSQL ledger error: {str(exc).strip()}")


def audit_arrays(values: Sequence[object]) -> tuple[object, list[object], list[object], list[object]]:
    """``reserving.DECISION_COLUMNS`` values packed by type, as ``gpuquota_reserve`` takes them (fewer parameters
    keep psycopg's statement cache, which skips statements of more than 50). The cluster (the last value) is not
    among them: the function records the reservation's own, ``r_cluster``, on both rows."""
    v = list(values)
    texts = [*v[1:10], v[12], v[13], v[14], v[16], v[19], v[20]]
    return v[0], texts, [v[10], v[11]], [v[15], v[17], v[18]]


def _columns(rows: Sequence[Sequence[object]], width: int) -> list[list[object]]:
    """Rows → one list per column (the function takes arrays)."""
    return [[row[i] for row in rows] for i in range(width)]


class _PgTx:
    __slots__ = ("_conn", "_cur", "_pipeline")

    def __init__(self, conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any], pipeline: psycopg.Pipeline) -> None:
        self._conn = conn
        self._cur = cur
        self._pipeline = pipeline

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        cur = self._cur.execute(_sql(sql), params)
        self._pipeline.sync()  # in pipeline mode a statement's result is known only after a sync
        return cur.fetchall() if cur.description is not None else []

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        self._cur.executemany(_sql(sql), rows)


class PostgresDatabase:
    name = "postgresql"

    def __init__(self, url: str, pool_size: int = 8, pool_timeout_s: float = POOL_TIMEOUT_S) -> None:
        try:  # fail fast and clearly (refused, bad password, no such database) before starting the pool
            psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S).close()
        except psycopg.Error as exc:
            raise LedgerUnavailable(f"PostgreSQL ledger unavailable: cannot connect ({str(exc).strip()})") from exc
        self._pool = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, pool_size),
            timeout=pool_timeout_s,
            open=False,
            # Autocommit: transactions say BEGIN themselves (``conn.transaction()``, or inside a batch), so no
            # statement waits for a separate BEGIN round trip.
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S, "application_name": "gpuquota"},
            name="gpuquota-ledger",
        )
        try:
            self._pool.open(wait=True, timeout=pool_timeout_s)
        except (psycopg_pool.PoolTimeout, psycopg.Error) as exc:
            self._pool.close()
            raise LedgerUnavailable(f"PostgreSQL ledger unavailable: cannot connect ({str(exc).strip()})") from exc

    @contextmanager
    def transaction(self, write: bool) -> Iterator[_PgTx]:
        try:
            # Pipeline mode: BEGIN, a batch of statements and COMMIT travel together instead of a round trip each.
            with (
                self._pool.connection() as conn,
                conn.pipeline() as pipeline,
                conn.transaction(),
                conn.cursor() as cur,
            ):
                yield _PgTx(conn, cur, pipeline)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise _translate(exc) from exc

    def read(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        with self.transaction(write=False) as tx:
            return tx.execute(sql, params)

    def reserve(self, plan: ReservePlan) -> int:
        params = [
            *plan.reservation,
            *audit_arrays(plan.audit),
            *_columns(plan.increments, 4),
            *_columns(plan.counters, 5),
            *_columns(plan.checks, 8),
        ]
        try:
            with self._pool.connection() as conn:
                row = conn.execute(_RESERVE_CALL, params, prepare=True).fetchone()
        except pg_errors.UniqueViolation as exc:
            if exc.diag.constraint_name == "reservations_request_uid_key":
                raise DuplicateRequest(str(exc)) from exc
            raise _translate(exc) from exc
        except pg_errors.RaiseException as exc:
            if exc.diag.message_primary == "gpuquota cap exceeded" and exc.diag.message_detail:
                index, used = exc.diag.message_detail.split()
                raise CapCheckFailed(int(index), float(used)) from exc
            raise _translate(exc) from exc
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise _translate(exc) from exc
        if row is None:
            raise LedgerError("gpuquota_reserve returned nothing")
        return int(row[0])

    @contextmanager
    def migration_lock(self) -> Iterator[_PgTx]:
        with self.transaction(write=True) as tx:
            tx.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK_KEY,))
            yield tx

    def ddl_types(self) -> dict[str, str]:
        return {
            "id": "BIGINT GENERATED BY DEFAULT AS IDENTITY",
            "real": "DOUBLE PRECISION",
            "ts": "TIMESTAMPTZ",
            "bool": "BOOLEAN",
        }

    def ts(self, value: datetime) -> object:
        return utc(value)

    def from_ts(self, value: object) -> datetime:
        if not isinstance(value, datetime):
            raise LedgerError(f"expected a timestamp from PostgreSQL, got {value!r}")
        return utc(value)

    def ping(self) -> None:
        with self.transaction(write=False) as tx:
            tx.execute("SELECT 1")

    def close(self) -> None:
        self._pool.close()
