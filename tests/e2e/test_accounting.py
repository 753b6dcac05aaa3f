"""What runs is what is charged, against the real API server and controllers: an orphaning delete leaves the Job
controller's pod running and its reservation held until that pod is gone; a pod re-created under a name is a new
workload, not a retry. (No scheduler or kubelet runs here: pods stay Pending, and a Pending GPU pod may be bound at
any moment, so it counts as holding its GPUs.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gpuquota.ledger import ReservationState, open_ledger
from tests.cluster import wait_until
from tests.e2e.install import Gpuquota
from tests.e2e.manifests import job, pod


def _names(gpuquota: Gpuquota, ns: str) -> dict[str, bool]:
    return {r.workload.name: r.releasing for r in gpuquota.reservations(ns)}


def _job_pods(gpuquota: Gpuquota, ns: str, name: str) -> list[dict[str, Any]]:
    return gpuquota.cluster.items("pods", ns, selector=f"batch.kubernetes.io/job-name={name}")


def test_an_orphaning_delete_keeps_the_job_charged_until_its_pod_is_gone(gpuquota: Gpuquota) -> None:
    tenant = gpuquota.tenant("e2e-orphan", "orphan", "BR")
    ns = tenant.namespace
    assert tenant.apply(job("keep", 8, parallelism=2)).ok  # 16 of 16: the Job controller's pods ride on it
    pods = wait_until(lambda: _job_pods(gpuquota, ns, "keep") if len(_job_pods(gpuquota, ns, "keep")) == 2 else None,
                      what="the Job controller's pods")
    assert _names(gpuquota, ns) == {"keep": False}  # both pods rode on the Job's budget
    deleted = tenant.kubectl("delete", "job", "keep", "--cascade=orphan")
    assert deleted.ok, deleted.output
    wait_until(lambda: all(not (p.get("metadata", {}).get("ownerReferences")) for p in _job_pods(gpuquota, ns, "keep")),
               what="the garbage collector to orphan the pods")
    gpuquota.reconcile_once()
    assert _names(gpuquota, ns) == {"keep": True}  # the pods run on: still charged
    assert not tenant.apply(pod("sneak", 1)).ok  # the cap is still full
    for p in pods:
        assert tenant.kubectl("delete", "pod", p["metadata"]["name"], "--wait=false").ok

    def released() -> bool:
        gpuquota.reconcile_once()
        return "keep" not in _names(gpuquota, ns)

    wait_until(released, what="the reconciler to release the Job once its orphaned pods are gone")
    assert tenant.apply(pod("fits-now", 1)).ok


def test_a_recreated_pod_is_a_new_workload(gpuquota: Gpuquota) -> None:
    tenant = gpuquota.tenant("e2e-recreate", "recreate", "BR")
    ns = tenant.namespace
    assert tenant.apply(pod("big", 16)).ok  # the whole cap
    assert tenant.kubectl("delete", "pod", "big").ok
    again = tenant.apply(pod("big", 16))  # the same name, the same size: once taken for a retry, run uncharged
    assert not again.ok
    assert "denied" in again.stderr, again.output

    def released() -> bool:
        # Pod DELETEs do not reach the webhook, and this pod never ran: it expires after the grace period (1 s here)
        gpuquota.reconcile_once("--grace", "1")
        return "big" not in _names(gpuquota, ns)

    wait_until(released, what="the reconciler to expire the deleted pod's reservation")
    assert tenant.apply(pod("big", 16)).ok  # now it fits, charged as a new workload
    assert _names(gpuquota, ns) == {"big": False}


def test_a_stopping_profile_suspends_a_job_past_its_declared_runtime(gpuquota: Gpuquota, tmp_path: Path) -> None:
    """The real Job controller sets the Job's startTime; the reconciler (admin credentials: the chart grants patch
    only to a stopping inline profile) sees it past its declared second and suspends it through spec.suspend."""
    tenant = gpuquota.tenant("e2e-overrun", "overrun", "BR")
    ns = tenant.namespace
    late = job("late", 1)
    late["metadata"]["annotations"] = {"gpuquota.io/max-runtime": "1s"}
    assert tenant.apply(late).ok

    def running() -> bool:
        gpuquota.reconcile_once()
        return [r.state for r in gpuquota.reservations(ns)] == [ReservationState.RUNNING]

    wait_until(running, what="the reconciler to see the Job started")
    stopping = tmp_path / "stopping.yaml"
    stopping.write_text(gpuquota.policy.read_text() + "\noverrun:\n  action: stop\n")
    printed = gpuquota.reconcile_once("--policy", str(stopping), admin=True)
    assert "1 workload(s) past their declared runtime stopped (suspend)" in printed, printed
    [stored] = gpuquota.cluster.items("jobs", ns)
    assert stored["spec"]["suspend"] is True
    ledger = open_ledger(gpuquota.ledger_url)
    try:
        stops = [d for d in ledger.decisions() if d.namespace == ns and d.operation == "SUSPEND"]
    finally:
        ledger.close()
    assert [(d.name, d.user) for d in stops] == [("late", "gpuquota-reconciler")]
    assert "stopped" not in gpuquota.reconcile_once("--policy", str(stopping), admin=True)  # already suspended


def _denied_pods(gpuquota: Gpuquota, ns: str) -> list[dict[str, Any]]:
    lines = (json.loads(text) for text in gpuquota.webhook.audit_path.read_text().splitlines())
    return [rec for rec in lines if rec.get("namespace") == ns and rec.get("kind") == "Pod" and not rec["allowed"]]


def test_job_controller_replacements_ride_only_within_the_jobs_budget(gpuquota: Gpuquota) -> None:
    """The real Job controller replaces a deleted pod before the reconciler has seen the old one go: the Job's
    budget is still taken, so the replacement is judged on its own — charged while it fits, denied at the cap —
    and once the reconciler has seen the old pods gone, the controller's retry rides on the Job again."""
    tenant = gpuquota.tenant("e2e-replace", "replace", "BR")  # 16 GPUs at most (the test profile's tier-2 cap)
    ns = tenant.namespace
    assert tenant.apply(job("rep", 8)).ok  # 8 of 16
    [first] = wait_until(lambda: _job_pods(gpuquota, ns, "rep") or None, what="the Job controller's pod")
    assert gpuquota.audited(ns, first["metadata"]["name"])["owner"] == f"Job {ns}/rep"
    assert tenant.kubectl("delete", "pod", first["metadata"]["name"], "--wait=false").ok

    def replacement(old: str) -> dict[str, Any] | None:
        pods = [p for p in _job_pods(gpuquota, ns, "rep") if p["metadata"]["name"] != old
                and not p["metadata"].get("deletionTimestamp")]  # fmt: skip
        return pods[0] if pods else None

    second = wait_until(lambda: replacement(first["metadata"]["name"]), timeout_s=90,
                        what="the Job controller's replacement")  # after its failed-pod backoff (~10 s)
    name = second["metadata"]["name"]
    assert gpuquota.audited(ns, name)["owner"] is None  # beyond the Job's budget: judged on its own
    charged = {(r.workload.kind, r.workload.name) for r in gpuquota.reservations(ns)}
    assert charged == {("Job", "rep"), ("Pod", name)}  # 16 of 16
    assert tenant.kubectl("delete", "pod", name, "--wait=false").ok
    # the next replacement is beyond the budget again and does not fit on its own: denied at the cap
    wait_until(lambda: _denied_pods(gpuquota, ns) or None, timeout_s=90, what="the next replacement denied at cap")
    assert replacement(name) is None

    def rides() -> dict[str, Any] | None:
        gpuquota.reconcile_once("--grace", "1")  # the deleted pods are gone: budget back, the lone pod's expired
        return replacement(name)

    third = wait_until(rides, timeout_s=120, interval_s=1.0, what="the controller's retry riding on the Job")
    assert gpuquota.audited(ns, third["metadata"]["name"])["owner"] == f"Job {ns}/rep"
    assert {(r.workload.kind, r.workload.name) for r in gpuquota.reservations(ns)} == {("Job", "rep")}
