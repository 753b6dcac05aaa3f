"""Turn a ledger URL into an open, migrated ledger — the one place that knows which URLs exist."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

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


def open_ledger(url: str, *, pool_size: int = 8) -> SqlLedger:
    """Open (and migrate) the ledger at ``url``. Raises ``LedgerError`` for a malformed URL and
    ``LedgerUnavailable`` when the database cannot be reached."""
    if url.startswith(SQLITE_PREFIX):
        return SqlLedger(SqliteDatabase(sqlite_path(url), pool_size=pool_size))
    scheme = urlsplit(url).scheme
    if scheme in ("postgresql", "postgres"):
        # psycopg loads libpq: only when a PostgreSQL ledger is asked for (keeps the CLI quick to start).
        from gpuquota.ledger.postgres import PostgresDatabase  # noqa: PLC0415

        return SqlLedger(PostgresDatabase(url, pool_size=pool_size))
    shown = url.rsplit("@", maxsplit=1)[-1] if "@" in url else url  # never echo a password
    raise LedgerError(f"unsupported ledger URL {shown!r}: use sqlite:///path or postgresql://host/db")
