"""The narrow surface the ledger needs from a SQL database, so one reserving algorithm serves both backends.

SQL is written once with ``?`` placeholders; each backend translates what differs (placeholders, column types,
timestamps, how a write transaction takes its lock).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

from gpuquota.ledger.reserving import ReservePlan
from gpuquota.ledger.types import LedgerError

Row = tuple[Any, ...]


class DuplicateRequest(LedgerError):  # noqa: N818 - names what happened
    """A reservation with this request uid exists: the batch was rolled back."""


class CapCheckFailed(LedgerError):  # noqa: N818 - names what happened
    """Check ``index`` of the plan failed (usage before the request: ``used``): everything was rolled back."""

    def __init__(self, index: int, used: float) -> None:
        super().__init__(f"cap of charge {index} exceeded (used {used})")
        self.index = index
        self.used = used


class TransientConflict(LedgerError):  # noqa: N818 - names what happened, like LedgerUnavailable
    """The database aborted the transaction to break a deadlock or a serialisation conflict: run it again."""


class Tx(Protocol):
    """A transaction in progress. Leaving its context commits; an exception rolls it back."""

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Run one statement and return its rows (empty when it returns none)."""
        ...

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None: ...


class Database(Protocol):
    name: str  # "sqlite" or "postgresql"

    def reserve(self, plan: ReservePlan) -> int:
        """Execute a reservation plan as one write transaction and return the reservation id. Rolls back with
        ``DuplicateRequest`` when the request uid was reserved before, with ``CapCheckFailed`` when a capped
        window no longer fits (checked after the counter rows are locked)."""
        ...

    def transaction(self, write: bool) -> AbstractContextManager[Tx]:
        """A transaction; ``write`` ones serialise where the backend needs it (SQLite's BEGIN IMMEDIATE)."""
        ...

    def read(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """One read-only statement on its own: a single statement already reads one consistent snapshot, so it
        needs no BEGIN/COMMIT around it (the webhook's per-review usage read)."""
        ...

    def ddl_types(self) -> dict[str, str]:
        """Column types for the schema templates: id, real, ts, bool."""
        ...

    def migration_lock(self) -> AbstractContextManager[Tx]:
        """A write transaction that also excludes every other process migrating the same database."""
        ...

    def ts(self, value: datetime) -> object:
        """A timestamp as a statement parameter."""
        ...

    def from_ts(self, value: object) -> datetime: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...
