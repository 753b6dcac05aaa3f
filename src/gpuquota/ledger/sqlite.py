"""SQLite backend: the embedded default for one replica and local use.

Writers serialise on the database file (BEGIN IMMEDIATE takes the write lock before reading), so the reserving
transaction's cap re-check reads exactly what the next writer will see, across threads and processes alike. WAL
lets readers (``usage``) run beside the writer; ``synchronous=NORMAL`` keeps commits durable across process
crashes (a power loss may drop the last commits, never corrupt the file).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from gpuquota.ledger.counters import fits
from gpuquota.ledger.database import CapCheckFailed, DuplicateRequest, Row
from gpuquota.ledger.reserving import ReservePlan, batch_statements
from gpuquota.ledger.timeutil import iso, utc
from gpuquota.ledger.types import LedgerError, LedgerFull, LedgerUnavailable

BUSY_TIMEOUT_S = 10.0
MEMORY = ":memory:"


def _translate(exc: sqlite3.Error) -> LedgerError:
    text = str(exc)
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in text:
        return LedgerFull(f"SQLite ledger full: {text}")
    if isinstance(exc, sqlite3.OperationalError) and (
        "locked" in text or "busy" in text or "unable to open" in text or "disk I/O" in text
    ):
        return LedgerUnavailable(f"SQLite ledger unavailable: {text}")
    return LedgerError(f"SQLite ledger error: {text}")


class _CapCheck:
    """``gpuquota_check_cap`` for one connection. SQLite reports any exception of a user function as a bare
    OperationalError, so the refusal's figures are kept here for ``commit_batch`` to pick up."""

    __slots__ = ("failed",)

    def __init__(self) -> None:
        self.failed: tuple[int, float] | None = None

    def __call__(self, index: int, value: float, deduct: float, increment: float, cap: float) -> float:
        used = float(value) - float(deduct)
        if fits(used, float(increment), float(cap)):
            return used
        self.failed = (int(index), used)
        raise ValueError("gpuquota cap exceeded")


class _SqliteTx:
    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return self._conn.execute(sql, params).fetchall()

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        self._conn.executemany(sql, rows)


class SqliteDatabase:
    """A small pool of connections to one file (one shared connection for ``:memory:``)."""

    name = "sqlite"

    def __init__(self, path: str, pool_size: int = 8, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = path
        self._busy_timeout_s = busy_timeout_s
        self._memory = path == MEMORY
        self._size = 1 if self._memory else max(1, pool_size)
        # A plain list used as a stack: append/pop are atomic under the GIL and the semaphore bounds the borrowers,
        # so queue.LifoQueue's own lock and condition (two lock rounds per borrow) bought nothing.
        self._idle: list[sqlite3.Connection] = []
        self._all: list[sqlite3.Connection] = []
        self._checks: dict[int, _CapCheck] = {}  # id(connection) → its cap check
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self._size)
        self._closed = False
        with self._connection():  # fail now, not on the first request, when the file cannot be opened
            pass

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            if not self._memory:
                self._set_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            check = _CapCheck()
            conn.create_function("gpuquota_check_cap", 5, check)
            self._checks[id(conn)] = check
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        return conn

    def _set_wal(self, conn: sqlite3.Connection) -> None:
        """Switching to WAL needs a moment alone with the file; replicas starting together may collide."""
        deadline = time.monotonic() + self._busy_timeout_s
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
                continue
            if mode and str(mode[0]).lower() != "wal":
                raise LedgerError(f"SQLite ledger {self.path!r}: cannot use WAL journal (got {mode[0]!r})")
            return

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise LedgerUnavailable("the ledger is closed")
        if not self._slots.acquire(timeout=self._busy_timeout_s):
            raise LedgerUnavailable("SQLite ledger: no connection free in time")
        try:
            try:
                conn = self._idle.pop()
            except IndexError:
                conn = self._connect()
                with self._lock:
                    self._all.append(conn)
            try:
                yield conn
            finally:
                self._idle.append(conn)
        finally:
            self._slots.release()

    @contextmanager
    def transaction(self, write: bool) -> Iterator[_SqliteTx]:
        with self._connection() as conn:
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as exc:
                raise _translate(exc) from exc
            try:
                yield _SqliteTx(conn)
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise _translate(exc) from exc
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise _translate(exc) from exc

    def read(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Autocommit (``isolation_level=None``): the statement is its own read transaction in WAL mode."""
        with self._connection() as conn:
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise _translate(exc) from exc

    def reserve(self, plan: ReservePlan) -> int:
        with self._connection() as conn:
            check = self._checks[id(conn)]
            check.failed = None
            try:
                conn.execute("BEGIN IMMEDIATE")
                results = [conn.execute(sql, params).fetchall() for sql, params in batch_statements(plan)]
                conn.execute("COMMIT")
                return int(results[0][0][0])
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if check.failed is not None:
                    raise CapCheckFailed(*check.failed) from exc
                if isinstance(exc, sqlite3.IntegrityError) and "reservations.request_uid" in str(exc):
                    raise DuplicateRequest(str(exc)) from exc
                raise _translate(exc) from exc
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def migration_lock(self) -> Iterator[_SqliteTx]:
        """BEGIN IMMEDIATE already excludes every other writer of the file, other processes included."""
        with self.transaction(write=True) as tx:
            yield tx

    def ddl_types(self) -> dict[str, str]:
        return {"id": "INTEGER", "real": "REAL", "ts": "TEXT", "bool": "INTEGER"}

    def ts(self, value: datetime) -> object:
        return iso(value)

    def from_ts(self, value: object) -> datetime:
        if isinstance(value, datetime):
            return utc(value)
        return utc(datetime.fromisoformat(str(value)))

    def ping(self) -> None:
        with self.transaction(write=False) as tx:
            tx.execute("SELECT 1")

    def close(self) -> None:
        self._closed = True
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
