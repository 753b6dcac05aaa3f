"""Evaluates the rendered webhook's matchConditions the way the API server does: every condition of a hook must be
true for the request to be sent; an evaluation error would reject the request under failurePolicy Fail, so here
it raises. Also builds realistic objects of every supported kind around given pod specs."""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from functools import cache
from typing import Any

import celpy
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

PodSpec = dict[str, Any]
Obj = dict[str, Any]

API_VERSIONS = {
    ("", "Pod"): "v1", ("batch", "Job"): "batch/v1", ("batch", "CronJob"): "batch/v1",
    ("jobset.x-k8s.io", "JobSet"): "jobset.x-k8s.io/v1alpha2",
    ("trainer.kubeflow.org", "TrainJob"): "trainer.kubeflow.org/v1alpha1",
    ("ray.io", "RayJob"): "ray.io/v1", ("ray.io", "RayCluster"): "ray.io/v1", ("ray.io", "RayService"): "ray.io/v1",
    ("batch.volcano.sh", "Job"): "batch.volcano.sh/v1alpha1",
    ("leaderworkerset.x-k8s.io", "LeaderWorkerSet"): "leaderworkerset.x-k8s.io/v1",
}
KUBEFLOW_REPLICAS = {"PyTorchJob": ("pytorchReplicaSpecs", ("Master", "Worker")),
                     "TFJob": ("tfReplicaSpecs", ("Chief", "Worker", "PS")),
                     "MPIJob": ("mpiReplicaSpecs", ("Launcher", "Worker")),
                     "XGBoostJob": ("xgbReplicaSpecs", ("Master", "Worker")),
                     "PaddleJob": ("paddleReplicaSpecs", ("Master", "Worker")),
                     "JAXJob": ("jaxReplicaSpecs", ("Worker",))}


_KIND_GUARD = re.compile(
    r"request\.kind\.group != '(?P<group>[^']*)' \|\| request\.kind\.kind != '(?P<kind>[^']+)' \|\| ")


class ConditionError(AssertionError):
    """A matchCondition failed to evaluate: under failurePolicy Fail the API server would reject the request."""


@cache
def program(expression: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(expression))


def compiles(expression: str) -> bool:
    program(expression)
    return True


def request(kind: tuple[str, str], operation: str, obj: Obj | None, old: Obj | None = None) -> dict[str, Any]:
    group, name = kind
    version = API_VERSIONS.get(kind, f"{group}/v1").rpartition("/")[2]
    return {"request": {"operation": operation, "kind": {"group": group, "version": version, "kind": name},
                        "dryRun": False},
            "object": obj, "oldObject": old}


def scale_request(kind: tuple[str, str], before: int | None, after: int | None) -> dict[str, Any]:
    """An UPDATE of ``<resource>/scale`` as the API server evaluates it: ``request.kind`` is autoscaling/v1 Scale,
    the objects are Scales (a zero ``spec.replicas`` is omitted, given here as ``None``)."""
    group, name = kind
    plural = name.lower() + "s"

    def scale(replicas: int | None) -> Obj:
        spec = {} if replicas is None else {"replicas": replicas}
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": "llm-pretrain", "namespace": "team-a", "resourceVersion": "42"},
                "spec": spec, "status": {"replicas": before or 0, "selector": "app=llm"}}

    return {"request": {"operation": "UPDATE", "kind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                        "resource": {"group": group, "version": "v1", "resource": plural}, "subResource": "scale",
                        "dryRun": False},
            "object": scale(after), "oldObject": scale(before)}


def sent(hook: dict[str, Any], activation: dict[str, Any]) -> bool:
    """Whether the API server would call the webhook for this request (all matchConditions true)."""
    cel_activation = {key: json_to_cel(value) for key, value in activation.items()}
    kind = activation["request"]["kind"]
    for condition in hook["matchConditions"]:
        guard = _KIND_GUARD.match(condition["expression"])
        if guard and (guard["group"], guard["kind"]) != (kind["group"], kind["kind"]):
            continue  # `true || …` is true in CEL whatever the rest gives (errors included): skip the slow part
        try:
            result = program(condition["expression"]).evaluate(cel_activation)
        except CELEvalError as exc:
            raise ConditionError(f"{condition['name']} failed: {exc}") from exc
        if isinstance(result, CELEvalError):
            raise ConditionError(f"{condition['name']} failed: {result}")
        if not bool(result):
            return False
    return True


def container(name: str, limits: dict[str, Any] | None = None, requests: dict[str, Any] | None = None) -> Obj:
    c: Obj = {"name": name, "image": "nvcr.io/nvidia/pytorch:24.08-py3"}
    resources: Obj = {}
    if limits is not None:
        resources["limits"] = limits
    if requests is not None:
        resources["requests"] = requests
    if resources:
        c["resources"] = resources
    return c


def pod_spec(*containers: Obj, init: Sequence[Obj] = ()) -> PodSpec:
    spec: PodSpec = {"restartPolicy": "Never", "containers": list(containers)}
    if init:
        spec["initContainers"] = list(init)
    return spec


GPU_SPEC = pod_spec(container("train", limits={"nvidia.com/gpu": 8, "cpu": "32", "memory": "512Gi"}))
CPU_SPEC = pod_spec(container("train", limits={"cpu": "4", "memory": "16Gi"}, requests={"cpu": "2"}))


def _template(spec: PodSpec) -> Obj:
    return {"metadata": {"labels": {"app": "train"}}, "spec": copy.deepcopy(spec)}


def workload(kind: tuple[str, str], specs: Sequence[PodSpec], name: str = "llm-pretrain") -> Obj:  # noqa: PLR0912
    """A realistic object of ``kind`` whose pod templates are ``specs`` (first = leader/head/master)."""
    group, k = kind
    if kind in (("", "Pod"), ("batch", "Job"), ("batch", "CronJob")):  # one pod template: it holds every container
        merged = copy.deepcopy(specs[0])
        for extra in specs[1:]:
            merged["containers"] = merged["containers"] + copy.deepcopy(extra["containers"])
            merged["initContainers"] = merged.get("initContainers", []) + copy.deepcopy(extra.get("initContainers", []))
        if not merged.get("initContainers"):
            merged.pop("initContainers", None)
        specs = [merged]
    first = specs[0]
    second = specs[1] if len(specs) > 1 else specs[0]
    body: Obj
    if k == "Pod":
        body = {"spec": copy.deepcopy(first)}
    elif kind == ("batch.volcano.sh", "Job"):
        body = {"spec": {"minAvailable": len(specs), "queue": "default", "tasks": [
            {"name": f"task{i}", "replicas": 2, "template": _template(s)} for i, s in enumerate(specs)]}}
    elif k == "Job":
        body = {"spec": {"parallelism": len(specs), "completions": len(specs), "template": _template(first)}}
    elif k == "CronJob":
        body = {"spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": _template(first)}}}}
    elif k == "JobSet":
        body = {"spec": {"replicatedJobs": [
            {"name": f"rj{i}", "replicas": 1, "template": {"spec": {"parallelism": 2, "template": _template(s)}}}
            for i, s in enumerate(specs)]}}
    elif k in KUBEFLOW_REPLICAS:
        field, roles = KUBEFLOW_REPLICAS[k]
        names = [roles[i] if i < len(roles) else f"{roles[-1]}{i}" for i in range(len(specs))]
        body = {"spec": {field: {role: {"replicas": 1 if i == 0 else 4, "restartPolicy": "OnFailure",
                                        "template": _template(spec)}
                                 for i, (role, spec) in enumerate(zip(names, specs, strict=True))}}}
    elif k == "TrainJob":
        resources = (first["containers"][0].get("resources") or {}).get("limits")
        trainer: Obj = {"numNodes": len(specs), "image": "ghcr.io/acme/trainer:1"}
        if resources:
            trainer["resourcesPerNode"] = {"limits": resources}
        body = {"spec": {"runtimeRef": {"name": "torch-distributed"}, "trainer": trainer}}
    elif k in ("RayCluster", "RayJob", "RayService"):
        cluster = {"headGroupSpec": {"rayStartParams": {}, "template": _template(first)},
                   "workerGroupSpecs": [{"groupName": f"g{i}", "replicas": 2, "minReplicas": 0, "maxReplicas": 4,
                                         "rayStartParams": {}, "template": _template(s)}
                                        for i, s in enumerate(specs[1:])]}
        body = {"spec": {"RayCluster": cluster,
                         "RayJob": {"entrypoint": "python train.py", "rayClusterSpec": cluster},
                         "RayService": {"serveConfigV2": "applications: []", "rayClusterConfig": cluster}}[k]}
    elif k == "LeaderWorkerSet":
        body = {"spec": {"replicas": 2, "leaderWorkerTemplate": {
            "size": 4, "leaderTemplate": _template(first), "workerTemplate": _template(second)}}}
    else:
        raise ValueError(f"no builder for {kind}")
    return {"apiVersion": API_VERSIONS.get(kind, f"{group}/v1"), "kind": k,
            "metadata": {"name": name, "namespace": "acme-train", "uid": "0b7c1a9e-5f43-4c1e-9d8e-2f6b1e8d3a10",
                         "resourceVersion": "4711"},
            **body}
