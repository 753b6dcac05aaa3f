"""Kubeflow Trainer v2 TrainJob (trainer.kubeflow.org): ``spec.trainer.numNodes`` × ``resourcesPerNode``.

The rest of the pod comes from the referenced (Cluster)TrainingRuntime, which is not part of the object: when
``resourcesPerNode`` names no GPU the runtime's own template decides, and the JobSet the controller creates from
it is what carries the GPUs. ``numNodes`` unset means the runtime's value; it is counted as 1 with a warning.
The model selector is read from whatever targets the ``node`` job: ``runtimePatches`` (Trainer v2.2: a patch of
the runtime's JobSet template; it can move pods but not add resources), ``podTemplateOverrides`` (v2.1) or
``podSpecOverrides`` (v2.0). The controller runs a TrainJob as a JobSet of the same name, so its Jobs and pods
carry that JobSet's labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuquota.workloads.claims import LabelClaim
from gpuquota.workloads.errors import WorkloadError
from gpuquota.workloads.fields import mapping, optional_int, sequence, type_name
from gpuquota.workloads.kind import WorkloadKind
from gpuquota.workloads.kinds import jobset
from gpuquota.workloads.kinds.common import metadata_annotations
from gpuquota.workloads.resources import container_gpus
from gpuquota.workloads.shape import Shape, Template

TRAINER_JOB = "node"


def _targets_trainer(override: Mapping[str, Any], path: str) -> bool:
    for index, target in enumerate(sequence(override, "targetJobs", f"{path}.targetJobs")):
        if not isinstance(target, Mapping):
            raise WorkloadError(f"must be a mapping, got {type_name(target)}", path=f"{path}.targetJobs[{index}]")
        if target.get("name") == TRAINER_JOB:
            return True
    return False


def _placement(spec: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    """The nodeSelector/affinity overrides of the trainer pods (the last matching override wins, as applied)."""
    chosen: Mapping[str, Any] = {}
    chosen_path = "spec.podTemplateOverrides"
    for field in ("podSpecOverrides", "podTemplateOverrides"):
        for index, override in enumerate(sequence(spec, field, f"spec.{field}")):
            path = f"spec.{field}[{index}]"
            if not isinstance(override, Mapping):
                raise WorkloadError(f"must be a mapping, got {type_name(override)}", path=path)
            if not _targets_trainer(override, path):
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
        for j, job in enumerate(sequence(jobset_spec, "replicatedJobs", f"{path}.replicatedJobs")):
            job_path = f"{path}.replicatedJobs[{j}]"
            if not isinstance(job, Mapping):
                raise WorkloadError(f"must be a mapping, got {type_name(job)}", path=job_path)
            if job.get("name") != TRAINER_JOB:
                continue
            pod_path = f"{job_path}.template.spec.template.spec"
            job_spec = mapping(mapping(job, "template", f"{job_path}.template"), "spec", f"{job_path}.template.spec")
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
)
