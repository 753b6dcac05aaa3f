"""KubeRay's RayCluster (ray.io): a head pod plus worker groups of ``replicas`` × ``numOfHosts``, until deleted.

With autoscaling on (``enableInTreeAutoscaling``) a group can grow to ``maxReplicas`` without another admission
request, so that is what it is counted at; KubeRay's default ``maxReplicas`` (2,147,483,647) is refused as
unbounded. Without autoscaling the operator still keeps a group at ``minReplicas`` at least. KubeRay owns the pods
and labels them ``ray.io/cluster: <name>``. A RayJob's cluster is read by the same code (``cluster_templates``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuquota.workloads.claims import LabelClaim, OwnerRef, controlled_by
from gpuquota.workloads.errors import WorkloadError
from gpuquota.workloads.fields import (
    MAX_PODS,
    count,
    mapping,
    optional_int,
    optional_str,
    sequence,
    type_name,
)
from gpuquota.workloads.kind import Path, PodSpecAt, WorkloadKind
from gpuquota.workloads.kinds.common import metadata_annotations, pod_template
from gpuquota.workloads.shape import Shape, Template

GROUP = "ray.io"
_INT32_MAX = 2**31 - 1


def cluster_templates(cluster: Mapping[str, Any], path: str) -> list[Template]:
    """The pods of a RayClusterSpec found at ``path``."""
    head = mapping(cluster, "headGroupSpec", f"{path}.headGroupSpec", required=True)
    templates = [pod_template(head, "head", 1, f"{path}.headGroupSpec")]
    autoscaling = cluster.get("enableInTreeAutoscaling")
    if autoscaling is not None and not isinstance(autoscaling, bool):
        raise WorkloadError(
            f"must be true or false, got {type_name(autoscaling)}", path=f"{path}.enableInTreeAutoscaling"
        )
    for index, group in enumerate(sequence(cluster, "workerGroupSpecs", f"{path}.workerGroupSpecs")):
        where = f"{path}.workerGroupSpecs[{index}]"
        if not isinstance(group, Mapping):
            raise WorkloadError(f"must be a mapping, got {type_name(group)}", path=where)
        name = optional_str(group, "groupName", f"{where}.groupName") or f"workerGroupSpecs[{index}]"
        replicas = count(group, "replicas", f"{where}.replicas", 0)
        low = count(group, "minReplicas", f"{where}.minReplicas", 0)
        if autoscaling:
            high = optional_int(group, "maxReplicas", f"{where}.maxReplicas", maximum=_INT32_MAX)
            if high is None or high > MAX_PODS:
                raise WorkloadError(
                    "autoscaling is enabled and maxReplicas is unset or unbounded; set maxReplicas so the group's "
                    f"GPUs can be counted (at most {MAX_PODS:,})",
                    path=f"{where}.maxReplicas",
                )
            replicas = max(replicas, low, high)
        else:
            replicas = max(replicas, low)
        hosts = count(group, "numOfHosts", f"{where}.numOfHosts", 1)
        pods = replicas * hosts
        if pods > MAX_PODS:
            raise WorkloadError(
                f"{replicas} replicas × {hosts} hosts is {pods:,} pods; more than {MAX_PODS:,} is not accepted",
                path=where,
            )
        templates.append(pod_template(group, name, pods, where))
    return templates


def raycluster(obj: Mapping[str, Any]) -> Shape:
    """A long-running cluster: no runtime bound."""
    spec = mapping(obj, "spec", "spec", required=True)
    return Shape(tuple(cluster_templates(spec, "spec")), None, metadata_annotations(obj))


def cluster_made_for(value: str, controller: OwnerRef, labels: Mapping[str, Any]) -> str | None:
    """A pod of a cluster KubeRay made for the RayJob or RayService ``value`` (named ``<value>-<suffix>``)."""
    del labels
    made = (controller.group, controller.kind) == (GROUP, "RayCluster") and controller.name.startswith(value + "-")
    return value if made else None


def cluster_pod_specs(cluster: Path) -> tuple[PodSpecAt, ...]:
    """Where the pod specs of a RayClusterSpec found at ``cluster`` sit."""
    return (
        PodSpecAt((*cluster, "headGroupSpec", "template", "spec")),
        PodSpecAt(("template", "spec"), (*cluster, "workerGroupSpecs"), "list"),
    )


KIND = WorkloadKind(
    group=GROUP,
    kind="RayCluster",
    plural="rayclusters",
    versions=("v1",),
    read=raycluster,
    pod_specs=cluster_pod_specs(("spec",)),
    long_lived=True,
    claims=(LabelClaim("ray.io/cluster", controlled_by(GROUP, "RayCluster")),),
    suspend=("spec", "suspend"),
)
