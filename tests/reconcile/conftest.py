"""What the reconciler tests share: a real SQLite ledger per test and a clock the test moves."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from gpuquota.ledger import open_ledger
from gpuquota.ledger.store import SqlLedger


class Clock:
    """Wall time the test sets (``now``); ``monotonic`` follows it, for code that times intervals."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.now.timestamp()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[SqlLedger]:
    opened = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield opened
    opened.close()
