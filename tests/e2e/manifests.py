"""Small workload manifests for the end-to-end tests (no namespace: the tenant's ``kubectl -n`` places them)."""

from __future__ import annotations

from typing import Any


def container(gpus: int = 0, name: str = "main") -> dict[str, Any]:
    resources = {"limits": {"nvidia.com/gpu": gpus}} if gpus else {"requests": {"cpu": "10m"}}
    return {"name": name, "image": "registry.example/train:1", "resources": resources}


def pod_spec(gpus: int = 0) -> dict[str, Any]:
    return {"restartPolicy": "Never", "containers": [container(gpus)]}


def job(name: str, gpus_per_pod: int, parallelism: int = 1, *, suspend: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"parallelism": parallelism, "completions": parallelism, "suspend": suspend,
                 "template": {"spec": pod_spec(gpus_per_pod)}},
    }


def pod(name: str, gpus: int = 0) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": pod_spec(gpus)}


def cronjob(name: str, gpus_per_pod: int, schedule: str = "* * * * *") -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
        "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": pod_spec(gpus_per_pod)}}}},
    }


def pytorchjob(name: str, workers: int, gpus_per_pod: int) -> dict[str, Any]:
    replica = {"replicas": workers, "restartPolicy": "OnFailure",
               "template": {"spec": {"containers": [{**container(gpus_per_pod), "name": "pytorch"}]}}}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": name},
            "spec": {"pytorchReplicaSpecs": {"Worker": replica}}}
