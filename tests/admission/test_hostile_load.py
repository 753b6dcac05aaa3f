"""Hostile traffic beside normal traffic, bounded: slow headers, deep JSON, megabyte selectors and forged reviews
without the API server's client certificate, all at once, while a normal client sends dry-run reviews. Every
normal review is answered correctly and none waits behind an attack (the quadratic selector normalisation alone used
to hold the loop for minutes per request). Throughput and latency figures come from bench/bench_hostile.py."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.admission.conftest import Setup
from tests.admission.hostile import ATTACKS, Target, normal_reviews, start_attacks
from tests.admission.pki import make_ca
from tests.admission.serverproc import Server, free_port, start_server, verifier, wait_for

NORMAL_REVIEWS = 60
STALL_S = 2.0  # far above a review's cost, far below the seconds-to-minutes the attacks used to cause


@pytest.fixture(scope="module")
def target(setup: Setup) -> Iterator[tuple[Target, Server, int]]:
    clients = make_ca(setup.root / "load-pki", "load-clients")
    apiserver = clients.issue(setup.root / "load-pki", "kube-apiserver")
    metrics_port = free_port()
    server = start_server(setup.root / "hostile-load", policy=setup.policy, tenants=setup.tenants, tls=setup.tls,
                          ca_file=setup.ca.ca_file, wait_ready=False,
                          extra=("--client-ca", str(clients.ca_file), "--metrics-port", str(metrics_port),
                                 "--read-timeout", "2"))
    try:
        def healthy() -> bool:
            try:
                with httpx.Client(base_url=f"https://127.0.0.1:{metrics_port}", verify=verifier(setup.ca.ca_file),
                                  timeout=5) as client:
                    return client.get("/readyz").status_code == 200
            except httpx.TransportError:
                return False

        assert wait_for(healthy, timeout_s=30), server.log()
        port = int(server.base_url.rsplit(":", 1)[1])
        yield Target("127.0.0.1", port, str(setup.ca.ca_file), (str(apiserver[0]), str(apiserver[1]))), server, \
            metrics_port
    finally:
        server.stop()


def test_normal_reviews_keep_their_answers_and_latency_under_attack(target: tuple[Target, Server, int]) -> None:
    webhook, server, metrics_port = target
    normal_reviews(webhook, count=5)  # warm
    stop, tallies, threads = start_attacks(webhook, list(ATTACKS))
    try:
        latencies = normal_reviews(webhook, count=NORMAL_REVIEWS)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert len(latencies) == NORMAL_REVIEWS
    assert max(latencies) < STALL_S, sorted(latencies)[-5:]
    assert server.alive()
    # each attack got what it deserves
    assert tallies["forged"].sent > 0
    assert tallies["forged"].answered == {}  # never reached HTTP: no client certificate
    assert set(tallies["deep_json"].answered) <= {400}
    assert set(tallies["large_selector"].answered) <= {200}
    assert tallies["large_selector"].answered.get(200, 0) >= 1
    with httpx.Client(base_url=f"https://127.0.0.1:{metrics_port}", verify=verifier(server.ca_file)) as client:
        text = client.get("/metrics").text
    assert 'gpuquota_http_read_timeouts_total{listener="webhook",phase="headers"}' in text
