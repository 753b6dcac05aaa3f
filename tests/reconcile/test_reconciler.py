"""The reconciler against an in-memory API server holding recorded objects and a real ledger (SQLite file)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gpuquota.domain import Charge, Metric, Scope, UsageKey
from gpuquota.kube import KubeError, ObjectList
from gpuquota.ledger import ReservationState, ReserveStatus, WorkloadRef, open_ledger
from gpuquota.ledger.store import SqlLedger
from gpuquota.reconcile import ClusterView, Reconciler, plan, pod_starts
from gpuquota.testing import FakeKube
from tests.ledger.builders import H100_TPP, concurrent, reservation
from tests.reconcile.conftest import Clock
from tests.reconcile.objects import (
    condition,
    job,
    job_complete,
    jobset,
    pod,
    pytorchjob,
    ts,
)

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
NS = "acme-train"
ACME = concurrent(Scope.TENANT, "acme")
YEAR = UsageKey(Scope.TENANT, "acme", Metric.OPERATIONS, "calendar-year:2026")
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
PODS = f"/api/v1/namespaces/{NS}/pods"


def admit(ledger: SqlLedger, name: str, when: datetime, *, kind: str = "Job", group: str = "batch",
          cap: float | None = None, uid: str | None = None) -> int | None:  # fmt: skip
    r = reservation(uid or f"uid-{name}", name=name, namespace=NS, kind=kind, group=group, when=when, tenant_cap=cap)
    result = ledger.reserve(r, when)
    return result.reservation_id if result.status is ReserveStatus.RESERVED else None


def reconciler(kube: FakeKube, ledger: SqlLedger, clock: Clock) -> Reconciler:
    return Reconciler(kube, ledger, clock=clock, workers=1, resync_s=600, monotonic=lambda: clock.now.timestamp())  # noqa: PLW0108


def test_a_job_runs_and_settles_to_its_actual_runtime(ledger: SqlLedger) -> None:
    kube, clock = FakeKube(), Clock(T0)
    admit(ledger, "llm", T0)
    rec = reconciler(kube, ledger, clock)
    created = job("llm", NS, T0 + timedelta(seconds=1))
    kube.put(f"{JOBS}/llm", created)
    assert rec.reconcile_once().applied == {}  # created, no pod started yet
    started = T0 + timedelta(seconds=40)
    kube.put(f"{PODS}/llm-0", pod("llm-0", NS, created, "Running", started))
    clock.now = T0 + timedelta(minutes=1)
    assert rec.reconcile_once().applied == {"running": 1}
    [active] = ledger.active_reservations()
    assert (active.state, active.started_at) == (ReservationState.RUNNING, started)
    ended = started + timedelta(minutes=20)
    kube.put(f"{JOBS}/llm", job("llm", NS, T0, **job_complete(started, ended)))
    clock.now = ended + timedelta(seconds=30)
    assert rec.reconcile_once().applied == {"settled": 1}
    [done] = ledger.reservations()
    assert done.state is ReservationState.SETTLED
    assert done.ended_at == ended
    assert done.actual_operations == pytest.approx(1e15 * 1200)
    assert ledger.usage([ACME, YEAR], clock.now) == {ACME: pytest.approx(0, abs=1e-6), YEAR: pytest.approx(1.2e18)}
    # Nothing more to do, on this reconciler or on a fresh one after a restart.
    assert rec.reconcile_once().transitions == ()
    assert reconciler(kube, ledger, clock).reconcile_once().transitions == ()
    assert ledger.usage([YEAR], clock.now)[YEAR] == pytest.approx(1.2e18)


def test_a_workload_never_created_expires_after_the_grace_period(ledger: SqlLedger) -> None:
    kube, clock = FakeKube(), Clock(T0)
    cap = 8 * H100_TPP
    admit(ledger, "ghost", T0, cap=cap)
    assert admit(ledger, "next", T0, cap=cap) is None  # the ghost holds the whole cap
    rec = reconciler(kube, ledger, clock)
    clock.now = T0 + timedelta(minutes=4, seconds=59)
    assert rec.reconcile_once().applied == {}
    clock.now = T0 + timedelta(minutes=5)
    assert rec.reconcile_once().applied == {"expired": 1}
    [ghost] = ledger.reservations()
    assert (ghost.state, ghost.actual_operations) == (ReservationState.EXPIRED, 0.0)
    assert admit(ledger, "next", clock.now, cap=cap) is not None


class WithoutCrd(FakeKube):
    """An API server where the Kubeflow CRDs are not installed (yet)."""

    installed = False

    def list(self, path: str, label_selector: str | None = None) -> ObjectList:
        if "/kubeflow.org/" in path and not self.installed:
            raise KubeError(404, "the server could not find the requested resource")
        return super().list(path, label_selector)


def test_an_unlistable_kind_is_never_taken_as_gone(ledger: SqlLedger) -> None:
    kube, clock = WithoutCrd(), Clock(T0)
    admit(ledger, "ptj", T0, kind="PyTorchJob", group="kubeflow.org")
    rec = reconciler(kube, ledger, clock)
    clock.now = T0 + timedelta(hours=1)
    assert rec.reconcile_once().transitions == ()
    assert rec.reconcile_once().transitions == ()
    assert [r.state for r in ledger.active_reservations()] == [ReservationState.RESERVED]
    # Once it can be listed (and the object is not there), the grace rule applies.
    kube.installed = True
    assert rec.reconcile_once().applied == {"expired": 1}


def test_a_deleted_running_workload_is_released(ledger: SqlLedger) -> None:
    kube, clock = FakeKube(), Clock(T0)
    admit(ledger, "llm", T0)
    created = job("llm", NS, T0)
    kube.put(f"{JOBS}/llm", created)
    kube.put(f"{PODS}/llm-0", pod("llm-0", NS, created, "Running", T0 + timedelta(seconds=10)))
    rec = reconciler(kube, ledger, clock)
    rec.reconcile_once()
    kube.delete(f"{JOBS}/llm")  # deleted while the webhook was not told (e.g. it was down)
    kube.delete(f"{PODS}/llm-0")
    clock.now = T0 + timedelta(minutes=10, seconds=10)
    assert rec.reconcile_once().applied == {"released": 1}
    [done] = ledger.reservations()
    assert done.actual_operations == pytest.approx(1e15 * 600)


def test_watch_410_gone_relists_and_misses_nothing(ledger: SqlLedger) -> None:
    kube, clock = FakeKube(), Clock(T0)
    admit(ledger, "llm", T0)
    created = job("llm", NS, T0)
    kube.put(f"{JOBS}/llm", created)
    rec = reconciler(kube, ledger, clock)
    rec.reconcile_once()
    relists = {k: c.relists for k, c in rec.caches.items()}
    kube.put(f"{PODS}/llm-0", pod("llm-0", NS, created, "Running", T0 + timedelta(seconds=10)))
    kube.put(f"{JOBS}/other", job("other", NS, T0))
    kube.compact()  # the events are gone: the watch answers 410
    assert rec.reconcile_once().applied == {"running": 1}
    assert any(c.relists > relists[k] for k, c in rec.caches.items())
    # Watches pick up later changes without listing again.
    relists = {k: c.relists for k, c in rec.caches.items()}
    kube.put(f"{JOBS}/llm", job("llm", NS, T0, **job_complete(T0, T0 + timedelta(minutes=3))))
    assert rec.reconcile_once().applied == {"settled": 1}
    assert {k: c.relists for k, c in rec.caches.items() if k in relists} == relists


def test_jobset_started_through_its_jobs_pods(ledger: SqlLedger) -> None:
    kube, clock = FakeKube(), Clock(T0)
    admit(ledger, "llm", T0, kind="JobSet", group="jobset.x-k8s.io")
    js = jobset("llm", NS, T0)
    child = job("llm-workers-0", NS, T0, owner=js)
    kube.put(f"/apis/jobset.x-k8s.io/v1alpha2/namespaces/{NS}/jobsets/llm", js)
    kube.put(f"{JOBS}/llm-workers-0", child)
    kube.put(f"{PODS}/llm-workers-0-0", pod("llm-workers-0-0", NS, child, "Running", T0 + timedelta(seconds=90)))
    clock.now = T0 + timedelta(minutes=2)
    assert reconciler(kube, ledger, clock).reconcile_once().applied == {"running": 1}
    assert ledger.active_reservations()[0].started_at == T0 + timedelta(seconds=90)


def test_pod_starts_walk_the_owner_chain() -> None:
    js = jobset("llm", NS, T0)
    child = job("llm-w-0", NS, T0, owner=js)
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-1", "uid": "uid-rs"}}
    objects = {
        WorkloadRef(NS, "JobSet", "llm", "jobset.x-k8s.io"): js,
        WorkloadRef(NS, "Job", "llm-w-0", "batch"): child,
        WorkloadRef(NS, "Pod", "a"): pod("a", NS, child, "Running", T0 + timedelta(seconds=30)),
        WorkloadRef(NS, "Pod", "b"): pod("b", NS, child, "Running", T0 + timedelta(seconds=20)),
        WorkloadRef(NS, "Pod", "c"): pod("c", NS, child, "Pending", None),
        WorkloadRef(NS, "Pod", "web"): pod("web", NS, rs, "Running", T0),
    }
    starts = pod_starts(objects)
    assert starts[WorkloadRef(NS, "JobSet", "llm", "jobset.x-k8s.io")] == T0 + timedelta(seconds=20)
    assert starts[WorkloadRef(NS, "Job", "llm-w-0", "batch")] == T0 + timedelta(seconds=20)
    assert starts[WorkloadRef(NS, "ReplicaSet", "web-1", "apps")] == T0


def test_plan_for_a_replaced_object_and_a_finished_pytorchjob(ledger: SqlLedger) -> None:
    admit(ledger, "llm", T0)
    admit(ledger, "ptj", T0, kind="PyTorchJob", group="kubeflow.org")
    recreated = job("llm", NS, T0 + timedelta(hours=2))  # the admitted object went; a new one of that name is here
    finished = pytorchjob(
        "ptj", NS, T0, [condition("Running", T0 + timedelta(minutes=1)), condition("Failed", T0 + timedelta(hours=1))]
    )
    view = ClusterView(
        {
            WorkloadRef(NS, "Job", "llm", "batch"): recreated,
            WorkloadRef(NS, "PyTorchJob", "ptj", "kubeflow.org"): finished,
        },
        frozenset({(("batch", "Job"), NS), (("kubeflow.org", "PyTorchJob"), NS), (("", "Pod"), NS)}),
    )
    transitions = plan(ledger.active_reservations(), view, T0 + timedelta(hours=3))
    # the replaced object's pods may have outlived it: released when seen free of GPU pods, not when replaced
    assert [(t.workload.name, t.to, t.at, t.started) for t in transitions] == [
        ("llm", ReservationState.RELEASED, T0 + timedelta(hours=3), None),
        ("ptj", ReservationState.SETTLED, T0 + timedelta(hours=1), T0 + timedelta(minutes=1)),
    ]
    assert transitions[1].reason == "Failed"


def test_two_reconcilers_at_once_do_not_double_count(ledger: SqlLedger, tmp_path: Path) -> None:
    kube, clock = FakeKube(), Clock(T0)
    for name in ("a", "b", "c"):
        admit(ledger, name, T0)
        created = job(name, NS, T0)
        kube.put(f"{JOBS}/{name}", created)
        kube.put(f"{JOBS}/{name}", job(name, NS, T0, **job_complete(T0, T0 + timedelta(minutes=10))))
    clock.now = T0 + timedelta(hours=1)
    other_ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        first = reconciler(kube, ledger, clock)
        second = reconciler(kube, other_ledger, clock)
        # Both plan from the same snapshot before either applies: the second's transitions find nothing to do.
        active = ledger.active_reservations()
        first.sync(active)
        second.sync(active)
        plans = [plan(active, r.view(), clock.now) for r in (first, second)]
        applied = [sum(first._apply(t) for t in plans[0]), sum(second._apply(t) for t in plans[1])]
    finally:
        other_ledger.close()
    assert applied == [3, 0]
    assert ledger.usage([YEAR], clock.now)[YEAR] == pytest.approx(3 * 1e15 * 600)


def test_ledger_charges_survive_settling_and_new_admissions(ledger: SqlLedger) -> None:
    kube, clock = FakeKube(), Clock(T0)
    charges = (Charge(ACME, 100.0, 150.0, "cap"),)
    ledger.reserve(reservation("uid-x", name="x", namespace=NS, charges=charges), T0)
    created = job("x", NS, T0)
    kube.put(f"{JOBS}/x", job("x", NS, T0, **job_complete(T0, T0 + timedelta(minutes=1))))
    del created
    clock.now = T0 + timedelta(minutes=2)
    reconciler(kube, ledger, clock).reconcile_once()
    result = ledger.reserve(reservation("uid-y", name="y", namespace=NS, charges=charges), clock.now)
    assert result.status is ReserveStatus.RESERVED
    assert ledger.usage([ACME], clock.now)[ACME] == 100.0
    assert ts(T0) == "2026-11-26T09:00:00Z"


def _serve(kube: FakeKube, version: str, *plurals: str) -> None:
    """The discovery document (APIResourceList) of kubeflow.org/<version>, listing ``plurals``."""
    kube.put(f"/apis/kubeflow.org/{version}", {
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"kubeflow.org/{version}",
        "resources": [{"name": p, "namespaced": True, "kind": p.title()} for p in plurals]})


def _mpijob(version: str, created: datetime, conditions: list[dict[str, object]]) -> dict[str, object]:
    obj = pytorchjob("nccl", NS, created, conditions)
    return obj | {"apiVersion": f"kubeflow.org/{version}", "kind": "MPIJob",
                  "spec": {"mpiReplicaSpecs": {"Worker": {"replicas": 2}}}}


@pytest.mark.parametrize("version", ["v2beta1", "v1"])
def test_an_mpijob_is_followed_at_the_version_the_cluster_serves(ledger: SqlLedger, version: str) -> None:
    """The MPI Operator serves MPIJob at v2beta1, the training operator at v1 (next to its other jobs): the
    reconciler reads the discovery documents instead of assuming one."""
    kube, clock = FakeKube(), Clock(T0)
    _serve(kube, "v1", "pytorchjobs", *(["mpijobs"] if version == "v1" else []))
    if version == "v2beta1":
        _serve(kube, "v2beta1", "mpijobs")
    mpijobs = f"/apis/kubeflow.org/{version}/namespaces/{NS}/mpijobs"
    admit(ledger, "nccl", T0, kind="MPIJob", group="kubeflow.org")
    rec = reconciler(kube, ledger, clock)
    created = _mpijob(version, T0, [condition("Created", T0)])
    kube.put(f"{mpijobs}/nccl", created)
    started = T0 + timedelta(seconds=30)
    kube.put(f"{PODS}/nccl-worker-0", pod("nccl-worker-0", NS, created, "Running", started))
    clock.now = T0 + timedelta(minutes=1)
    assert rec.reconcile_once().applied == {"running": 1}
    ended = started + timedelta(minutes=10)
    kube.put(f"{mpijobs}/nccl", _mpijob(version, T0, [condition("Succeeded", ended)]))
    clock.now = ended + timedelta(seconds=30)
    assert rec.reconcile_once().applied == {"settled": 1}
    [done] = ledger.reservations()
    assert (done.state, done.ended_at) == (ReservationState.SETTLED, ended)


def test_an_mpijob_no_version_of_which_is_served_is_never_taken_as_gone(ledger: SqlLedger) -> None:
    kube, clock = FakeKube(), Clock(T0)
    _serve(kube, "v1", "pytorchjobs")  # the training operator without MPIJob, and no MPI Operator
    admit(ledger, "nccl", T0, kind="MPIJob", group="kubeflow.org")
    rec = reconciler(kube, ledger, clock)
    clock.now = T0 + timedelta(hours=1)
    assert rec.reconcile_once().transitions == ()
    assert [r.state for r in ledger.active_reservations()] == [ReservationState.RESERVED]
    # The MPI Operator is installed later: the next pass finds it, and the grace rule applies to the missing object.
    _serve(kube, "v2beta1", "mpijobs")
    assert rec.reconcile_once().applied == {"expired": 1}
