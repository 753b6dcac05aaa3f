"""AdmissionReview bodies as the API server sends them, built around real manifests."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import yaml

MANIFESTS = Path(__file__).resolve().parent.parent / "workloads" / "manifests"
H100 = "NVIDIA-H100-80GB-HBM3"
H100_TPP = 15_832
# Who creates controller-made objects: the Kubeflow training operator (named with --trusted-controller, as the chart
# names it) and the controller manager's per-controller service accounts in kube-system.
TRAINING_OPERATOR = "system:serviceaccount:kubeflow:training-operator"
JOB_CONTROLLER = "system:serviceaccount:kube-system:job-controller"
CRONJOB_CONTROLLER = "system:serviceaccount:kube-system:cronjob-controller"
REPLICASET_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def review(
    obj: dict[str, Any] | None,
    *,
    operation: str = "CREATE",
    uid: str | None = None,
    namespace: str | None = None,
    old: dict[str, Any] | None = None,
    dry_run: bool = False,
    user: str = "alice@example.com",
    kind: tuple[str, str, str] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """An ``admission.k8s.io/v1`` AdmissionReview for ``obj`` (placed in ``namespace`` when given)."""
    source = obj if obj is not None else old
    assert source is not None
    if namespace is not None:
        for item in (obj, old):
            if item is not None:
                item.setdefault("metadata", {})["namespace"] = namespace
    meta = source.get("metadata", {})
    api_version = str(source.get("apiVersion", "v1"))
    group, version, kind_name = kind or (group_of(api_version), api_version.rpartition("/")[2], str(source["kind"]))
    request: dict[str, Any] = {
        "uid": uid or str(uuid.uuid4()),
        "kind": {"group": group, "version": version, "kind": kind_name},
        "resource": {"group": group, "version": version, "resource": kind_name.lower() + "s"},
        "requestKind": {"group": group, "version": version, "kind": kind_name},
        "name": name or meta.get("name", ""),
        "namespace": meta.get("namespace", ""),
        "operation": operation,
        "userInfo": {"username": user, "uid": "u-1", "groups": ["system:authenticated"]},
        "object": obj,
        "oldObject": old,
        "dryRun": dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": f"{operation.title()}Options"},
    }
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def gpu_pod(name: str, namespace: str, gpus: int | str = 1, *, product: str = H100,
            labels: dict[str, str] | None = None, owners: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A training pod asking for ``gpus`` H100s for at most 24 h (bounded, so operations caps do not deny it)."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                                "labels": labels or {}, "annotations": {"gpuquota.io/max-runtime": "24h"}}
    if owners:
        metadata["ownerReferences"] = owners
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": 86400,
            "nodeSelector": {"nvidia.com/gpu.product": product},
            "containers": [{
                "name": "train",
                "image": "nvcr.io/nvidia/pytorch:24.05-py3",
                "command": ["torchrun", "train.py"],
                "resources": {"limits": {"nvidia.com/gpu": str(gpus), "cpu": "16", "memory": "200Gi"}},
            }],
        },
    }


def cpu_pod(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
    }


def pytorch_job(name: str, namespace: str, workers: int, gpus_per_pod: int = 8) -> dict[str, Any]:
    """A PyTorchJob: one master and ``workers`` workers, ``gpus_per_pod`` H100s each, bounded to 48 h."""
    template = {
        "spec": {
            "nodeSelector": {"nvidia.com/gpu.product": H100},
            "containers": [{"name": "pytorch", "image": "nvcr.io/nvidia/pytorch:24.05-py3",
                            "resources": {"limits": {"nvidia.com/gpu": gpus_per_pod}}}],
        }
    }
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                     "annotations": {"gpuquota.io/max-runtime": "48h"}},
        "spec": {
            "runPolicy": {"activeDeadlineSeconds": 172800},
            "pytorchReplicaSpecs": {
                "Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": copy.deepcopy(template)},
                "Worker": {"replicas": workers, "restartPolicy": "OnFailure", "template": copy.deepcopy(template)},
            },
        },
    }


def load_manifests() -> list[tuple[str, dict[str, Any]]]:
    """Every workload manifest the workloads suite wrote: (file:index, object)."""
    found: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if isinstance(doc, dict) and doc.get("kind"):
                found.append((f"{path.name}:{index}", doc))
    return found
