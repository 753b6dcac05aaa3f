"""What runs is what is charged, in the reconciler: a reservation is released or settled only when no pod of its
workload's tree holds GPUs; riders give their budget back as their pods go; running work accrues operations."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest

from gpuquota.domain import Metric, Scope, UsageKey
from gpuquota.ledger import Rider, RideStatus, WorkloadRef
from gpuquota.ledger.store import SqlLedger
from gpuquota.reconcile import Reconciler
from gpuquota.reconcile.overrun import overruns
from gpuquota.testing import FakeKube
from tests.ledger.builders import reservation
from tests.reconcile.conftest import Clock
from tests.reconcile.objects import job, job_complete, pod

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
NS = "acme-train"
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
PODS = f"/api/v1/namespaces/{NS}/pods"
LLM = WorkloadRef(NS, "Job", "llm", "batch")
YEAR = UsageKey(Scope.TENANT, "acme", Metric.OPERATIONS, "calendar-year:2026")
TPP = UsageKey(Scope.TENANT, "acme", Metric.CONCURRENT_TPP)


def setup(ledger: SqlLedger, *, object_uid: str = "uid-job-llm", max_runtime_s: float = 3600.0) -> tuple[
        FakeKube, Clock, Reconciler]:  # fmt: skip
    ledger.reserve(reservation("req-llm", name="llm", namespace=NS, when=T0, object_uid=object_uid,
                               max_runtime_s=max_runtime_s), T0)  # fmt: skip
    kube, clock = FakeKube(), Clock(T0)
    rec = Reconciler(kube, ledger, clock=clock, workers=1, resync_s=600, monotonic=lambda: clock.now.timestamp())  # noqa: PLW0108
    return kube, clock, rec


def test_an_orphaning_delete_holds_until_the_orphans_are_gone(ledger: SqlLedger) -> None:
    """``kubectl delete job llm --cascade=orphan``: the garbage collector strips the pods' owner references and the
    pods run on. The reservation they rode on stays charged until they are gone."""
    kube, clock, rec = setup(ledger)
    created = job("llm", NS, T0)
    running = pod("llm-0", NS, created, "Running", T0 + timedelta(seconds=10), gpus=4)
    kube.put(f"{JOBS}/llm", created)
    kube.put(f"{PODS}/llm-0", running)
    assert ledger.ride(LLM, "uid-job-llm", Rider("uid-pod-llm-0", NS, "llm-0", 4), T0).status is RideStatus.RIDING
    assert rec.reconcile_once().applied == {"running": 1}
    assert ledger.mark_releasing(LLM, T0 + timedelta(minutes=1), "deleted") == 1  # the webhook saw the DELETE
    kube.delete(f"{JOBS}/llm")
    orphan = copy.deepcopy(running)
    del orphan["metadata"]["ownerReferences"]
    kube.put(f"{PODS}/llm-0", orphan)
    clock.now = T0 + timedelta(hours=2)
    assert rec.reconcile_once().applied == {}
    [held] = ledger.active_reservations()
    assert held.releasing
    assert ledger.usage([TPP], clock.now)[TPP] > 0
    kube.delete(f"{PODS}/llm-0")
    clock.now = T0 + timedelta(hours=3)
    assert rec.reconcile_once().applied == {"released": 1}
    assert ledger.usage([TPP], clock.now)[TPP] == 0
    [done] = ledger.reservations()
    assert done.actual_operations == pytest.approx(1e15 * (3 * 3600 - 10))  # to when its GPUs were seen gone


def test_a_finished_workload_whose_pods_still_run_is_not_settled(ledger: SqlLedger) -> None:
    """Children outlive parents: a Job that says Complete while a GPU pod under it still runs (a PyTorchJob with
    cleanPodPolicy None, a RayJob keeping its RayCluster) stays charged until that pod is done."""
    kube, clock, rec = setup(ledger)
    created = job("llm", NS, T0, **job_complete(T0, T0 + timedelta(hours=1)))
    kube.put(f"{JOBS}/llm", created)
    kube.put(f"{PODS}/llm-0", pod("llm-0", NS, created, "Running", T0, gpus=4))
    clock.now = T0 + timedelta(hours=2)
    assert rec.reconcile_once().applied == {"running": 1}
    kube.put(f"{PODS}/llm-0", pod("llm-0", NS, created, "Succeeded", T0, finished=T0 + timedelta(hours=2), gpus=4))
    clock.now = T0 + timedelta(hours=2, minutes=1)
    assert rec.reconcile_once().applied == {"settled": 1}
    [done] = ledger.reservations()
    # settled at the Job's own finish, but never below what was measured while its pod ran (accrued to 2 h)
    assert done.actual_operations == pytest.approx(1e15 * 2 * 3600)


def test_a_recreated_object_does_not_release_the_old_reservation_while_its_pods_run(ledger: SqlLedger) -> None:
    """The old Job was deleted (background) and a new one of the same name created: the old pods, terminating,
    still carry the old uid and hold GPUs; the old reservation holds until they are gone."""
    kube, clock, rec = setup(ledger, object_uid="uid-job-old")
    old = job("llm", NS, T0)
    old["metadata"]["uid"] = "uid-job-old"
    kube.put(f"{PODS}/llm-old-0", pod("llm-old-0", NS, old, "Running", T0, gpus=4))
    kube.put(f"{JOBS}/llm", job("llm", NS, T0 + timedelta(minutes=1)))  # uid-job-llm: another object
    clock.now = T0 + timedelta(minutes=30)
    rec.reconcile_once()
    assert [r.object_uid for r in ledger.active_reservations()] == ["uid-job-old"]  # its pods carry its uid
    kube.delete(f"{PODS}/llm-old-0")
    clock.now = T0 + timedelta(hours=1)
    assert rec.reconcile_once().applied == {"released": 1}


def test_riders_give_their_budget_back_when_their_pods_finish(ledger: SqlLedger) -> None:
    kube, clock, rec = setup(ledger)
    created = job("llm", NS, T0)
    kube.put(f"{JOBS}/llm", created)
    for name in ("llm-0", "llm-1"):
        kube.put(f"{PODS}/{name}", pod(name, NS, created, "Running", T0, gpus=4))
        assert ledger.ride(LLM, "", Rider(f"uid-pod-{name}", NS, name, 4), T0).status is RideStatus.RIDING
    assert ledger.ride(LLM, "", Rider("uid-pod-llm-2", NS, "llm-2", 4), T0).status is RideStatus.OVER_BUDGET
    kube.put(f"{PODS}/llm-0", pod("llm-0", NS, created, "Failed", T0, finished=T0 + timedelta(minutes=5), gpus=4))
    clock.now = T0 + timedelta(minutes=6)
    rec.reconcile_once()
    assert [r.name for r in ledger.live_riders()] == ["llm-1"]
    # the replacement now fits in what the failed pod gave back
    assert ledger.ride(LLM, "", Rider("uid-pod-llm-2", NS, "llm-2", 4), T0).status is RideStatus.RIDING


def test_a_run_past_its_declared_runtime_is_charged_as_it_runs(ledger: SqlLedger) -> None:
    """Declared 1 h; it runs 3 h. Cumulative caps see the real spend while it runs, not only when it settles."""
    kube, clock, rec = setup(ledger, max_runtime_s=3600)
    created = job("llm", NS, T0)
    kube.put(f"{JOBS}/llm", created)
    kube.put(f"{PODS}/llm-0", pod("llm-0", NS, created, "Running", T0, gpus=4))
    rec.reconcile_once()
    assert ledger.usage([YEAR], T0)[YEAR] == pytest.approx(1e15 * 3600)  # the declaration, reserved
    clock.now = T0 + timedelta(hours=3)
    rec.reconcile_once()
    assert ledger.usage([YEAR], clock.now)[YEAR] == pytest.approx(1e15 * 3 * 3600)
    assert [r.workload.name for r in overruns(ledger.active_reservations(), clock.now)] == ["llm"]  # reported
    assert overruns(ledger.active_reservations(), T0 + timedelta(minutes=59)) == []
