"""Crash safety: ``kill -9`` a server in the middle of a reserving load, restart it on the same ledger, and check the
ledger against what clients were told.

What can be proven from outside: every allowed answer a client received has exactly one reservation; a reservation
whose answer never arrived belongs to a request that was in flight at the kill (the API server retries such a
request with the same uid, or the reconciler expires it when the workload never appears); and retrying every
in-flight request after the restart reserves nothing twice.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest

from gpuquota.ledger import open_ledger
from tests.admission.conftest import Setup
from tests.admission.reviews import gpu_pod, review
from tests.admission.serverproc import Server, start_server, verifier, wait_for
from tests.pgserver import fresh_ledger_database

CLIENTS = 12


def _reservations_by_uid(ledger_url: str) -> Counter[str]:
    ledger = open_ledger(ledger_url)
    try:
        return Counter(r.request_uid for r in ledger.reservations())
    finally:
        ledger.close()


def _crash_under_load(server: Server, bodies: list[dict[str, object]], kill_after: int
                      ) -> tuple[set[str], set[str], set[str]]:
    """Fire ``bodies`` from several threads; kill -9 once ``kill_after`` answers arrived.
    Returns (uids answered allowed, uids answered denied, uids sent without an answer)."""
    allowed: set[str] = set()
    denied: set[str] = set()
    unanswered: set[str] = set()
    lock = threading.Lock()
    queue = list(reversed(bodies))
    answered = threading.Semaphore(0)

    def worker() -> None:
        with httpx.Client(base_url=server.base_url, verify=verifier(server.ca_file), timeout=10.0) as client:
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                uid = str(body["request"]["uid"])  # type: ignore[index]
                try:
                    response = client.post("/validate", content=orjson.dumps(body))
                    answer = response.json()["response"]
                except (httpx.TransportError, ValueError, KeyError):
                    with lock:
                        unanswered.add(uid)
                    return  # the server is gone: this request was in flight at the kill
                with lock:
                    (allowed if answer["allowed"] else denied).add(uid)
                answered.release()

    threads = [threading.Thread(target=worker) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for _ in range(kill_after):
        assert answered.acquire(timeout=30)
    server.kill9()
    for thread in threads:
        thread.join(30)
    return allowed, denied, unanswered


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_kill_9_mid_load_leaves_a_consistent_ledger(setup: Setup, tmp_path: Path, backend: str,
                                                     request: pytest.FixtureRequest) -> None:
    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
        else:
            ledger_url = stack.enter_context(fresh_ledger_database(request.getfixturevalue("postgres_server_url")))
        # acme is tier-1: its rule only warns, so nearly every request reserves and the kill lands mid-write
        bodies = [review(gpu_pod(f"job-{i}", "acme", 1)) for i in range(600)]
        server = start_server(tmp_path / "srv", ledger_url=ledger_url, policy=setup.policy, tenants=setup.tenants,
                              tls=setup.tls, ca_file=setup.ca.ca_file)
        allowed, denied, unanswered = _crash_under_load(server, bodies, kill_after=150)
        assert len(allowed) >= 150
        assert 0 < len(unanswered) <= CLIENTS  # the kill caught requests in flight, one per client at most

        restarted = start_server(tmp_path / "srv", ledger_url=ledger_url, policy=setup.policy,
                                 tenants=setup.tenants, tls=setup.tls, ca_file=setup.ca.ca_file, name="restarted")
        try:
            reserved = _reservations_by_uid(ledger_url)
            assert all(count == 1 for count in reserved.values())
            assert allowed <= set(reserved)  # every allowed answer has its reservation
            assert not (denied & set(reserved))
            assert set(reserved) - allowed <= unanswered  # the rest were in flight at the kill

            # the API server retries what it got no answer for: same uids, nothing reserved twice
            by_uid = {str(b["request"]["uid"]): b for b in bodies}
            client = restarted.client()
            retried_allowed = {uid for uid in unanswered if restarted.review(by_uid[uid], client)["allowed"]}
            after = _reservations_by_uid(ledger_url)
            assert all(count == 1 for count in after.values())
            assert set(after) == allowed | retried_allowed
            assert set(reserved) - allowed <= retried_allowed  # reserved before the kill: the retry is allowed
            assert wait_for(lambda: restarted.client().get("/readyz").status_code == 200)
        finally:
            restarted.stop()
