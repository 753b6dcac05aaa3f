"""Real controllers and the reconciler: the Job controller makes a Job's pods (which pass the pod backstop on the
Job's reservation), the test plays the kubelet (pod status), and two reconciler replicas — electing a leader on a
real Lease with the chart's RBAC — settle the reservation through the real watch API; killing the leader hands
the work to the other."""

from __future__ import annotations

import datetime as dt
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from gpuquota.ledger import ReservationState
from tests.cluster import Cluster, wait_until
from tests.e2e.install import NAMESPACE, RELEASE, Gpuquota
from tests.e2e.manifests import job
from tests.e2e.procs import Proc, start

LEASE = f"{RELEASE}-gpuquota-reconciler"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def reconcilers(gpuquota: Gpuquota) -> Iterator[dict[str, Proc]]:
    """Two replicas of ``gpuquota reconcile`` as the chart runs them (leader election on its Lease), with short
    timings so a failover takes seconds."""
    cluster = gpuquota.cluster
    args = ["reconcile", "--ledger", gpuquota.ledger_url, "--interval", "0.5", "--metrics-port", "-1",
            "--leader-elect", "--lease-name", LEASE, "--lease-namespace", NAMESPACE,
            "--lease-duration", "4", "--renew-deadline", "3", "--retry-period", "0.5",
            *cluster.api_flags(gpuquota.token_file)]
    replicas = {name: start(name, args, gpuquota.root / "reconcilers", env={"POD_NAME": name})
                for name in ("replica-a", "replica-b")}
    try:
        yield replicas
    finally:
        for proc in replicas.values():
            proc.stop()


def _holder(cluster: Cluster) -> str | None:
    lease = cluster.get("lease", LEASE, NAMESPACE)
    return None if lease is None else lease["spec"].get("holderIdentity")


def _pods(cluster: Cluster, namespace: str, job_name: str) -> list[dict[str, Any]]:
    return cluster.items("pods", namespace, selector=f"batch.kubernetes.io/job-name={job_name}")


def _two(pods: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    return pods if len(pods) == 2 else None


def _state(gpuquota: Gpuquota, namespace: str, name: str) -> ReservationState | None:
    states = [r.state for r in gpuquota.reservations(namespace) if r.workload.name == name]
    return states[0] if states else None


def _run_pods(cluster: Cluster, namespace: str, pods: list[dict[str, Any]]) -> None:
    for pod in pods:
        cluster.patch_status("pod", pod["metadata"]["name"], namespace, {"phase": "Running", "startTime": _now()})


def _finish_pods(cluster: Cluster, namespace: str, pods: list[dict[str, Any]]) -> None:
    for pod in pods:
        name = pod["metadata"]["name"]
        container = pod["spec"]["containers"][0]
        cluster.patch_status("pod", name, namespace, {
            "phase": "Succeeded",
            "containerStatuses": [{
                "name": container["name"], "image": container["image"], "imageID": "", "ready": False,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": _now(),
                                         "finishedAt": _now()}},
            }],
        })


def test_job_controller_pods_ride_on_the_job_and_the_reconciler_settles_it(
    gpuquota: Gpuquota, reconcilers: dict[str, Proc]
) -> None:
    cluster = gpuquota.cluster
    tenant = gpuquota.tenant("e2e-life", "lifecycle", "BR")
    ns = tenant.namespace
    pod_reviews = gpuquota.reviews("Pod")
    created = tenant.apply(job("life", 1, parallelism=2))
    assert created.ok, created.output

    pods = wait_until(lambda: _two(_pods(cluster, ns, "life")), what="the Job controller's pods")
    assert gpuquota.reviews("Pod") >= pod_reviews + 2  # the backstop judged them …
    assert [r.workload.name for r in gpuquota.reservations(ns)] == ["life"]  # … on the Job's reservation
    leader = wait_until(lambda: _holder(cluster), what="a reconciler leader")
    assert leader in reconcilers

    _run_pods(cluster, ns, pods)
    wait_until(lambda: _state(gpuquota, ns, "life") == ReservationState.RUNNING, what="the reservation running")
    _finish_pods(cluster, ns, pods)
    wait_until(lambda: any(c["type"] == "Complete" and c["status"] == "True"
                           for c in (cluster.get("job", "life", ns) or {}).get("status", {}).get("conditions", [])),
               what="the Job controller to complete the Job")
    wait_until(lambda: _state(gpuquota, ns, "life") is None, what="the reconciler to settle the reservation")


def test_killing_the_leader_hands_the_lease_and_the_work_to_the_other_replica(
    gpuquota: Gpuquota, reconcilers: dict[str, Proc]
) -> None:
    cluster = gpuquota.cluster
    leader = wait_until(lambda: _holder(cluster), what="a reconciler leader")
    reconcilers[leader].stop(signal.SIGKILL)  # a crash: the Lease is not given up, it expires
    other = next(name for name in reconcilers if name != leader)
    assert wait_until(lambda: _holder(cluster) == other, timeout_s=30, what=f"{other} to take the Lease")

    tenant = gpuquota.tenant("e2e-failover", "failover", "BR")
    ns = tenant.namespace
    assert tenant.apply(job("after", 1)).ok
    pods = wait_until(lambda: _pods(cluster, ns, "after"), what="the Job controller's pod")
    _run_pods(cluster, ns, pods)
    wait_until(lambda: _state(gpuquota, ns, "after") == ReservationState.RUNNING, what="the new leader's pass")
    assert reconcilers[other].alive(), reconcilers[other].log()
