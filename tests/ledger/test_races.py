"""No overrun under races: several processes, each with its own connections and threads, reserve at once against
one database — more requests than fit, with duplicates of each other's requests in flight. Real servers only."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from pathlib import Path

import pytest

from gpuquota.domain import Scope
from gpuquota.ledger import ReserveStatus, open_ledger
from tests.ledger import race_worker
from tests.ledger.builders import NOW, concurrent, rolling

PROCESSES = 4
PER_PROCESS = 70  # per tenant: 280 distinct requests for each of the two caps
THREADS = 4


def _plan() -> list[list[str]]:
    """Each process gets its own requests interleaved for both tenants, plus a retry of its neighbour's first
    ten (the same request uid reaching two replicas at once, as an API server retry does)."""
    own = [[f"{tenant}-{p}-{i}" for i in range(PER_PROCESS) for tenant in ("acme", "bolt")] for p in range(PROCESSES)]
    return [own[p] + own[(p + 1) % PROCESSES][:10] for p in range(PROCESSES)]


def _race(url: str) -> list[tuple[str, str, int | None]]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Manager().Barrier(PROCESSES)
    plans = _plan()
    with ctx.Pool(PROCESSES) as pool:
        parts = pool.starmap(race_worker.run, [(url, plans[p], barrier, THREADS) for p in range(PROCESSES)])
    return [row for part in parts for row in part]


def _check(url: str, results: list[tuple[str, str, int | None]]) -> None:
    assert len(results) == PROCESSES * (2 * PER_PROCESS + 10)
    admitted: dict[str, int] = {}
    for uid, status, rid in results:
        if status == ReserveStatus.RESERVED:
            assert uid not in admitted, f"{uid} admitted twice"
            assert rid is not None
            admitted[uid] = rid
    for uid, status, rid in results:  # every duplicate points at the one admission of its uid
        if status == ReserveStatus.DUPLICATE:
            assert admitted[uid] == rid
    per_tenant = Counter(uid.split("-")[0] for uid in admitted)
    assert per_tenant == {"acme": int(race_worker.CONCURRENT_CAP), "bolt": int(race_worker.ROLLING_CAP)}

    ledger = open_ledger(url)
    try:
        stored = ledger.reservations()
        assert {r.request_uid: r.id for r in stored} == admitted  # one row per admission, none without one
        usage = ledger.usage(
            [concurrent(Scope.TENANT, "acme"), rolling(Scope.TENANT, "bolt", 30), concurrent(Scope.CLUSTER, "cluster")],
            NOW,
        )
        assert usage[concurrent(Scope.TENANT, "acme")] == race_worker.CONCURRENT_CAP
        assert usage[rolling(Scope.TENANT, "bolt", 30)] == race_worker.ROLLING_CAP
        assert usage[concurrent(Scope.CLUSTER, "cluster")] == len(admitted)
        audited = Counter(d.request_uid for d in ledger.decisions())
        assert audited == Counter(admitted.keys())  # one audit record per admission, written with it
    finally:
        ledger.close()


@pytest.mark.slow
@pytest.mark.postgres
def test_no_overrun_with_processes_sharing_postgresql(postgres_url: str) -> None:
    open_ledger(postgres_url).close()  # migrate once, so the race is on reserving (the migration race has its test)
    _check(postgres_url, _race(postgres_url))


@pytest.mark.slow
def test_no_overrun_with_processes_sharing_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    _check(url, _race(url))
