"""A replica starting up: open (and so migrate) the ledger the moment every other replica does."""

from __future__ import annotations

from typing import Any

from gpuquota.ledger import open_ledger


def start(url: str, barrier: Any) -> int:
    barrier.wait(timeout=120)
    ledger = open_ledger(url)
    try:
        return ledger.schema_version_found
    finally:
        ledger.close()
