"""Turn a ledger URL into an open, migrated ledger — the one place that knows which URLs exist."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from gpuquota.clusters import ClusterIdentity
from gpuquota.ledger.sqlite import MEMORY, SqliteDatabase
from gpuquota.ledger.store import SqlLedger
from gpuquota.ledger.types import LedgerError

SQLITE_PREFIX = "sqlite:///"


def sqlite_path(url: str) -> str:
    """``sqlite:///relative/path``, ``sqlite:////abs/path`` or ``sqlite:///:memory:`` → the file path."""
    path = url[len(SQLITE_PREFIX) :]
    if not path:
        raise LedgerError(f"ledger URL {url!r} names no file: use sqlite:///path/to/ledger.db")
    if path == MEMORY:
        return path
    parent = Path(path).expanduser().parent
    if not parent.is_dir():
        raise LedgerError(f"ledger URL {url!r}: directory {str(parent)!r} does not exist")
    return str(Path(path).expanduser())


def ledger_backend(url: str) -> str:
    """``sqlite`` or ``postgresql``; a URL of neither is a ``LedgerError`` (checked before anything connects)."""
    if url.startswith(SQLITE_PREFIX):
        return "sqlite"
    if urlsplit(url).scheme in ("postgresql", "postgres"):
        return "postgresql"
    shown = url.rsplit("@", maxsplit=1)[-1] if "@" in url else url  # never echo a password
    raise LedgerError(f"unsupported ledger URL {shown!r}: use sqlite:///path or postgresql://host/db")


def open_ledger(url: str, *, pool_size: int = 8, identity: ClusterIdentity | None = None) -> SqlLedger:
    """Open (and migrate) the ledger at ``url``, for the cluster ``identity`` claims (``default`` and no claim when
    none: readers, tests). Raises ``LedgerError`` for a malformed URL, ``ClusterConflict`` for a refused claim and
    ``LedgerUnavailable`` when the database cannot be reached."""
    if ledger_backend(url) == "sqlite":
        return SqlLedger(SqliteDatabase(sqlite_path(url), pool_size=pool_size), identity)
    # psycopg loads libpq: only when a PostgreSQL ledger is asked for (keeps the CLI quick to start).
    from gpuquota.ledger.postgres import PostgresDatabase  # noqa: PLC0415

    return SqlLedger(PostgresDatabase(url, pool_size=pool_size), identity)
