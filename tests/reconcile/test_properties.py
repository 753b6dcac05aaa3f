"""Properties of reconciling: whatever the cluster shows, one pass reaches a fixed point (a second pass — or a
restarted reconciler — changes nothing), and the concurrent counters equal what the still-active reservations
hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from gpuquota.domain import Scope
from gpuquota.ledger import open_ledger
from gpuquota.reconcile import Reconciler
from gpuquota.testing import FakeKube
from tests.ledger.builders import concurrent, reservation
from tests.reconcile.objects import job, job_complete, job_failed, pod

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
NS = "acme-train"
FATES = ("never-created", "created", "running", "complete", "failed", "deleted-after-running")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(FATES), st.integers(0, 30), st.integers(1, 8)), min_size=1, max_size=8),
    st.integers(0, 40),
)
def test_one_pass_reaches_a_fixed_point(workloads: list[tuple[str, int, int]], minutes_later: int) -> None:
    ledger = open_ledger("sqlite:///:memory:")
    kube = FakeKube()
    now = T0 + timedelta(minutes=30 + minutes_later)
    try:
        for i, (fate, admitted_min, gpus) in enumerate(workloads):
            name = f"w{i}"
            admitted = T0 + timedelta(minutes=admitted_min)
            ledger.reserve(reservation(f"uid-{i}", name=name, namespace=NS, gpus=gpus, when=admitted), admitted)
            if fate == "never-created":
                continue
            created = job(name, NS, admitted)
            started = admitted + timedelta(seconds=30)
            status = {
                "created": {},
                "running": {"startTime": started.strftime("%Y-%m-%dT%H:%M:%SZ")},
                "complete": job_complete(started, started + timedelta(minutes=5)),
                "failed": job_failed(started, started + timedelta(minutes=2)),
                "deleted-after-running": {},
            }[fate]
            kube.put(f"/apis/batch/v1/namespaces/{NS}/jobs/{name}", job(name, NS, admitted, **status))
            if fate in ("running", "deleted-after-running"):
                kube.put(f"/api/v1/namespaces/{NS}/pods/{name}-0", pod(f"{name}-0", NS, created, "Running", started))

        def reconciler() -> Reconciler:
            return Reconciler(kube, ledger, clock=lambda: now, workers=1)

        first = reconciler()
        first.reconcile_once()
        for i, (fate, _, _) in enumerate(workloads):
            if fate == "deleted-after-running":  # seen running once, then gone without the webhook hearing
                kube.delete(f"/apis/batch/v1/namespaces/{NS}/jobs/w{i}")
                kube.delete(f"/api/v1/namespaces/{NS}/pods/w{i}-0")
        first.reconcile_once()
        assert first.reconcile_once().transitions == ()
        assert reconciler().reconcile_once().transitions == ()  # after a restart

        active = ledger.active_reservations()
        key = concurrent(Scope.TENANT, "acme")
        assert abs(ledger.usage([key], now)[key] - sum(r.tpp for r in active)) < 1e-6
        states = {r.workload.name: r.state for r in ledger.reservations()}
        for i, (fate, admitted_min, _) in enumerate(workloads):
            state = states[f"w{i}"]
            if fate in ("complete", "failed"):
                assert state == "settled"
            elif fate == "running":
                assert state == "running"
            elif fate == "deleted-after-running":
                assert state == "released"
            elif fate == "never-created":
                old_enough = now - (T0 + timedelta(minutes=admitted_min)) >= timedelta(minutes=5)
                assert state == ("expired" if old_enough else "reserved")
            else:
                assert state == "reserved"  # created, not started yet
    finally:
        ledger.close()
