"""One JSON line per admission decision, for log pipelines; the same record goes to the ledger.

Each line is written whole under a lock, so lines never interleave even when the PostgreSQL path runs decisions in
a thread pool. The stream is flushed at most every ``flush_interval_s`` (and by the server's background loop and
at shutdown) rather than per line: a flush is a system call per admission, and the ledger — not this log — is the
compliance record, so a crash may lose the last fraction of a second of lines, never a decision.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import orjson


class AuditLog:
    """Writes to stdout (``-``), to a file (appended), or nowhere (``None``)."""

    def __init__(self, target: str | None, flush_interval_s: float = 0.1) -> None:
        self._lock = threading.Lock()
        self._flush_interval_s = flush_interval_s
        self._flushed_at = time.monotonic()
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
            now = time.monotonic()
            if now - self._flushed_at >= self._flush_interval_s:
                self._stream.flush()
                self._flushed_at = now

    def flush(self) -> None:
        if self._stream is None:
            return
        with self._lock:
            self._stream.flush()
            self._flushed_at = time.monotonic()

    def close(self) -> None:
        self.flush()
        if self._owned is not None:
            self._owned.close()
            self._owned = None
            self._stream = None
