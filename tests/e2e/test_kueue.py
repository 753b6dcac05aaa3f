"""gpuquota as a Kueue AdmissionCheck, end to end: the real Kueue controller manager (tests/e2e/kueue.py) queues
Jobs in a ClusterQueue that lists gpuquota's check, and ``gpuquota kueue-check`` — as the chart's service account,
with the chart's RBAC and AdmissionCheck object — says Ready, Pending or Rejected from the shared ledger.

The Jobs are created suspended with the queue-name label (Kueue's own mutating webhook, which would suspend them,
is not registered here: see tests/e2e/kueue.py). gpuquota's webhook judges them too — the two entrances of one
ledger: it passes them while suspended, and when Kueue un-suspends one it finds the check's reservation under the
Job and charges nothing twice; the Job's pods ride on it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.admission.serverproc import free_port
from tests.cluster import Cluster, Tenant, wait_until
from tests.e2e.install import NAMESPACE, RELEASE, Gpuquota, render_chart
from tests.e2e.kueue import run_kueue
from tests.e2e.manifests import job
from tests.e2e.procs import Proc, start
from tests.kueue.objects import H100_LABEL, KUEUE_POLICY

CHECK = "gpuquota"
QUEUE = "gpus"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


@dataclass
class KueueSetup:
    gpuquota: Gpuquota
    check: Proc
    metrics_port: int
    cluster_queue: str

    def tenant(self, base: str, tenant: str, jurisdiction: str) -> Tenant:
        """A tenant namespace with a LocalQueue feeding the test's ClusterQueue; the tenant's name is suffixed per run
        too (a cluster kept between runs still holds the last run's Workloads, judged on their own tenants)."""
        made = self.gpuquota.tenant(base, self.gpuquota.name(tenant), jurisdiction)
        self.gpuquota.cluster.apply({
            "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
            "metadata": {"name": QUEUE, "namespace": made.namespace},
            "spec": {"clusterQueue": self.cluster_queue}})
        return made

    def pending(self) -> dict[str, float]:
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        return {s.labels["reason"]: s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "gpuquota_kueue_workloads_pending"}


@pytest.fixture(scope="module")
def kueue(gpuquota: Gpuquota) -> Iterator[KueueSetup]:
    """Kueue, the chart's Kueue objects (RBAC on the webhook's account, the AdmissionCheck), a ResourceFlavor for
    H100 nodes and a ClusterQueue using the check; ``gpuquota kueue-check`` and a reconciler on the webhook's
    ledger."""
    cluster, root = gpuquota.cluster, gpuquota.root / "kueue"
    with run_kueue(cluster, root / "manager"):
        chart = render_chart(RELEASE, {"kueue": {"enabled": True, "checkName": CHECK}}, root)
        cluster.apply([d for d in chart if "kueue" in d["metadata"]["name"] or d["kind"] == "AdmissionCheck"],
                      "--server-side", "--force-conflicts")
        flavor, cq = gpuquota.name("kueue-h100"), gpuquota.name("kueue-cq")
        cluster.apply([
            {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": flavor},
             "spec": {"nodeLabels": {"nvidia.com/gpu.product": H100_LABEL}}},
            {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": cq},
             "spec": {"namespaceSelector": {},
                      "resourceGroups": [{"coveredResources": ["nvidia.com/gpu"], "flavors": [
                          {"name": flavor, "resources": [{"name": "nvidia.com/gpu", "nominalQuota": 64}]}]}],
                      "admissionChecksStrategy": {"admissionChecks": [{"name": CHECK}]}}},
        ])
        policy = root / "policy.yaml"
        policy.write_text(KUEUE_POLICY)
        port = free_port()
        api = cluster.api_flags(gpuquota.token_file)
        check = start("kueue-check", ["kueue-check", "--ledger", gpuquota.ledger_url, "--policy", str(policy),
                                      "--interval", "0.5", "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
                                      "--leader-elect", "--lease-name", f"{RELEASE}-gpuquota-kueue-check",
                                      "--lease-namespace", NAMESPACE, *api], root, env={"POD_NAME": "check-0"})
        reconciler = start("kueue-reconciler", ["reconcile", "--ledger", gpuquota.ledger_url, "--interval", "0.5",
                                                "--metrics-port", "-1", "--no-leader-elect", *api], root)
        try:
            wait_until(lambda: _active(cluster), timeout_s=60, what="the AdmissionCheck to be marked Active")
            wait_until(lambda: _cq_active(cluster, cq), timeout_s=60, what="Kueue to activate the ClusterQueue")
            yield KueueSetup(gpuquota, check, port, cq)
        finally:
            check.stop()
            reconciler.stop()


def _conditions(obj: dict[str, Any] | None) -> dict[str, str]:
    return {c["type"]: c["status"] for c in ((obj or {}).get("status") or {}).get("conditions") or []}


def _active(cluster: Cluster) -> bool:
    return _conditions(cluster.get("admissionchecks.kueue.x-k8s.io", CHECK)).get("Active") == "True"


def _cq_active(cluster: Cluster, name: str) -> bool:
    return _conditions(cluster.get("clusterqueues.kueue.x-k8s.io", name)).get("Active") == "True"


def queued_job(name: str, gpus: int) -> dict[str, Any]:
    """A Job for the tenant's LocalQueue, suspended as Kueue's webhook would have made it."""
    manifest = job(name, gpus, suspend=True)
    manifest["metadata"]["labels"] = {QUEUE_LABEL: QUEUE}
    return manifest


def workload_of(cluster: Cluster, namespace: str, job_name: str) -> dict[str, Any] | None:
    return next((w for w in cluster.items("workloads.kueue.x-k8s.io", namespace)
                 if any(r.get("name") == job_name for r in w["metadata"].get("ownerReferences") or [])), None)


def check_state(cluster: Cluster, namespace: str, job_name: str) -> tuple[str, str] | None:
    w = workload_of(cluster, namespace, job_name)
    states = [(c["state"], c.get("message", "")) for c in ((w or {}).get("status") or {}).get("admissionChecks") or []
              if c["name"] == CHECK]
    return states[0] if states else None


def state_is(cluster: Cluster, namespace: str, job_name: str, state: str) -> str | None:
    found = check_state(cluster, namespace, job_name)
    return found[1] or state if found and found[0] == state else None


def running(cluster: Cluster, namespace: str, job_name: str) -> dict[str, Any] | None:
    got = cluster.get("job", job_name, namespace)
    return got if got and got["spec"].get("suspend") is False else None


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def finish(cluster: Cluster, namespace: str, job_name: str) -> None:
    """Play the kubelet: the Job's pod ran and succeeded."""
    pods = wait_until(lambda: cluster.items("pods", namespace, selector=f"batch.kubernetes.io/job-name={job_name}"),
                      what=f"{job_name}'s pod")
    for pod in pods:
        container = pod["spec"]["containers"][0]
        cluster.patch_status("pod", pod["metadata"]["name"], namespace, {"phase": "Running", "startTime": _now()})
        cluster.patch_status("pod", pod["metadata"]["name"], namespace, {
            "phase": "Succeeded",
            "containerStatuses": [{"name": container["name"], "image": container["image"], "imageID": "",
                                   "ready": False, "restartCount": 0,
                                   "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                            "startedAt": _now(), "finishedAt": _now()}}}]})


def test_a_tenant_waits_on_its_cap_in_the_queue_and_is_admitted_when_its_other_job_finishes(
        kueue: KueueSetup) -> None:
    cluster = kueue.gpuquota.cluster
    a = kueue.tenant("kueue-a", "kueue-a", "BR")
    b = kueue.tenant("kueue-b", "kueue-b", "BR")
    for tenant, name, gpus in ((a, "first", 8), (b, "other", 8)):
        created = tenant.apply(queued_job(name, gpus))
        assert created.ok, created.output
    for tenant, name in ((a, "first"), (b, "other")):  # each within its own tenant's cap (16 H100)
        ns: str = tenant.namespace
        wait_until(lambda: state_is(cluster, ns, name, "Ready"), timeout_s=60,  # noqa: B023 - used at once
                   what=f"{name}'s check Ready")
        started = wait_until(lambda: running(cluster, ns, name), timeout_s=60,  # noqa: B023 - used at once
                             what=f"Kueue to start {name}")
        # Kueue started it on the flavour gpuquota counted it at
        assert started["spec"]["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": H100_LABEL}
    held = [(r.workload.namespace, r.workload.kind, r.workload.name) for r in kueue.gpuquota.reservations()
            if r.workload.namespace in (a.namespace, b.namespace)]
    # one reservation each, under the owner Jobs: the webhook passed the suspended create and the un-suspension
    assert sorted(held) == sorted([(a.namespace, "Job", "first"), (b.namespace, "Job", "other")])

    created = a.apply(queued_job("second", 10))  # 8 + 10 > 16: waits for room
    assert created.ok, created.output
    wait_until(lambda: "waiting for room" in (state_is(cluster, a.namespace, "second", "Pending") or ""),
               timeout_s=60, what="second's check Pending with gpuquota's message")
    name = workload_of(cluster, a.namespace, "second")["metadata"]["name"]  # type: ignore[index]
    shown = yaml.safe_load(cluster.kubectl("get", "workload", name, "-n", a.namespace, "-o", "yaml").stdout)
    message = next(c["message"] for c in shown["status"]["admissionChecks"] if c["name"] == CHECK)
    assert message.startswith("gpuquota: waiting for room under the compute cap")
    assert "requested 10 × H100-SXM5-80GB" in message
    assert f"already held by {kueue.gpuquota.name('kueue-a')}" in message
    assert "up to 8 × H100-SXM5-80GB fit" in message
    assert cluster.get("job", "second", a.namespace)["spec"]["suspend"] is True  # type: ignore[index]
    # (a cluster kept between runs may hold earlier runs' waiting Workloads too: count relative to now)
    waiting = wait_until(lambda: kueue.pending().get("cap", 0) >= 1 and kueue.pending()["cap"], timeout_s=30,
                         what="the pending gauge")

    finish(cluster, a.namespace, "first")  # its pod ends: the reconciler settles its reservation
    wait_until(lambda: state_is(cluster, a.namespace, "second", "Ready"), timeout_s=90, what="second admitted")
    wait_until(lambda: running(cluster, a.namespace, "second"), timeout_s=60, what="Kueue to start second")
    wait_until(lambda: kueue.pending().get("cap") == waiting - 1, timeout_s=30, what="the pending gauge to drop")


def test_a_tier3_tenant_asking_for_3a090_parts_is_rejected_and_kueue_deactivates_it(kueue: KueueSetup) -> None:
    cluster = kueue.gpuquota.cluster
    c = kueue.tenant("kueue-c", "kueue-c", "CN")
    created = c.apply(queued_job("forbidden", 1))
    assert created.ok, created.output
    # Kueue deactivates a Workload whose check is Rejected (and then resets the checks of the evicted Workload),
    # telling why in its events: gpuquota's message
    wait_until(lambda: (workload_of(cluster, c.namespace, "forbidden") or {}).get("spec", {}).get("active") is False,
               timeout_s=60, what="Kueue to deactivate the Workload")
    events = wait_until(lambda: [e["message"] for e in cluster.items("events", c.namespace)
                                 if "was Rejected" in e.get("message", "")], what="Kueue's deactivation event")
    assert "can never be admitted" in events[0]
    assert "tier3-no-3a090" in events[0]
    assert cluster.get("job", "forbidden", c.namespace)["spec"]["suspend"] is True  # type: ignore[index]
    assert not kueue.gpuquota.reservations(c.namespace)
