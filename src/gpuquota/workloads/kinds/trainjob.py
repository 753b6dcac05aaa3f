"""Kubeflow Trainer v2 TrainJob (trainer.kubeflow.org): what the training runtime it names builds.

A TrainJob names a TrainingRuntime (in its namespace) or ClusterTrainingRuntime (``spec.runtimeRef``); the Trainer
controller builds a JobSet from that runtime's template (Trainer v2.2, ``pkg/runtime/core/trainingruntime.go`` and
the ``jobset``, ``torch``, ``mpi`` and ``plainml`` plugins), and that JobSet carries the GPUs. So ``resolve`` reads the
runtime (``workloads.references``) and counts every replicatedJob of its JobSet template the way the controller sizes
it:

- the trainer job (label ``trainer.kubeflow.org/trainjob-ancestor-step: trainer``): 1 replica × ``numNodes`` pods —
  the TrainJob's ``spec.trainer.numNodes``, else the runtime's ``spec.mlPolicy.numNodes`` (default 1; without an
  mlPolicy, the Job template's parallelism). Under an MPI policy the TrainJob's ``numNodes`` sizes the ``node`` job
  instead (minus the launcher with ``runLauncherAsNode``), and the trainer (launcher) keeps the runtime's value;
- the initializer jobs (``dataset-initializer``, ``model-initializer``): 1 replica × parallelism;
- any other job: ``replicas`` × parallelism, as the runtime sets them (the controller sets completions to match);
- ``spec.trainer.resourcesPerNode`` replaces the resources of the ``node`` container of the trainer job (and of the
  ``node`` job with ``runLauncherAsNode``); every other container, init container and overhead counts as the
  runtime writes it;
- the nodeSelector/affinity of each job comes from the runtime, overridden by whatever in the TrainJob targets that
  job: ``runtimePatches`` (v2.2, a patch of the runtime's JobSet template), ``podTemplateOverrides`` (v2.1) or
  ``podSpecOverrides`` (v2.0).

``read`` (the object alone, when no runtime source is given) counts ``numNodes`` × ``resourcesPerNode``. The controller
runs a TrainJob as a JobSet of the same name, so its Jobs and pods carry that JobSet's labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuquota.workloads.claims import LabelClaim
from gpuquota.workloads.errors import WorkloadError
from gpuquota.workloads.fields import count, mapping, mappings, optional_int, optional_str, sequence, type_name
from gpuquota.workloads.kind import WorkloadKind
from gpuquota.workloads.kinds import jobset
from gpuquota.workloads.kinds.common import metadata_annotations
from gpuquota.workloads.references import ReadResource, Reference, ReferenceSource, UnreadableError
from gpuquota.workloads.resources import container_gpus
from gpuquota.workloads.shape import Shape, Template

GROUP = "trainer.kubeflow.org"
VERSION = "v1alpha1"
TRAINER_JOB = "node"
"""The trainer's replicatedJob and container name in every upstream runtime (``constants.Node``)."""
ANCESTOR_LABEL = "trainer.kubeflow.org/trainjob-ancestor-step"
ANCESTOR_TRAINER = "trainer"
INITIALIZERS = frozenset({"dataset-initializer", "model-initializer"})

TRAINING_RUNTIME = ReadResource(GROUP, VERSION, "TrainingRuntime", "trainingruntimes", namespaced=True)
CLUSTER_TRAINING_RUNTIME = ReadResource(GROUP, VERSION, "ClusterTrainingRuntime", "clustertrainingruntimes",
                                        namespaced=False)
RUNTIMES = {r.kind: r for r in (TRAINING_RUNTIME, CLUSTER_TRAINING_RUNTIME)}


def _targets(override: Mapping[str, Any], path: str, job: str) -> bool:
    for index, target in enumerate(sequence(override, "targetJobs", f"{path}.targetJobs")):
        if not isinstance(target, Mapping):
            raise WorkloadError(f"must be a mapping, got {type_name(target)}", path=f"{path}.targetJobs[{index}]")
        if target.get("name") == job:
            return True
    return False


def _placement(spec: Mapping[str, Any], job: str = TRAINER_JOB) -> tuple[Mapping[str, Any], str]:
    """The nodeSelector/affinity overrides of ``job``'s pods (the last matching override wins, as applied)."""
    chosen: Mapping[str, Any] = {}
    chosen_path = "spec.podTemplateOverrides"
    for field in ("podSpecOverrides", "podTemplateOverrides"):
        for index, override in enumerate(sequence(spec, field, f"spec.{field}")):
            path = f"spec.{field}[{index}]"
            if not isinstance(override, Mapping):
                raise WorkloadError(f"must be a mapping, got {type_name(override)}", path=path)
            if not _targets(override, path, job):
                continue
            # podTemplateOverrides nest the PodSpec under .spec; podSpecOverrides carry its fields directly.
            pod_spec = mapping(override, "spec", f"{path}.spec") if field == "podTemplateOverrides" else override
            if "nodeSelector" in pod_spec or "affinity" in pod_spec:
                chosen = pod_spec
                chosen_path = f"{path}.spec" if field == "podTemplateOverrides" else path
    for index, patch in enumerate(sequence(spec, "runtimePatches", "spec.runtimePatches")):
        path = f"spec.runtimePatches[{index}].trainingRuntimeSpec.template.spec"
        if not isinstance(patch, Mapping):
            raise WorkloadError(f"must be a mapping, got {type_name(patch)}", path=f"spec.runtimePatches[{index}]")
        runtime = mapping(patch, "trainingRuntimeSpec", f"spec.runtimePatches[{index}].trainingRuntimeSpec")
        jobset_spec = mapping(mapping(runtime, "template", path.rsplit(".", 1)[0]), "spec", path)
        for j, patched in enumerate(sequence(jobset_spec, "replicatedJobs", f"{path}.replicatedJobs")):
            job_path = f"{path}.replicatedJobs[{j}]"
            if not isinstance(patched, Mapping):
                raise WorkloadError(f"must be a mapping, got {type_name(patched)}", path=job_path)
            if patched.get("name") != job:
                continue
            pod_path = f"{job_path}.template.spec.template.spec"
            job_spec = mapping(mapping(patched, "template", f"{job_path}.template"), "spec",
                               f"{job_path}.template.spec")
            pod_spec = mapping(mapping(job_spec, "template", f"{job_path}.template.spec.template"), "spec", pod_path)
            if "nodeSelector" in pod_spec or "affinity" in pod_spec:
                chosen, chosen_path = pod_spec, pod_path
    return chosen, chosen_path


def trainjob(obj: Mapping[str, Any]) -> Shape:
    spec = mapping(obj, "spec", "spec", required=True)
    trainer = mapping(spec, "trainer", "spec.trainer")
    resources = mapping(trainer, "resourcesPerNode", "spec.trainer.resourcesPerNode")
    gpus = container_gpus(resources, "spec.trainer.resourcesPerNode")  # checked here; counted by ``extract``
    nodes = optional_int(trainer, "numNodes", "spec.trainer.numNodes")
    warnings: tuple[str, ...] = ()
    if nodes is None:
        nodes = 1
        if gpus:
            warnings = (
                "spec.trainer.numNodes is not set: the training runtime's value applies and is not visible "
                "here; counted as 1 node",
            )
    placement, path = _placement(spec)
    template = Template(TRAINER_JOB, nodes, placement, path, resources=resources)
    return Shape((template,), None, metadata_annotations(obj), warnings)


def runtime_ref(obj: Mapping[str, Any]) -> Reference:
    """The runtime ``spec.runtimeRef`` names (apiGroup and kind default as the CRD defaults them); a TrainingRuntime
    is the one in the TrainJob's namespace."""
    spec = mapping(obj, "spec", "spec", required=True)
    ref = mapping(spec, "runtimeRef", "spec.runtimeRef", required=True)
    name = optional_str(ref, "name", "spec.runtimeRef.name")
    if not name:
        raise WorkloadError("is required", path="spec.runtimeRef.name")
    group = optional_str(ref, "apiGroup", "spec.runtimeRef.apiGroup") or GROUP
    kind = optional_str(ref, "kind", "spec.runtimeRef.kind") or CLUSTER_TRAINING_RUNTIME.kind
    resource = RUNTIMES.get(kind) if group == GROUP else None
    if resource is None:
        raise WorkloadError(f"names a {kind} of {group}; a TrainJob runs from a TrainingRuntime or "
                            f"ClusterTrainingRuntime of {GROUP}", path="spec.runtimeRef")
    namespace = str(mapping(obj, "metadata", "metadata").get("namespace") or "") if resource.namespaced else ""
    return Reference(resource, namespace, name, "spec.runtimeRef")


def trainjob_from_runtime(obj: Mapping[str, Any], source: ReferenceSource) -> Shape:
    """The pods the referenced runtime builds for this TrainJob (see the module's docstring). A runtime ``source``
    does not hold (``gpuquota check`` without its manifest) leaves what the TrainJob states: counted when it sets
    both ``numNodes`` and GPUs in ``resourcesPerNode`` (with a warning: the runtime's other GPUs are not seen),
    else ``UnreadableError``."""
    ref = runtime_ref(obj)
    runtime = source.referenced(ref)
    if runtime is not None:
        return _from_runtime(obj, ref, runtime)
    shape = trainjob(obj)
    trainer = mapping(mapping(obj, "spec", "spec"), "trainer", "spec.trainer")
    if trainer.get("numNodes") is None or not any(t.resources and container_gpus(t.resources, t.path)
                                                  for t in shape.templates):
        raise UnreadableError(ref, "is not among the manifests given",
                         "its spec.mlPolicy.numNodes and pod templates decide what this TrainJob runs: pass its "
                         "manifest too (or set spec.trainer.numNodes and the GPUs in spec.trainer.resourcesPerNode)",
                         missing=True)
    warning = (f"{ref} is not among the manifests given: counted as spec.trainer.numNodes × resourcesPerNode only "
               "(GPUs the runtime's other jobs and containers ask for are not seen; pass its manifest too)")
    return Shape(shape.templates, shape.deadline_s, shape.annotations, (*shape.warnings, warning))


def _from_runtime(obj: Mapping[str, Any], ref: Reference, runtime: Mapping[str, Any]) -> Shape:
    spec = mapping(obj, "spec", "spec", required=True)
    trainer = mapping(spec, "trainer", "spec.trainer")
    nodes = optional_int(trainer, "numNodes", "spec.trainer.numNodes")
    resources = mapping(trainer, "resourcesPerNode", "spec.trainer.resourcesPerNode")
    container_gpus(resources, "spec.trainer.resourcesPerNode")  # checked here, counted in the pods it ends up in
    replaced = resources if resources.get("limits") is not None or resources.get("requests") is not None else None
    at = f"{ref}: spec"
    runtime_spec = mapping(runtime, "spec", at, required=True)
    has_policy = runtime_spec.get("mlPolicy") is not None
    policy = mapping(runtime_spec, "mlPolicy", f"{at}.mlPolicy")
    runtime_nodes = count(policy, "numNodes", f"{at}.mlPolicy.numNodes", 1)
    mpi = mapping(policy, "mpi", f"{at}.mlPolicy.mpi") if policy.get("mpi") is not None else None
    launcher_as_node = mpi is not None and mpi.get("runLauncherAsNode") is True
    jobset_spec = mapping(mapping(runtime_spec, "template", f"{at}.template"), "spec", f"{at}.template.spec")
    templates: list[Template] = []
    for where, job in mappings(jobset_spec, "replicatedJobs", f"{at}.template.spec.replicatedJobs"):
        name = optional_str(job, "name", f"{where}.name") or ""
        job_template = mapping(job, "template", f"{where}.template")
        labels = mapping(mapping(job_template, "metadata", f"{where}.template.metadata"), "labels",
                         f"{where}.template.metadata.labels")
        ancestor = labels.get(ANCESTOR_LABEL)
        job_spec = mapping(job_template, "spec", f"{where}.template.spec")
        is_trainer = ancestor == ANCESTOR_TRAINER
        # pods per Job: the controller writes its count as parallelism and completions (never below 1)
        per_job = count(job_spec, "parallelism", f"{where}.template.spec.parallelism", 1)
        if is_trainer:
            per_job = (runtime_nodes if has_policy else per_job) if nodes is None or mpi is not None else nodes
        elif mpi is not None and name == TRAINER_JOB and nodes is not None:
            per_job = max(nodes - 1, 1) if launcher_as_node else nodes
        replicas = 1 if is_trainer or ancestor in INITIALIZERS else count(job, "replicas", f"{where}.replicas", 1)
        pod_template = mapping(job_spec, "template", f"{where}.template.spec.template")
        pod_at = f"{where}.template.spec.template.spec"
        pod = mapping(pod_template, "spec", pod_at)
        if replaced is not None and (is_trainer or (launcher_as_node and name == TRAINER_JOB)):
            pod = _node_resources(pod, replaced, pod_at)
        notes = mapping(mapping(pod_template, "metadata", f"{where}.template.spec.template.metadata"), "annotations",
                        f"{where}.template.spec.template.metadata.annotations")
        templates.append(Template(name or where, replicas * max(per_job, 1), _placed(pod, spec, name, pod_at),
                                  pod_at, annotations=notes))
    return Shape(tuple(templates), None, metadata_annotations(obj))


def _node_resources(pod: Mapping[str, Any], resources: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    """The pod spec with the ``node`` container's resources replaced by ``resourcesPerNode`` (the controller's way)."""
    containers = [
        {**container, "resources": resources} if container.get("name") == TRAINER_JOB else container
        for _, container in mappings(pod, "containers", f"{path}.containers")
    ]
    return {**pod, "containers": containers}


def _placed(pod: Mapping[str, Any], spec: Mapping[str, Any], job: str, path: str) -> Mapping[str, Any]:
    """The pod spec with the TrainJob's nodeSelector (merged over the runtime's) and affinity (replacing it) for
    ``job``. Replacing an affinity can only widen the models counted (never under-count)."""
    chosen, chosen_path = _placement(spec, job)
    if not chosen:
        return pod
    placed = dict(pod)
    if "nodeSelector" in chosen:
        placed["nodeSelector"] = {**mapping(pod, "nodeSelector", f"{path}.nodeSelector"),
                                  **mapping(chosen, "nodeSelector", f"{chosen_path}.nodeSelector")}
    if "affinity" in chosen:
        placed["affinity"] = chosen["affinity"]
    return placed


KIND = WorkloadKind(
    group="trainer.kubeflow.org",
    kind="TrainJob",
    plural="trainjobs",
    versions=("v1alpha1",),
    read=trainjob,
    always_send=True,
    children=(jobset.KIND.key, ("batch", "Job")),
    claims=(LabelClaim(jobset.NAME_LABEL, jobset.jobset_member),),
    suspend=("spec", "suspend"),
    resolve=trainjob_from_runtime,
    reads=(TRAINING_RUNTIME, CLUSTER_TRAINING_RUNTIME),
)
