"""Bad input: every rule gives a WorkloadError naming the kind/name, the field path and what is wrong."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gpuquota.workloads import ExtractContext, UnsupportedKind, WorkloadError, extract
from tests.workloads.conftest import manifest

Mutation = Callable[[dict[str, Any]], None]


_LAST = object()


def set_path(*args: Any, value: Any = _LAST) -> Mutation:
    """A mutation setting the field at ``keys`` to ``value`` (the last positional argument when not named)."""
    keys, value = (args[:-1], args[-1]) if value is _LAST else (args, value)

    def mutate(obj: dict[str, Any]) -> None:
        node: Any = obj
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return mutate


PT_WORKER = ("spec", "pytorchReplicaSpecs", "Worker")
PT_LIMITS = (*PT_WORKER, "template", "spec", "containers", 0, "resources", "limits")


@pytest.mark.parametrize(
    ("mutation", "path", "problem"),
    [
        (set_path(*PT_WORKER, "replicas", -1), "spec.pytorchReplicaSpecs.Worker.replicas", "at least 0"),
        (set_path(*PT_WORKER, "replicas", "7"), "spec.pytorchReplicaSpecs.Worker.replicas", "whole number"),
        (set_path(*PT_WORKER, "replicas", 2.5), "spec.pytorchReplicaSpecs.Worker.replicas", "whole number"),
        (set_path(*PT_WORKER, "replicas", True), "spec.pytorchReplicaSpecs.Worker.replicas", "whole number"),
        (set_path(*PT_WORKER, "replicas", 100_001), "spec.pytorchReplicaSpecs.Worker.replicas", "maximum"),
        (set_path(*PT_LIMITS, "nvidia.com/gpu", 65), "limits[nvidia.com/gpu]", "maximum of 64"),
        (set_path(*PT_LIMITS, "nvidia.com/gpu", "-1"), "limits[nvidia.com/gpu]", "negative"),
        (set_path(*PT_LIMITS, "nvidia.com/gpu", "eight"), "limits[nvidia.com/gpu]", "not a Kubernetes quantity"),
        (set_path(*PT_LIMITS, "nvidia.com/gpu", "500m"), "limits[nvidia.com/gpu]", "fractional"),
        (set_path(*PT_LIMITS, "nvidia.com/gpu", "1e400"), "limits[nvidia.com/gpu]", "finite"),
        (set_path(*PT_LIMITS, "nvidia.com/gpu", [8]), "limits[nvidia.com/gpu]", "must be a quantity"),
        (set_path(*PT_LIMITS[:-1], "limits", "8"), "resources.limits", "must be a mapping"),
        (set_path(*PT_WORKER, "template", "spec", "containers", "pytorch"), "template.spec.containers", "list"),
        (set_path(*PT_WORKER, "template", "spec", "containers", 0, value=42), "containers[0]", "mapping"),
        (set_path("spec", "pytorchReplicaSpecs", "Worker", value=[]), "spec.pytorchReplicaSpecs.Worker", "mapping"),
        (set_path("spec", "pytorchReplicaSpecs", value=None), "spec.pytorchReplicaSpecs", "required"),
        (set_path("spec", "runPolicy", "activeDeadlineSeconds", 0), "runPolicy.activeDeadlineSeconds", "at least 1"),
        (set_path("spec", "elasticPolicy", value={"maxReplicas": -3}), "spec.elasticPolicy.maxReplicas", "at least"),
        (
            set_path(*PT_WORKER, "template", "spec", "nodeSelector", value={"nvidia.com/gpu.product": 7}),
            "nodeSelector[nvidia.com/gpu.product]",
            "must be a string",
        ),
        (
            set_path("metadata", "annotations", "gpuquota.io/purpose", "pretraining"),
            "metadata.annotations[gpuquota.io/purpose]",
            "not a purpose",
        ),
        (
            set_path("metadata", "annotations", "gpuquota.io/weights", "public"),
            "metadata.annotations[gpuquota.io/weights]",
            "open or closed",
        ),
        (
            set_path("metadata", "annotations", "gpuquota.io/max-runtime", "3 days"),
            "metadata.annotations[gpuquota.io/max-runtime]",
            "not a duration",
        ),
        (
            set_path("metadata", "annotations", "gpuquota.io/max-runtime", "0h"),
            "metadata.annotations[gpuquota.io/max-runtime]",
            "longer than zero",
        ),
        (
            set_path("metadata", "annotations", "gpuquota.io/max-runtime", "72"),
            "metadata.annotations[gpuquota.io/max-runtime]",
            "not a duration",
        ),
        (
            set_path("metadata", "annotations", "gpuquota.io/max-runtime", "99999d"),
            "metadata.annotations[gpuquota.io/max-runtime]",
            "ten years",
        ),
        (
            set_path("metadata", "annotations", "gpuquota.io/max-runtime", 72),
            "metadata.annotations[gpuquota.io/max-runtime]",
            "must be a string",
        ),
        (
            set_path("metadata", "annotations", "gpuquota.io/base-model", "x" * 300),
            "metadata.annotations[gpuquota.io/base-model]",
            "at most 253",
        ),
        (set_path("metadata", "annotations", value=["a"]), "metadata.annotations", "mapping"),
    ],
)
def test_pytorchjob_bad_fields(ctx: ExtractContext, mutation: Mutation, path: str, problem: str) -> None:
    obj = manifest("pytorchjob-llama-finetune")
    mutation(obj)
    with pytest.raises(WorkloadError) as info:
        extract(obj, ctx)
    error = info.value
    assert error.kind == "PyTorchJob"
    assert error.name == "team-a/llama3-70b-sft"
    assert path in error.path
    assert problem in error.problem
    assert str(error).startswith("PyTorchJob team-a/llama3-70b-sft: spec") or str(error).startswith(
        "PyTorchJob team-a/llama3-70b-sft: metadata"
    )
    assert error.exit_code == 2


def test_total_pods_are_bounded(ctx: ExtractContext) -> None:
    obj = manifest("pytorchjob-llama-finetune")
    obj["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = 60_000
    obj["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] = 60_000
    with pytest.raises(WorkloadError, match="120,000 pods"):
        extract(obj, ctx)


@pytest.mark.parametrize(
    ("name", "mutation", "path", "problem"),
    [
        ("job-indexed-a100", set_path("spec", "parallelism", -2), "spec.parallelism", "at least 0"),
        ("job-indexed-a100", set_path("spec", "completions", "8"), "spec.completions", "whole number"),
        ("job-indexed-a100", set_path("spec", "activeDeadlineSeconds", -5), "spec.activeDeadlineSeconds", "at least"),
        ("job-indexed-a100", set_path("spec", value=None), "spec", "required"),
        ("cronjob-nightly-eval", set_path("spec", "jobTemplate", value=None), "spec.jobTemplate", "required"),
        (
            "jobset-llm-pretrain",
            set_path("spec", "replicatedJobs", 1, "replicas", -1),
            "replicatedJobs[1].replicas",
            "at least 0",
        ),
        (
            "jobset-llm-pretrain",
            set_path("spec", "replicatedJobs", 1, "replicas", 30_000),
            "replicatedJobs[1].replicas",
            "100,000",
        ),
        ("jobset-llm-pretrain", set_path("spec", "replicatedJobs", value={"a": 1}), "spec.replicatedJobs", "list"),
        ("jobset-llm-pretrain", set_path("spec", "failurePolicy", "maxRestarts", "2"), "maxRestarts", "whole number"),
        (
            "raycluster-autoscaling",
            set_path("spec", "workerGroupSpecs", 0, "maxReplicas", 2147483647),
            "workerGroupSpecs[0].maxReplicas",
            "unbounded",
        ),
        (
            "raycluster-autoscaling",
            set_path("spec", "workerGroupSpecs", 0, "numOfHosts", 0.5),
            "workerGroupSpecs[0].numOfHosts",
            "whole number",
        ),
        (
            "raycluster-autoscaling",
            set_path("spec", "enableInTreeAutoscaling", "yes"),
            "enableInTreeAutoscaling",
            "true or false",
        ),
        ("raycluster-autoscaling", set_path("spec", "headGroupSpec", value=None), "spec.headGroupSpec", "required"),
        (
            "raycluster-autoscaling",
            set_path("spec", "workerGroupSpecs", 0, "numOfHosts", 20_000),
            "workerGroupSpecs[0]",
            "pods",
        ),
        (
            "lws-vllm-multinode",
            set_path("spec", "leaderWorkerTemplate", "size", 0),
            "leaderWorkerTemplate.size",
            "at least 1",
        ),
        (
            "lws-vllm-multinode",
            set_path("spec", "rolloutStrategy", "rollingUpdateConfiguration", "maxSurge", "lots"),
            "maxSurge",
            "percentage",
        ),
        ("lws-vllm-multinode", set_path("spec", "replicas", 60_000), "spec.replicas", "100,000"),
        (
            "trainjob-torch-distributed",
            set_path("spec", "trainer", "numNodes", -4),
            "spec.trainer.numNodes",
            "at least 0",
        ),
        (
            "trainjob-torch-distributed",
            set_path("spec", "trainer", "resourcesPerNode", "limits", "nvidia.com/gpu", 9),
            "spec.trainer.resourcesPerNode",
            "differs from its limit",
        ),
        (
            "trainjob-runtime-patches",
            set_path("spec", "runtimePatches", 0, "trainingRuntimeSpec", "template", "spec", "replicatedJobs", 1, 7),
            "spec.runtimePatches[0].trainingRuntimeSpec.template.spec.replicatedJobs[1]",
            "must be a mapping",
        ),
        (
            "pod-sidecar-init-overhead",
            set_path("spec", "initContainers", 1, "restartPolicy", "OnFailure"),
            "initContainers[1].restartPolicy",
            "only be Always",
        ),
        (
            "pod-sidecar-init-overhead",
            set_path("spec", "overhead", "nvidia.com/gpu", "x"),
            "overhead[nvidia.com/gpu]",
            "quantity",
        ),
        (
            "pod-mig-mixed",
            set_path("spec", "containers", 0, "resources", "limits", "nvidia.com/mig-3g.40gb", "1.5"),
            "limits[nvidia.com/mig-3g.40gb]",
            "fractional",
        ),
        (
            "pod-mig-mixed",
            set_path(
                "spec",
                "affinity",
                value={
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "nvidia.com/gpu.product", "operator": "In", "values": [1]}
                                    ]
                                }
                            ]
                        }
                    }
                },
            ),
            "matchExpressions[0].values[0]",
            "must be a string",
        ),
    ],
)
def test_bad_fields_of_every_kind(ctx: ExtractContext, name: str, mutation: Mutation, path: str, problem: str) -> None:
    obj = manifest(name)
    mutation(obj)
    with pytest.raises(WorkloadError) as info:
        extract(obj, ctx)
    error = info.value
    assert error.kind == obj["kind"]
    assert error.name.endswith(obj["metadata"]["name"])
    assert path in error.path, error
    assert problem in error.problem, error


@pytest.mark.parametrize(
    ("obj", "problem"),
    [
        ({"apiVersion": "v1", "metadata": {"name": "x"}}, "has no kind"),
        ({"kind": "Pod", "metadata": {"name": "x"}}, "has no apiVersion"),
        ({"apiVersion": "v1", "kind": "Pod", "metadata": "x"}, "must be a mapping"),
        ({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}, "spec: is required"),
        ({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": 5}, "spec": {}}, "must be strings"),
    ],
)
def test_malformed_objects(ctx: ExtractContext, obj: dict[str, Any], problem: str) -> None:
    with pytest.raises(WorkloadError, match=problem):
        extract(obj, ctx)


def test_not_a_mapping(ctx: ExtractContext) -> None:
    with pytest.raises(WorkloadError, match="must be a mapping, got list"):
        extract([1, 2], ctx)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [("apps/v1", "StatefulSet"), ("example.com/v1", "PyTorchJob"), ("kubeflow.org/v1", "MXJob"), ("v1", "Service")],
)
def test_unknown_kinds(ctx: ExtractContext, api_version: str, kind: str) -> None:
    obj = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "w", "namespace": "ns"}, "spec": {}}
    with pytest.raises(UnsupportedKind) as info:
        extract(obj, ctx)
    assert info.value.kind == kind
    assert info.value.name == "ns/w"
    assert isinstance(info.value, WorkloadError)


def test_bad_input_leaves_the_object_unchanged(ctx: ExtractContext) -> None:
    obj = manifest("pytorchjob-llama-finetune")
    obj["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = -1
    before = repr(obj)
    with pytest.raises(WorkloadError):
        extract(obj, ctx)
    assert repr(obj) == before


def test_invalid_annotations_on_gpu_free_objects_are_not_our_business(ctx: ExtractContext) -> None:
    obj = manifest("pod-cpu-only")
    obj["metadata"]["annotations"] = {"gpuquota.io/purpose": "whatever"}
    assert extract(obj, ctx) is None
