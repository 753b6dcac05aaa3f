"""A workload past its declared runtime: reported always, and with the profile's ``overrun.action: stop`` stopped by
the leading reconciler — through its kind's own suspend field, or deleted when the kind has none — once, recorded
in the ledger."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from gpuquota.domain import OverrunAction
from gpuquota.errors import UserError
from gpuquota.kube import KubeError
from gpuquota.ledger import WorkloadRef
from gpuquota.ledger.report import GroupBy, Period, build_report
from gpuquota.ledger.store import SqlLedger
from gpuquota.policy import Policy, load_policy, parse_policy_text
from gpuquota.reconcile import Reconciler, ReconcilerMetrics
from gpuquota.reconcile.overrun import Stop, stops
from gpuquota.reconcile.plan import ClusterView
from gpuquota.testing import FakeKube
from tests.ledger.builders import reservation
from tests.reconcile.conftest import Clock
from tests.reconcile.objects import job, pod, ts

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
NS = "acme-train"
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
PODS = f"/api/v1/namespaces/{NS}/pods"
BUNDLED = load_policy("ai-diffusion-2025")
STOPPING = dataclasses.replace(BUNDLED, overrun_action=OverrunAction.STOP)


class RefusingKube(FakeKube):
    """Refuses PATCH while ``refuse_patch`` is set (RBAC without the patch verb)."""

    refuse_patch = False

    def patch(self, path: str, body: dict[str, Any], patch_type: str = "merge") -> dict[str, Any]:
        if self.refuse_patch:
            raise KubeError(403, f"PATCH {path}: forbidden")
        return super().patch(path, body, patch_type)


def _running_job(kube: FakeKube, name: str = "llm") -> dict[str, Any]:
    """A Job started at T0 whose pod runs (its reservation declared one hour)."""
    created = job(name, NS, T0, startTime=ts(T0), active=1)
    kube.put(f"{JOBS}/{name}", created)
    kube.put(f"{PODS}/{name}-0", pod(f"{name}-0", NS, created, "Running", T0, gpus=8))
    return created


def _reconciler(kube: FakeKube, ledger: SqlLedger, clock: Clock, policy: Policy | None,
                metrics: ReconcilerMetrics | None = None) -> Reconciler:  # fmt: skip
    return Reconciler(kube, ledger, clock=clock, workers=1, resync_s=600, monotonic=clock.monotonic,
                      metrics=metrics, policy=(lambda: policy) if policy is not None else None)  # fmt: skip


def test_a_job_past_its_declared_runtime_is_suspended_once_and_the_stop_recorded(ledger: SqlLedger) -> None:
    ledger.reserve(reservation("req-llm", name="llm", namespace=NS, when=T0, max_runtime_s=3600.0), T0)
    kube, clock = FakeKube(), Clock(T0)
    _running_job(kube)
    metrics = ReconcilerMetrics()
    rec = _reconciler(kube, ledger, clock, STOPPING, metrics)
    assert rec.reconcile_once().applied == {"running": 1}
    clock.now = T0 + timedelta(minutes=59)
    assert not rec.reconcile_once().stopped  # within its declaration
    assert (kube.get(f"{JOBS}/llm") or {})["spec"].get("suspend") is None
    clock.now = T0 + timedelta(hours=2)
    assert rec.reconcile_once().stopped == {"suspend": 1}
    assert (kube.get(f"{JOBS}/llm") or {})["spec"]["suspend"] is True  # the Job controller now removes its pods
    [record] = [d for d in ledger.decisions() if d.operation == "SUSPEND"]
    assert (record.user, record.kind, record.name, record.profile) == ("gpuquota-reconciler", "Job", "llm",
                                                                      "ai-diffusion-2025")  # fmt: skip
    assert "past its declared runtime of 3600 s" in record.message
    assert "spec.suspend" in record.message
    assert metrics.registry.get_sample_value("gpuquota_reconciler_overrun_stops_total", {"action": "suspend"}) == 1
    clock.now = T0 + timedelta(hours=3)
    assert not rec.reconcile_once().stopped  # already suspended: nothing twice
    assert len([d for d in ledger.decisions() if d.operation == "SUSPEND"]) == 1
    [held] = ledger.active_reservations()
    assert held.workload.name == "llm"  # still charged: its pod is still there (suspending is not releasing)


def test_alert_reports_and_leaves_it_running(ledger: SqlLedger) -> None:
    for policy in (None, BUNDLED):  # no profile given, and the bundled one (alert)
        ledger.reserve(reservation(f"req-{policy is None}", name=f"llm-{policy is None}", namespace=NS, when=T0,
                                   max_runtime_s=3600.0), T0)  # fmt: skip
        kube, clock = FakeKube(), Clock(T0)
        _running_job(kube, f"llm-{policy is None}")
        metrics = ReconcilerMetrics()
        rec = _reconciler(kube, ledger, clock, policy, metrics)
        rec.reconcile_once()
        clock.now = T0 + timedelta(hours=2)
        assert not rec.reconcile_once().stopped
        assert (kube.get(f"{JOBS}/llm-{policy is None}") or {})["spec"].get("suspend") is None
        assert metrics.registry.get_sample_value("gpuquota_reconciler_overrunning_reservations") == 1
    assert [d for d in ledger.decisions() if d.operation != "CREATE"] == []


def test_a_pod_past_its_declared_runtime_is_deleted_having_no_suspend_field(ledger: SqlLedger) -> None:
    ledger.reserve(reservation("req-p", name="p", namespace=NS, kind="Pod", group="", when=T0, max_runtime_s=60.0),
                   T0)  # fmt: skip
    kube, clock = FakeKube(), Clock(T0)
    owner = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "uid-p"}}
    mine = pod("p", NS, owner, "Running", T0, gpus=8)
    mine["metadata"].pop("ownerReferences", None)
    kube.put(f"{PODS}/p", mine)
    rec = _reconciler(kube, ledger, clock, STOPPING)
    rec.reconcile_once()
    clock.now = T0 + timedelta(minutes=5)
    assert rec.reconcile_once().stopped == {"delete": 1}
    assert kube.get(f"{PODS}/p") is None
    assert [d.operation for d in ledger.decisions() if d.user == "gpuquota-reconciler"] == ["DELETE"]


def test_a_failed_stop_is_logged_and_tried_again_next_pass(ledger: SqlLedger) -> None:
    ledger.reserve(reservation("req-llm", name="llm", namespace=NS, when=T0, max_runtime_s=3600.0), T0)
    kube, clock = RefusingKube(), Clock(T0)
    _running_job(kube)
    rec = _reconciler(kube, ledger, clock, STOPPING)
    rec.reconcile_once()
    clock.now = T0 + timedelta(hours=2)
    kube.refuse_patch = True
    failed = rec.reconcile_once()
    assert (failed.stopped, failed.errors) == ({}, 1)
    assert [d for d in ledger.decisions() if d.operation == "SUSPEND"] == []  # nothing recorded that did not happen
    kube.refuse_patch = False
    assert rec.reconcile_once().stopped == {"suspend": 1}


def _view(*objects: tuple[WorkloadRef, dict[str, Any]]) -> ClusterView:
    return ClusterView(dict(objects), frozenset())


def test_each_kind_is_stopped_through_its_own_field() -> None:
    late = reservation("r", name="train", namespace=NS, kind="PyTorchJob", group="kubeflow.org", when=T0)
    ref = late.workload
    record = dataclasses.replace(_record(late), id=7)
    [stop] = stops([record], _view((ref, {"metadata": {"name": "train"}, "spec": {"runPolicy": {}}})))
    assert stop == Stop(ref, (record,), ("spec", "runPolicy", "suspend"))
    assert stop.patch() == {"spec": {"runPolicy": {"suspend": True}}}
    # already suspended, being deleted, or not in the cluster: nothing to stop
    assert stops([record], _view((ref, {"metadata": {}, "spec": {"runPolicy": {"suspend": True}}}))) == []
    assert stops([record], _view((ref, {"metadata": {"deletionTimestamp": ts(T0)}}))) == []
    assert stops([record], _view()) == []
    pod_ref = WorkloadRef(NS, "Pod", "p", "")
    pod_record = dataclasses.replace(record, workload=pod_ref)
    [delete] = stops([pod_record], _view((pod_ref, {"metadata": {"name": "p"}})))
    assert (delete.suspend, delete.operation) == (None, "DELETE")
    with pytest.raises(ValueError, match="no suspend field"):
        delete.patch()


def _record(r: Any) -> Any:
    """A ReservationRecord as the ledger would hold it for ``r`` (reserved at T0, running)."""
    from gpuquota.ledger import ReservationRecord, ReservationState  # noqa: PLC0415

    return ReservationRecord(
        id=1, request_uid=r.request_uid, workload=r.workload, tenant=r.tenant, jurisdiction=r.jurisdiction,
        tier=r.tier, model=r.model, gpus=r.gpus, tpp=r.tpp, operations=r.operations,
        operations_per_second=r.operations_per_second, max_runtime_s=r.max_runtime_s, profile=r.profile,
        profile_version=r.profile_version, state=ReservationState.RUNNING, reserved_at=T0, started_at=T0,
        ended_at=None, actual_operations=None, reason="",
    )  # fmt: skip


def _profile(**overrun: Any) -> str:
    spec = BUNDLED.spec.model_dump(by_alias=True, mode="json", exclude_defaults=True)
    spec["overrun"] = overrun
    return yaml.safe_dump(spec)


def test_the_profile_chooses_the_action_and_a_bad_one_is_refused_with_a_clear_error() -> None:
    assert BUNDLED.overrun_action is OverrunAction.ALERT  # the bundled profile only reports
    assert parse_policy_text(_profile(action="stop"), "p.yaml").overrun_action is OverrunAction.STOP
    with pytest.raises(UserError, match=r"overrun\.action.*'alert' or 'stop'"):
        parse_policy_text(_profile(action="kill"), "p.yaml")
    with pytest.raises(UserError, match=r"overrun\.after"):
        parse_policy_text(_profile(action="stop", after="1h"), "p.yaml")


def test_the_report_does_not_count_a_stop_as_an_admission(ledger: SqlLedger) -> None:
    ledger.reserve(reservation("req-llm", name="llm", namespace=NS, when=T0, max_runtime_s=3600.0), T0)
    kube, clock = FakeKube(), Clock(T0)
    _running_job(kube)
    rec = _reconciler(kube, ledger, clock, STOPPING)
    rec.reconcile_once()
    clock.now = T0 + timedelta(hours=2)
    assert rec.reconcile_once().stopped == {"suspend": 1}
    period = Period(T0 - timedelta(days=1), T0 + timedelta(days=1))
    report = build_report(ledger.reservations(), ledger.decisions(), period, GroupBy.TENANT, clock.now)
    assert [r.admissions for r in report.rows if r.subject == "acme"] == [1]
