"""Kueue objects for the check controller's tests, shaped as Kueue v0.17 writes them (kueue.x-k8s.io/v1beta2), and
the policy they are judged under: the webhook tests' small caps plus a Tier 3 that may not use 3A090 parts."""

from __future__ import annotations

from typing import Any

from tests.admission.serverproc import TEST_POLICY

H100_LABEL = "NVIDIA-H100-80GB-HBM3"
CHECK = "gpuquota"

# TEST_POLICY (tier-2: 16 H100 per tenant at once) with a tier-3 (CN) for which 3A090 parts are denied outright.
KUEUE_POLICY = TEST_POLICY.replace(
    "  - name: tier-2\n",
    "  - name: tier-3\n    description: no 3A090 parts\n    jurisdictions: [CN]\n  - name: tier-2\n",
).replace(
    "rules:\n",
    "rules:\n"
    "  - id: tier3-no-3a090\n"
    "    description: Tier 3 may not use 3A090-class GPUs\n"
    "    match:\n      tiers: [tier-3]\n      gpuClasses: [\"3A090.a\", \"3A090.b\"]\n"
    "    cap:\n      kind: concurrent-tpp\n      amount: 0\n"
    "    scope: tenant\n    action: deny\n",
)


def pod_template(gpus: int) -> dict[str, Any]:
    return {"metadata": {}, "spec": {"restartPolicy": "Never", "containers": [
        {"name": "train", "image": "trainer:1", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]}}


def workload(name: str, namespace: str, *, pods: int = 1, gpus: int = 8, flavor: str | None = "h100",
             checks: dict[str, str] | None = None, conditions: dict[str, str] | None = None, uid: str | None = None,
             owner: str | None = None) -> dict[str, Any]:
    """A Job's Workload; with ``flavor`` Kueue has reserved quota on it (``status.admission``)."""
    states = checks if checks is not None else {CHECK: "Pending"}
    conds = conditions if conditions is not None else ({"QuotaReserved": "True"} if flavor else {})
    since = "2026-12-03T10:00:00Z"
    status: dict[str, Any] = {
        "conditions": [{"type": t, "status": s, "reason": t, "message": "", "lastTransitionTime": since}
                       for t, s in conds.items()],
        "admissionChecks": [{"name": n, "state": s, "message": "", "lastTransitionTime": since}
                            for n, s in states.items()],
    }
    if flavor:
        status["admission"] = {"clusterQueue": "cq", "podSetAssignments": [
            {"name": "main", "flavors": {"nvidia.com/gpu": flavor}, "count": pods}]}
    job = owner or name
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload",
        "metadata": {"name": f"job-{name}", "namespace": namespace, "uid": uid or f"uid-{namespace}-{name}",
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job, "uid": f"job-{job}",
                                          "controller": True}]},
        "spec": {"queueName": "lq", "podSets": [{"name": "main", "count": pods, "template": pod_template(gpus)}]},
        "status": status,
    }


def flavor(name: str = "h100", product: str = H100_LABEL) -> dict[str, Any]:
    return {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": name},
            "spec": {"nodeLabels": {"nvidia.com/gpu.product": product}}}


def admission_check(name: str = CHECK, controller: str = "gpuquota.io/compute-cap") -> dict[str, Any]:
    return {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "AdmissionCheck",
            "metadata": {"name": name, "generation": 1}, "spec": {"controllerName": controller}}


def namespace(name: str, jurisdiction: str | None, tenant: str | None = None) -> dict[str, Any]:
    labels = {"gpuquota.io/tenant": tenant or name}
    if jurisdiction:
        labels["gpuquota.io/jurisdiction"] = jurisdiction
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
