"""One test per adapter, on realistic manifests (tests/workloads/manifests): pods, GPUs, model and runtime."""

from __future__ import annotations

import pytest

from gpuquota.catalog import Catalog
from gpuquota.domain import Demand, ModelSource, Purpose, Weights
from gpuquota.workloads import SUPPORTED_KINDS, ExtractContext, UnsupportedKind, WorkloadError, extract
from tests.workloads.conftest import manifest, spec

H100 = spec("H100-SXM5-80GB")
A100 = spec("A100-SXM4-80GB")


def demand_of(name: str, ctx: ExtractContext) -> Demand:
    found = extract(manifest(name), ctx)
    assert found is not None
    return found


def roles(demand: Demand) -> dict[str, tuple[int, float, str]]:
    return {g.role: (g.pods, g.gpus_per_pod, g.model) for g in demand.groups}


def test_pytorchjob_master_and_workers_with_declarations(ctx: ExtractContext) -> None:
    demand = demand_of("pytorchjob-llama-finetune", ctx)
    assert roles(demand) == {"Master": (1, 8.0, H100.key), "Worker": (7, 8.0, H100.key)}
    assert demand.gpus == 64
    assert demand.tpp == pytest.approx(64 * H100.tpp)
    assert all(g.model_source is ModelSource.SELECTOR for g in demand.groups)
    assert demand.purpose is Purpose.FINE_TUNING
    assert demand.weights is Weights.OPEN
    assert demand.base_model == "meta-llama/Meta-Llama-3-70B"
    # 72h annotation is shorter than the 4-day runPolicy deadline: the smaller wins.
    assert demand.max_runtime_s == 72 * 3600
    assert (demand.kind, demand.namespace, demand.name) == ("PyTorchJob", "team-a", "llama3-70b-sft")
    assert demand.api_version == "kubeflow.org/v1"
    assert demand.gpu_class is H100.gpu_class


def test_pytorchjob_affinity_alternatives_count_the_most_powerful(ctx: ExtractContext) -> None:
    demand = demand_of("pytorchjob-master-worker-mixed", ctx)
    l4 = spec("L4")
    assert roles(demand) == {"Master": (1, 1.0, l4.key), "Worker": (4, 4.0, H100.key)}
    assert demand.tpp == pytest.approx(l4.tpp + 16 * H100.tpp)
    assert demand.max_runtime_s is None  # no deadline, no annotation: unbounded
    assert demand.primary is not None
    assert demand.primary.role == "Worker"


def test_pytorchjob_elastic_counts_max_replicas(ctx: ExtractContext) -> None:
    demand = demand_of("pytorchjob-elastic", ctx)
    assert roles(demand) == {"Worker": (6, 2.0, spec("A100-SXM4-40GB").key)}


def test_tfjob_skips_cpu_parameter_servers(ctx: ExtractContext) -> None:
    demand = demand_of("tfjob-chief-ps-worker", ctx)
    a10 = spec("A10")
    assert roles(demand) == {"Chief": (1, 1.0, a10.key), "Worker": (6, 2.0, a10.key)}
    assert demand.pods == 7
    assert demand.max_runtime_s == 28800


def test_mpijob_without_selector_uses_strongest_inventory_model(ctx: ExtractContext) -> None:
    demand = demand_of("mpijob-launcher-worker", ctx)
    assert roles(demand) == {"Worker": (4, 8.0, H100.key)}
    assert demand.groups[0].model_source is ModelSource.INVENTORY


def test_mpijob_of_the_mpi_operator_reads_like_the_training_operators(ctx: ExtractContext) -> None:
    demand = demand_of("mpijob-v2beta1-mpi-operator", ctx)
    assert roles(demand) == {"Worker": (2, 4.0, H100.key)}
    assert demand.max_runtime_s == 7200


def test_xgboostjob_runtime_from_annotation(ctx: ExtractContext) -> None:
    demand = demand_of("xgboostjob-gpu-hist", ctx)
    t4 = spec("T4")
    assert roles(demand) == {"Master": (1, 1.0, t4.key), "Worker": (3, 1.0, t4.key)}
    assert demand.max_runtime_s == 90 * 60


def test_paddlejob_and_jaxjob(ctx: ExtractContext) -> None:
    paddle = demand_of("paddlejob-collective", ctx)
    assert roles(paddle) == {"Worker": (2, 8.0, A100.key)}
    jax = demand_of("jaxjob-gemma-h200", ctx)
    assert roles(jax) == {"Worker": (4, 8.0, spec("H200-SXM").key)}
    assert jax.max_runtime_s == 7200


def test_kubeflow_replicas_default_to_one(ctx: ExtractContext) -> None:
    obj = manifest("paddlejob-collective")
    del obj["spec"]["paddleReplicaSpecs"]["Worker"]["replicas"]
    demand = extract(obj, ctx)
    assert demand is not None
    assert demand.pods == 1


def test_pod_without_selector(ctx: ExtractContext) -> None:
    demand = demand_of("pod-h100-single", ctx)
    assert roles(demand) == {"pod": (1, 1.0, H100.key)}
    assert demand.purpose is Purpose.TRAINING
    assert demand.weights is Weights.CLOSED
    assert demand.base_model is None


def test_pod_sidecar_init_containers_and_overhead(ctx: ExtractContext) -> None:
    demand = demand_of("pod-sidecar-init-overhead", ctx)
    # max(app 2 + sidecar 1, first init 2, later init 4 + sidecar 1) = 5
    assert roles(demand) == {"pod": (1, 5.0, H100.key)}
    assert demand.purpose is Purpose.INFERENCE
    assert demand.max_runtime_s == 3600


def test_cpu_only_pod_asks_for_nothing(ctx: ExtractContext) -> None:
    assert extract(manifest("pod-cpu-only"), ctx) is None


def test_indexed_job_counts_parallel_pods(ctx: ExtractContext) -> None:
    demand = demand_of("job-indexed-a100", ctx)
    assert roles(demand) == {"job": (4, 2.0, A100.key)}
    assert demand.max_runtime_s == 6 * 3600


@pytest.mark.parametrize(
    ("parallelism", "completions", "pods"),
    [(None, None, 1), (3, None, 3), (None, 5, 1), (8, 2, 2), (2, 8, 2), (0, 4, 0), (4, 0, 0)],
)
def test_job_pods_follow_batch_v1_defaults(
    ctx: ExtractContext, parallelism: int | None, completions: int | None, pods: int
) -> None:
    obj = manifest("job-indexed-a100")
    job_spec = obj["spec"]
    for key, value in (("parallelism", parallelism), ("completions", completions)):
        job_spec.pop(key)
        if value is not None:
            job_spec[key] = value
    demand = extract(obj, ctx)
    if pods == 0:
        assert demand is None
    else:
        assert demand is not None
        assert demand.pods == pods


def test_cronjob_counts_one_run_and_merges_annotations(ctx: ExtractContext) -> None:
    demand = demand_of("cronjob-nightly-eval", ctx)
    assert roles(demand) == {"job": (2, 1.0, spec("L40S").key)}
    assert demand.purpose is Purpose.INFERENCE  # the CronJob's own annotation
    assert demand.max_runtime_s == 2 * 3600  # the job template's annotation, below the 3h deadline


def test_jobset_sums_replicated_jobs(ctx: ExtractContext) -> None:
    demand = demand_of("jobset-llm-pretrain", ctx)
    l4 = spec("L4")
    assert roles(demand) == {"trainer": (8, 8.0, H100.key), "evaluator": (1, 1.0, l4.key)}
    assert demand.tpp == pytest.approx(64 * H100.tpp + l4.tpp)
    # longest deadline (1 day) × (maxRestarts 2 + 1)
    assert demand.max_runtime_s == 3 * 86400


def test_jobset_without_deadline_on_a_gpu_job_is_unbounded(ctx: ExtractContext) -> None:
    obj = manifest("jobset-llm-pretrain")
    del obj["spec"]["replicatedJobs"][1]["template"]["spec"]["activeDeadlineSeconds"]
    demand = extract(obj, ctx)
    assert demand is not None
    assert demand.max_runtime_s is None


def test_trainjob_num_nodes_times_resources_per_node(ctx: ExtractContext) -> None:
    demand = demand_of("trainjob-torch-distributed", ctx)
    assert roles(demand) == {"node": (4, 8.0, spec("H200-SXM").key)}
    assert demand.groups[0].model_source is ModelSource.SELECTOR
    assert demand.purpose is Purpose.FINE_TUNING
    assert demand.base_model == "Qwen/Qwen2.5-32B"
    assert not demand.warnings


def test_trainjob_runtime_patches_pin_the_trainer_pods(ctx: ExtractContext) -> None:
    # Trainer v2.2 writes placement as a patch of the runtime's JobSet template; only the "node" job's patch counts
    # (the initializer's CPU pool is not where the GPUs run).
    demand = demand_of("trainjob-runtime-patches", ctx)
    assert roles(demand) == {"node": (2, 8.0, spec("H100-SXM5-80GB").key)}
    assert demand.groups[0].model_source is ModelSource.SELECTOR


def test_trainjob_runtime_patch_for_another_job_leaves_the_model_open(ctx: ExtractContext) -> None:
    obj = manifest("trainjob-runtime-patches")
    jobs = obj["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    jobs[1]["name"] = "dataset-initializer"
    demand = extract(obj, ctx)
    assert demand is not None
    assert demand.groups[0].model_source is not ModelSource.SELECTOR


def test_trainjob_without_num_nodes_warns(ctx: ExtractContext) -> None:
    obj = manifest("trainjob-torch-distributed")
    del obj["spec"]["trainer"]["numNodes"]
    demand = extract(obj, ctx)
    assert demand is not None
    assert demand.pods == 1
    assert any("numNodes" in w for w in demand.warnings)


def test_trainjob_without_gpus_in_resources_per_node(ctx: ExtractContext) -> None:
    obj = manifest("trainjob-torch-distributed")
    del obj["spec"]["trainer"]["resourcesPerNode"]
    assert extract(obj, ctx) is None


def test_raycluster_autoscaling_counts_max_replicas_times_hosts(ctx: ExtractContext) -> None:
    demand = demand_of("raycluster-autoscaling", ctx)
    assert roles(demand) == {"gpu-a100": (16, 4.0, A100.key)}
    assert demand.max_runtime_s is None


def test_raycluster_without_autoscaling_counts_replicas(ctx: ExtractContext) -> None:
    obj = manifest("raycluster-autoscaling")
    obj["spec"]["enableInTreeAutoscaling"] = False
    demand = extract(obj, ctx)
    assert demand is not None
    assert roles(demand) == {"gpu-a100": (4, 4.0, A100.key)}
    obj["spec"]["workerGroupSpecs"][0]["minReplicas"] = 3
    demand = extract(obj, ctx)
    assert demand is not None
    assert demand.pods == 6


def test_rayjob_head_workers_and_deadline(ctx: ExtractContext) -> None:
    demand = demand_of("rayjob-batch-inference", ctx)
    l4 = spec("L4")
    assert roles(demand) == {"head": (1, 1.0, l4.key), "l4": (3, 1.0, l4.key)}
    assert demand.max_runtime_s == 14400
    assert demand.purpose is Purpose.INFERENCE


def test_rayjob_on_existing_cluster_asks_for_nothing(ctx: ExtractContext) -> None:
    obj = manifest("rayjob-batch-inference")
    del obj["spec"]["rayClusterSpec"]
    obj["spec"]["clusterSelector"] = {"ray.io/cluster": "rl-cluster"}
    assert extract(obj, ctx) is None


def test_leaderworkerset_leader_and_workers_with_surge(ctx: ExtractContext) -> None:
    demand = demand_of("lws-vllm-multinode", ctx)
    # (2 replicas + maxSurge 1) groups × size 2: 3 leaders, 3 workers
    assert roles(demand) == {"leader": (3, 8.0, H100.key), "worker": (3, 8.0, H100.key)}
    assert demand.gpus == 48


def test_leaderworkerset_without_leader_template(ctx: ExtractContext) -> None:
    obj = manifest("lws-vllm-multinode")
    del obj["spec"]["leaderWorkerTemplate"]["leaderTemplate"]
    obj["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"]["maxSurge"] = "50%"
    demand = extract(obj, ctx)
    # 2 replicas + ceil(50 % of 2) = 3 groups of 2 pods, all from the worker template
    assert demand is not None
    assert roles(demand) == {"worker": (6, 8.0, H100.key)}


def test_rayservice_counts_its_cluster_and_the_upgrade_beside_it(ctx: ExtractContext) -> None:
    demand = demand_of("rayservice-llm-serve", ctx)
    l4 = spec("L4")
    # autoscaling: 4 workers × 2 L4 (GKE accelerator label); doubled: a zero-downtime upgrade runs a second cluster
    assert roles(demand) == {"gpu-group": (8, 2.0, l4.key)}
    assert demand.max_runtime_s is None
    obj = manifest("rayservice-llm-serve")
    obj["spec"]["upgradeStrategy"] = {"type": "None"}
    once = extract(obj, ctx)
    assert once is not None
    assert once.gpus == 8
    obj["spec"]["upgradeStrategy"] = {"type": "Sometimes"}
    with pytest.raises(WorkloadError, match=r"spec\.upgradeStrategy\.type"):
        extract(obj, ctx)


def test_volcano_job_sums_its_tasks(ctx: ExtractContext) -> None:
    demand = demand_of("volcano-job-mpi", ctx)
    assert roles(demand) == {"mpiworker": (4, 8.0, A100.key)}
    assert (demand.kind, demand.api_version, demand.gpus) == ("Job", "batch.volcano.sh/v1alpha1", 32)
    assert demand.max_runtime_s == 24 * 3600


def test_unsupported_kind_is_reported(ctx: ExtractContext) -> None:
    with pytest.raises(UnsupportedKind, match=r"Deployment serving/tgi: apps/v1 Deployment is not a workload kind"):
        extract(manifest("deployment-gpu"), ctx)


def test_supported_kinds_cover_every_family() -> None:
    expected = {
        ("", "Pod"),
        ("batch", "Job"),
        ("batch", "CronJob"),
        ("jobset.x-k8s.io", "JobSet"),
        ("trainer.kubeflow.org", "TrainJob"),
        ("ray.io", "RayJob"),
        ("ray.io", "RayCluster"),
        ("ray.io", "RayService"),
        ("leaderworkerset.x-k8s.io", "LeaderWorkerSet"),
        ("batch.volcano.sh", "Job"),
        *(("kubeflow.org", k) for k in ("PyTorchJob", "TFJob", "MPIJob", "XGBoostJob", "PaddleJob", "JAXJob")),
    }
    assert expected == SUPPORTED_KINDS


def test_version_of_a_group_does_not_matter(ctx: ExtractContext, catalog: Catalog) -> None:
    obj = manifest("raycluster-autoscaling")
    obj["apiVersion"] = "ray.io/v1alpha1"
    first = extract(obj, ctx)
    assert first is not None
    assert first.api_version == "ray.io/v1alpha1"
    assert first.pods == 16


def test_leaderworkerset_scaled_to_zero_asks_for_nothing(ctx: ExtractContext) -> None:
    obj = manifest("lws-vllm-multinode")
    obj["spec"]["replicas"] = 0
    assert extract(obj, ctx) is None
