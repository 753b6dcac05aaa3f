"""KubeRay's RayJob (ray.io): the RayCluster it creates (none with ``clusterSelector``) and its submitter pod.

KubeRay names the cluster ``<rayjob>-<random suffix>``, owns it from the RayJob, and labels its pods
``ray.io/originated-from-crd: RayJob`` and ``ray.io/originated-from-cr-name: <rayjob>``; their controller is the
cluster. A RayJob reports its end in ``status.jobDeploymentStatus``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuquota.workloads.claims import LabelClaim
from gpuquota.workloads.fields import deadline, mapping
from gpuquota.workloads.kind import PodSpecAt, WorkloadKind
from gpuquota.workloads.kinds import raycluster
from gpuquota.workloads.kinds.common import metadata_annotations
from gpuquota.workloads.lifecycle import Observation, observe_status
from gpuquota.workloads.shape import Shape, Template

FINISHED_STATUSES = frozenset({"Complete", "Failed"})
NAME_LABEL = "ray.io/originated-from-cr-name"
CRD_LABEL = "ray.io/originated-from-crd"


def rayjob(obj: Mapping[str, Any]) -> Shape:
    """The cluster it creates (none with ``clusterSelector``: the existing cluster was counted) and its
    submitter pod; bounded by ``activeDeadlineSeconds``."""
    spec = mapping(obj, "spec", "spec", required=True)
    templates: list[Template] = []
    cluster = mapping(spec, "rayClusterSpec", "spec.rayClusterSpec")
    if cluster:
        templates.extend(raycluster.cluster_templates(cluster, "spec.rayClusterSpec"))
    submitter = mapping(spec, "submitterPodTemplate", "spec.submitterPodTemplate")
    if submitter:
        pod_spec = mapping(submitter, "spec", "spec.submitterPodTemplate.spec")
        notes = metadata_annotations(submitter, "spec.submitterPodTemplate.metadata")
        templates.append(Template("submitter", 1, pod_spec, "spec.submitterPodTemplate.spec", annotations=notes))
    bound = deadline(spec, "activeDeadlineSeconds", "spec.activeDeadlineSeconds")
    return Shape(tuple(templates), bound, metadata_annotations(obj))



def observe(obj: Mapping[str, Any]) -> Observation:
    status = obj.get("status")
    deployment = status.get("jobDeploymentStatus") if isinstance(status, Mapping) else None
    return observe_status(obj, str(deployment) if deployment in FINISHED_STATUSES else "")


KIND = WorkloadKind(
    group=raycluster.GROUP,
    kind="RayJob",
    plural="rayjobs",
    versions=("v1",),
    read=rayjob,
    pod_specs=(
        *raycluster.cluster_pod_specs(("spec", "rayClusterSpec")),
        PodSpecAt(("spec", "submitterPodTemplate", "spec")),
    ),
    children=(raycluster.KIND.key,),
    claims=(LabelClaim(NAME_LABEL, raycluster.cluster_made_for, requires=(CRD_LABEL, "RayJob")),),
    observe=observe,
    suspend=("spec", "suspend"),
)
