"""Kubeflow Trainer v2 TrainJob (trainer.kubeflow.org): ``spec.trainer.numNodes`` × ``resourcesPerNode``.

The rest of the pod comes from the referenced (Cluster)TrainingRuntime, which is not part of the object: when
``resourcesPerNode`` names no GPU the runtime's own template decides, and the JobSet the controller creates from
it is what carries the GPUs. ``numNodes`` unset means the runtime's value; it is counted as 1 with a warning.
The model selector is read from ``podTemplateOverrides`` (``podSpecOverrides`` in early releases) that target
the ``node`` job. The controller runs a TrainJob as a JobSet of the same name, so its Jobs and pods carry that
JobSet's labels.
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
    return chosen, chosen_path


def trainjob(obj: Mapping[str, Any]) -> Shape:
    spec = mapping(obj, "spec", "spec", required=True)
    trainer = mapping(spec, "trainer", "spec.trainer")
    gpus = container_gpus(
        mapping(trainer, "resourcesPerNode", "spec.trainer.resourcesPerNode"), "spec.trainer.resourcesPerNode"
    )
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
    template = Template(TRAINER_JOB, nodes, placement, path, gpus=gpus)
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
