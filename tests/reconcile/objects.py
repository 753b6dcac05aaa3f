"""API objects as a cluster records them (trimmed to the fields the reconciler reads, nothing invented)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

JsonObject = dict[str, Any]


def ts(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str, namespace: str, uid: str, created: datetime, owner: JsonObject | None = None) -> JsonObject:
    m: JsonObject = {"name": name, "namespace": namespace, "uid": uid, "creationTimestamp": ts(created)}
    if owner is not None:
        m["ownerReferences"] = [
            {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return m


def job(name: str, namespace: str, created: datetime, *, owner: JsonObject | None = None, **status: Any) -> JsonObject:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta(name, namespace, f"uid-job-{name}", created, owner),
        "spec": {
            "parallelism": 2,
            "completions": 2,
            "activeDeadlineSeconds": 3600,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "train",
                            "image": "nvcr.io/nvidia/pytorch:24.05-py3",
                            "resources": {"limits": {"nvidia.com/gpu": "4"}},
                        }
                    ],
                }
            },
        },
        "status": status,
    }


def job_complete(started: datetime, completed: datetime) -> JsonObject:
    return {
        "startTime": ts(started),
        "completionTime": ts(completed),
        "succeeded": 2,
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": ts(completed)},
            {"type": "Complete", "status": "True", "lastTransitionTime": ts(completed)},
        ],
    }


def job_failed(started: datetime, failed: datetime) -> JsonObject:
    return {
        "startTime": ts(started),
        "failed": 1,
        "conditions": [
            {"type": "FailureTarget", "status": "True", "lastTransitionTime": ts(failed)},
            {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "lastTransitionTime": ts(failed)},
        ],
    }


def pod(
    name: str,
    namespace: str,
    owner: JsonObject,
    phase: str,
    started: datetime | None,
    *,
    finished: datetime | None = None,
    gpus: int = 0,
) -> JsonObject:
    status: JsonObject = {"phase": phase}
    if started is not None and phase != "Pending":
        status["startTime"] = ts(started)
    if finished is not None:
        status["containerStatuses"] = [
            {"name": "train", "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                       "startedAt": ts(started or finished),
                                                       "finishedAt": ts(finished)}}}
        ]  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(name, namespace, f"uid-pod-{name}", started or datetime.min, owner),
        "spec": {"nodeName": "gpu-node-7", "containers": [
            {"name": "train", "image": "trainer:1",
             "resources": {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {}},
        ]},
        "status": status,
    }


def pytorchjob(name: str, namespace: str, created: datetime, conditions: list[JsonObject]) -> JsonObject:
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": meta(name, namespace, f"uid-ptj-{name}", created),
        "spec": {"pytorchReplicaSpecs": {"Worker": {"replicas": 4}}},
        "status": {"conditions": conditions},
    }


def condition(ctype: str, when: datetime, status: str = "True") -> JsonObject:
    return {"type": ctype, "status": status, "lastTransitionTime": ts(when), "reason": f"PyTorchJob{ctype}"}


def jobset(name: str, namespace: str, created: datetime, conditions: list[JsonObject] | None = None) -> JsonObject:
    return {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": meta(name, namespace, f"uid-jobset-{name}", created),
        "spec": {"replicatedJobs": [{"name": "workers", "replicas": 2}]},
        "status": {"conditions": conditions or []},
    }


def rayjob(name: str, namespace: str, created: datetime, **status: Any) -> JsonObject:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": meta(name, namespace, f"uid-rayjob-{name}", created),
        "spec": {"entrypoint": "python train.py"},
        "status": status,
    }
