"""A TrainJob counted from the training runtime it names, as the Trainer controller (v2.2) builds its JobSet: the
runtime's numNodes when the TrainJob sets none, every GPU-bearing replicatedJob of the runtime's template, the
TrainJob's resourcesPerNode over the trainer's ``node`` container only, placement from the runtime overridden by
the TrainJob. Tried as a tenant would: each way to leave GPUs out of the count is a test here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuquota.catalog import load_catalog
from gpuquota.domain import Demand
from gpuquota.workloads import ExtractContext, ManifestObjects, UnreadableError, WorkloadError, extract
from gpuquota.workloads.kinds.trainjob import CLUSTER_TRAINING_RUNTIME, TRAINING_RUNTIME, runtime_ref
from gpuquota.workloads.references import Reference

CTX = ExtractContext(load_catalog(), default_model="H100-SXM5-80GB")
H100 = "NVIDIA-H100-80GB-HBM3"
TRAINER_LABELS = {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}


def gpus(n: int) -> dict[str, Any]:
    return {"limits": {"nvidia.com/gpu": str(n)}, "requests": {"nvidia.com/gpu": str(n)}}


def job(name: str, containers: list[dict[str, Any]], *, labels: Mapping[str, str] | None = None,
        replicas: int | None = None, parallelism: int | None = None,
        node_selector: Mapping[str, str] | None = None) -> dict[str, Any]:
    pod: dict[str, Any] = {"containers": containers}
    if node_selector is not None:
        pod["nodeSelector"] = dict(node_selector)
    job_spec: dict[str, Any] = {"template": {"spec": pod}}
    if parallelism is not None:
        job_spec["parallelism"] = parallelism
    entry: dict[str, Any] = {"name": name, "template": {"metadata": {"labels": dict(labels or {})}, "spec": job_spec}}
    if replicas is not None:
        entry["replicas"] = replicas
    return entry


def runtime(name: str = "torch-distributed", *, num_nodes: int | None = 1, node_gpus: int = 0,
            extra: list[dict[str, Any]] | None = None, kind: str = "ClusterTrainingRuntime",
            namespace: str | None = None, policy: dict[str, Any] | None = None) -> dict[str, Any]:
    """A runtime shaped like Trainer's torch-distributed (manifests/base/runtimes), plus ``extra`` jobs."""
    node: dict[str, Any] = {"name": "node", "image": "pytorch/pytorch"}
    if node_gpus:
        node["resources"] = gpus(node_gpus)
    ml: dict[str, Any] = policy if policy is not None else {"torch": {}}
    if num_nodes is not None:
        ml = {**ml, "numNodes": num_nodes}
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": kind, "metadata": metadata,
        "spec": {"mlPolicy": ml, "template": {"spec": {"replicatedJobs": [
            *(extra or []), job("node", [node], labels=TRAINER_LABELS)]}}},
    }


def trainjob(*, num_nodes: int | None = None, per_node: int | None = None, runtime_name: str = "torch-distributed",
             kind: str = "ClusterTrainingRuntime", namespace: str = "team-a", **spec: Any) -> dict[str, Any]:
    trainer: dict[str, Any] = {"image": "example/sft"}
    if num_nodes is not None:
        trainer["numNodes"] = num_nodes
    if per_node is not None:
        trainer["resourcesPerNode"] = gpus(per_node)
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
        "metadata": {"name": "sft", "namespace": namespace},
        "spec": {"runtimeRef": {"apiGroup": "trainer.kubeflow.org", "kind": kind, "name": runtime_name},
                 "trainer": trainer, **spec},
    }


def demand(obj: dict[str, Any], *objects: dict[str, Any]) -> Demand:
    found = extract(obj, CTX, references=ManifestObjects(list(objects)))
    assert found is not None
    return found


def roles(d: Demand) -> dict[str, tuple[int, float]]:
    return {g.role: (g.pods, g.gpus_per_pod) for g in d.groups}


def test_num_nodes_unset_takes_the_runtimes() -> None:
    d = demand(trainjob(per_node=8), runtime(num_nodes=16))
    assert roles(d) == {"node": (16, 8.0)}
    assert d.gpus == 128
    assert d.warnings == ()


def test_the_runtimes_num_nodes_defaults_to_one() -> None:
    assert roles(demand(trainjob(per_node=8), runtime(num_nodes=None))) == {"node": (1, 8.0)}


def test_the_trainjobs_num_nodes_wins() -> None:
    assert roles(demand(trainjob(num_nodes=2, per_node=8), runtime(num_nodes=16))) == {"node": (2, 8.0)}


def test_gpus_only_in_the_runtime_are_counted() -> None:
    """No resourcesPerNode: the runtime's node container decides (the object itself shows no GPU at all)."""
    d = demand(trainjob(), runtime(num_nodes=4, node_gpus=8))
    assert roles(d) == {"node": (4, 8.0)}


def test_resources_per_node_replaces_the_node_containers_resources_only() -> None:
    sidecar = {"name": "profiler", "image": "x", "resources": gpus(1)}
    rt = runtime(num_nodes=2, node_gpus=8)
    rt["spec"]["template"]["spec"]["replicatedJobs"][-1]["template"]["spec"]["template"]["spec"]["containers"].append(
        sidecar)
    assert roles(demand(trainjob(per_node=2), rt)) == {"node": (2, 3.0)}  # 2 from the TrainJob + the sidecar's 1


def test_resources_per_node_without_gpus_removes_the_runtimes() -> None:
    """resourcesPerNode replaces the node container's resources whole, as the controller does."""
    tj = trainjob()
    tj["spec"]["trainer"]["resourcesPerNode"] = {"limits": {"cpu": "8"}}
    assert extract(tj, CTX, references=ManifestObjects([runtime(num_nodes=4, node_gpus=8)])) is None


def test_other_gpu_jobs_of_the_runtime_count() -> None:
    extra = [
        job("reward-model", [{"name": "rm", "resources": gpus(2)}], replicas=2, parallelism=3),
        job("dataset-initializer", [{"name": "dataset-initializer", "resources": gpus(1)}], replicas=5,
            labels={"trainer.kubeflow.org/trainjob-ancestor-step": "dataset-initializer"}),
        job("cpu-only", [{"name": "c", "resources": {"limits": {"cpu": "1"}}}], replicas=3),
    ]
    d = demand(trainjob(per_node=8), runtime(num_nodes=2, extra=extra))
    # reward-model: 2 replicas × 3 pods × 2; the initializer: 1 replica (the controller's) × 1 pod × 1
    assert roles(d) == {"reward-model": (6, 2.0), "dataset-initializer": (1, 1.0), "node": (2, 8.0)}
    assert d.gpus == 6 * 2 + 1 + 2 * 8


def test_parallelism_zero_runs_one_pod() -> None:
    """The controller never sizes a job below one pod."""
    extra = [job("eval", [{"name": "e", "resources": gpus(1)}], parallelism=0)]
    assert roles(demand(trainjob(per_node=1), runtime(extra=extra)))["eval"] == (1, 1.0)


def test_without_ml_policy_the_trainer_runs_its_parallelism() -> None:
    rt = runtime(num_nodes=None, node_gpus=4)
    del rt["spec"]["mlPolicy"]
    rt["spec"]["template"]["spec"]["replicatedJobs"][-1]["template"]["spec"]["parallelism"] = 3
    assert roles(demand(trainjob(), rt)) == {"node": (3, 4.0)}
    assert roles(demand(trainjob(num_nodes=5), rt)) == {"node": (5, 4.0)}


def test_mpi_run_launcher_as_node() -> None:
    """Trainer's deepspeed-distributed: the launcher is the trainer; numNodes sizes the node job, less the launcher."""
    policy = {"mpi": {"numProcPerNode": 1, "runLauncherAsNode": True}}
    node = job("node", [{"name": "node", "image": "x"}])
    rt = runtime(policy=policy, extra=[node])
    jobs = rt["spec"]["template"]["spec"]["replicatedJobs"]
    jobs[-1]["name"] = "launcher"
    assert roles(demand(trainjob(num_nodes=4, per_node=8), rt)) == {"node": (3, 8.0), "launcher": (1, 8.0)}


def test_a_namespaced_runtime_is_the_one_in_the_trainjobs_namespace() -> None:
    mine = runtime("custom", num_nodes=2, kind="TrainingRuntime", namespace="team-a")
    theirs = runtime("custom", num_nodes=64, kind="TrainingRuntime", namespace="team-b")
    tj = trainjob(per_node=8, runtime_name="custom", kind="TrainingRuntime")
    assert roles(demand(tj, theirs, mine)) == {"node": (2, 8.0)}
    assert runtime_ref(tj) == Reference(TRAINING_RUNTIME, "team-a", "custom", "spec.runtimeRef")


def test_runtime_ref_defaults_to_a_cluster_training_runtime() -> None:
    tj = trainjob(per_node=8)
    del tj["spec"]["runtimeRef"]["kind"], tj["spec"]["runtimeRef"]["apiGroup"]
    ref = runtime_ref(tj)
    assert ref == Reference(CLUSTER_TRAINING_RUNTIME, "", "torch-distributed", "spec.runtimeRef")
    assert ref.path == "/apis/trainer.kubeflow.org/v1alpha1/clustertrainingruntimes/torch-distributed"
    assert str(ref) == "ClusterTrainingRuntime torch-distributed"


@pytest.mark.parametrize("ref", [
    {"apiGroup": "example.com", "kind": "ClusterTrainingRuntime", "name": "x"},
    {"kind": "ConfigMap", "name": "x"},
    {"kind": "ClusterTrainingRuntime"},
])
def test_a_reference_to_anything_else_is_refused(ref: dict[str, Any]) -> None:
    tj = trainjob(per_node=8)
    tj["spec"]["runtimeRef"] = ref
    with pytest.raises(WorkloadError, match="runtimeRef"):
        extract(tj, CTX, references=ManifestObjects([runtime()]))


def test_placement_from_the_runtime_and_the_trainjobs_override() -> None:
    rt = runtime(num_nodes=2, node_gpus=8)
    node_pod = rt["spec"]["template"]["spec"]["replicatedJobs"][-1]["template"]["spec"]["template"]["spec"]
    node_pod["nodeSelector"] = {"nvidia.com/gpu.product": "Tesla-T4", "pool": "gpu"}
    assert demand(trainjob(), rt).model == "T4"
    patched = trainjob(runtimePatches=[{"manager": "x", "trainingRuntimeSpec": {"template": {"spec": {
        "replicatedJobs": [{"name": "node", "template": {"spec": {"template": {"spec": {
            "nodeSelector": {"nvidia.com/gpu.product": H100}}}}}}]}}}}])
    assert demand(patched, rt).model == "H100-SXM5-80GB"


def test_a_malformed_runtime_names_the_runtime_and_field() -> None:
    rt = runtime(extra=[job("aux", [{"name": "aux", "resources": gpus(1)}])])
    rt["spec"]["template"]["spec"]["replicatedJobs"][0]["replicas"] = "many"
    with pytest.raises(WorkloadError, match=r"ClusterTrainingRuntime torch-distributed: spec\.template\.spec"
                                            r"\.replicatedJobs\[0\]\.replicas"):
        extract(trainjob(per_node=8), CTX, references=ManifestObjects([rt]))


# --- without the runtime (gpuquota check given only the TrainJob) ---------------------------------------------------

def test_without_its_runtime_a_fully_stated_trainjob_counts_what_it_states_and_warns() -> None:
    d = demand(trainjob(num_nodes=4, per_node=8))
    assert roles(d) == {"node": (4, 8.0)}
    assert any("ClusterTrainingRuntime torch-distributed is not among the manifests given" in w for w in d.warnings)


@pytest.mark.parametrize(("num_nodes", "per_node"), [(None, 8), (4, None), (None, None)])
def test_without_its_runtime_an_incomplete_trainjob_cannot_be_counted(num_nodes: int | None,
                                                                      per_node: int | None) -> None:
    with pytest.raises(UnreadableError, match=r"not among the manifests given; .*pass its manifest too") as caught:
        extract(trainjob(num_nodes=num_nodes, per_node=per_node), CTX, references=ManifestObjects([]))
    assert caught.value.missing


def test_without_a_source_the_object_alone_is_read() -> None:
    """``extract`` without ``references`` (no cluster, no manifests): what the TrainJob shows, with a warning."""
    d = extract(trainjob(per_node=8), CTX)
    assert d is not None
    assert d.gpus == 8
    assert d.warnings


@given(st.tuples(st.integers(1, 8), st.integers(1, 64), st.one_of(st.none(), st.integers(1, 64))),
       st.tuples(st.integers(0, 8), st.integers(0, 4), st.integers(0, 4)))
def test_count_is_the_controllers(trainer: tuple[int, int, int | None], aux: tuple[int, int, int]) -> None:
    """Σ over jobs: the trainer's nodes × resourcesPerNode, every other job's replicas × parallelism × GPUs."""
    per_node, runtime_nodes, job_nodes = trainer
    extra_gpus, extra_replicas, extra_parallelism = aux
    extra = [job("aux", [{"name": "aux", "resources": gpus(extra_gpus)}], replicas=extra_replicas,
                 parallelism=extra_parallelism)]
    found = extract(trainjob(num_nodes=job_nodes, per_node=per_node),
                    CTX, references=ManifestObjects([runtime(num_nodes=runtime_nodes, extra=extra)]))
    assert found is not None
    nodes = job_nodes if job_nodes is not None else runtime_nodes
    assert found.gpus == nodes * per_node + extra_replicas * max(extra_parallelism, 1) * extra_gpus
