"""One JSON line per admission decision, for log pipelines; the same record goes to the ledger.

Writes are line-buffered and guarded by a lock, so a line is never interleaved even when the PostgreSQL path runs
decisions in a thread pool.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import IO, Any

import orjson


class AuditLog:
    """Writes to stdout (``-``), to a file (appended), or nowhere (``None``)."""

    def __init__(self, target: str | None) -> None:
        self._lock = threading.Lock()
        self._owned: IO[bytes] | None = None
        self._stream: IO[bytes] | None
        if target is None:
            self._stream = None
        elif target == "-":
            self._stream = sys.stdout.buffer
        else:
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._owned = path.open("ab")
            self._stream = self._owned

    @property
    def enabled(self) -> bool:
        return self._stream is not None

    def write(self, record: dict[str, Any]) -> None:
        if self._stream is None:
            return
        line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)
        with self._lock:
            self._stream.write(line)
            self._stream.flush()

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()
            self._owned = None
            self._stream = None
