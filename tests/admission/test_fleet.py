"""Many clusters, one ledger, over HTTP: two webhooks of two clusters (``--cluster-name a`` and ``b``) on one
PostgreSQL. A tenant's cap is the fleet's — a race of admissions split across both never overruns it, and once
full in cluster a it refuses in cluster b — each reservation records its cluster, and a process without a name
is refused on the shared ledger with a clear error, writing nothing."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from gpuquota.ledger import open_ledger
from tests.admission.conftest import Setup
from tests.admission.reviews import H100_TPP, gpu_pod, review
from tests.admission.serverproc import Server, start_server
from tests.admission.test_races import _fire
from tests.pgserver import fresh_ledger_database

CAP_GPUS = 16  # the test profile's tier-2 tenant cap
REQUESTS = 48


def _start(setup: Setup, root: Path, url: str, name: str, *extra: str, wait_ready: bool = True) -> Server:
    return start_server(root / name, ledger_url=url, policy=setup.policy, tenants=setup.tenants, tls=setup.tls,
                        ca_file=setup.ca.ca_file, name=name, extra=extra, wait_ready=wait_ready)


@pytest.mark.postgres
def test_two_clusters_share_the_tenant_cap(setup: Setup, tmp_path: Path, postgres_server_url: str) -> None:
    with fresh_ledger_database(postgres_server_url) as url:
        servers = [_start(setup, tmp_path, url, name, "--cluster-name", name) for name in ("a", "b")]
        try:
            bodies = [review(gpu_pod(f"fleet-{i}", "race", 1)) for i in range(REQUESTS)]
            answers = asyncio.run(_fire(servers, bodies, setup.ca.ca_file))  # alternately to a and b
            allowed = {str(a["uid"]) for a in answers if a["allowed"]}
            assert len(allowed) == CAP_GPUS  # the fleet's cap, filled exactly across both clusters
            ledger = open_ledger(url)
            try:
                held = [r for r in ledger.reservations() if r.state.active]
                decided = ledger.decisions()
            finally:
                ledger.close()
            assert sorted(r.request_uid for r in held) == sorted(allowed)
            assert sum(r.tpp for r in held) <= CAP_GPUS * H100_TPP
            assert {r.cluster for r in held} == {"a", "b"}  # both admitted some, each recorded as its own
            assert {d.cluster for d in decided} == {"a", "b"}
            # Full in the fleet: cluster b refuses what cluster a filled, and the other way round.
            for server in servers:
                answer = server.review(review(gpu_pod("one-more", "race", 1)))
                assert not answer["allowed"]
                assert "tenant-cap" in str(answer["status"])
            # A third process without --cluster-name is refused: the ledger is shared.
            unnamed = _start(setup, tmp_path, url, "unnamed", wait_ready=False)
            try:
                assert unnamed.proc.wait(60) == 2
            except subprocess.TimeoutExpired:
                unnamed.stop()
                raise
            assert "--cluster-name" in unnamed.log()
            assert "other clusters (a, b)" in unnamed.log()
        finally:
            for server in servers:
                server.stop()
