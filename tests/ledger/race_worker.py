"""A worker process of the race tests: its own ledger connection, several threads, all starting at one barrier."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gpuquota.domain import Charge, Scope
from gpuquota.ledger import open_ledger
from tests.ledger.builders import NOW, concurrent, reservation, rolling

CONCURRENT_CAP = 100.0  # units of TPP; each request holds 1 → exactly 100 fit
ROLLING_CAP = 90.0  # operations over 30 days; each request spends 1 → exactly 90 fit


def request(uid: str) -> Any:
    """Requests for tenant ``acme`` hit the concurrent cap; those for ``bolt`` the 30-day operations cap."""
    tenant = "acme" if uid.startswith("acme") else "bolt"
    caps = (CONCURRENT_CAP, None) if tenant == "acme" else (None, ROLLING_CAP)
    return reservation(
        uid,
        tenant=tenant,
        charges=(
            Charge(concurrent(Scope.TENANT, tenant), 1.0, caps[0], "tenant-concurrent"),
            Charge(concurrent(Scope.JURISDICTION, "JP"), 1.0),
            Charge(concurrent(Scope.CLUSTER, "cluster"), 1.0, 10_000.0, "cluster"),
            Charge(rolling(Scope.TENANT, tenant, 30), 1.0, caps[1], "tenant-30d"),
        ),
    )


def run(url: str, uids: list[str], barrier: Any, threads: int) -> list[tuple[str, str, int | None]]:
    ledger = open_ledger(url, pool_size=threads)
    try:
        barrier.wait(timeout=120)

        def one(uid: str) -> tuple[str, str, int | None]:
            result = ledger.reserve(request(uid), NOW)
            return uid, str(result.status), result.reservation_id

        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(one, uids))
    finally:
        ledger.close()
