"""KubeRay's RayService (ray.io): a Ray Serve application on a RayCluster it creates and keeps, until deleted.

The cluster is ``spec.rayClusterConfig`` (a RayClusterSpec, read as a RayCluster's). When that config changes,
KubeRay's zero-downtime upgrade (``spec.upgradeStrategy.type`` ``NewCluster``, the default, or
``NewClusterWithIncrementalUpgrade``) brings up a whole pending cluster beside the active one and switches traffic
over: both run at once, so a RayService is counted as two clusters unless its upgrade strategy is ``None`` (the
surge, as for a LeaderWorkerSet). KubeRay names its clusters ``<rayservice>-<suffix>``, owns them from the
RayService, and labels their pods ``ray.io/originated-from-crd: RayService``, ``ray.io/originated-from-cr-name``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from gpuquota.workloads.claims import LabelClaim
from gpuquota.workloads.errors import WorkloadError
from gpuquota.workloads.fields import mapping, optional_str
from gpuquota.workloads.kind import WorkloadKind
from gpuquota.workloads.kinds import raycluster
from gpuquota.workloads.kinds.common import metadata_annotations
from gpuquota.workloads.kinds.rayjob import CRD_LABEL, NAME_LABEL
from gpuquota.workloads.shape import Shape

UPGRADE_TYPES = frozenset({"NewCluster", "NewClusterWithIncrementalUpgrade", "None"})


def rayservice(obj: Mapping[str, Any]) -> Shape:
    spec = mapping(obj, "spec", "spec", required=True)
    cluster = mapping(spec, "rayClusterConfig", "spec.rayClusterConfig", required=True)
    templates = raycluster.cluster_templates(cluster, "spec.rayClusterConfig")
    upgrade = optional_str(
        mapping(spec, "upgradeStrategy", "spec.upgradeStrategy"), "type", "spec.upgradeStrategy.type"
    )
    if upgrade is not None and upgrade not in UPGRADE_TYPES:
        raise WorkloadError(
            f"must be one of {', '.join(sorted(UPGRADE_TYPES))}, got {upgrade!r}", path="spec.upgradeStrategy.type"
        )
    if upgrade != "None":  # a pending cluster runs beside the active one during an upgrade
        templates = [replace(t, pods=t.pods * 2) for t in templates]
    return Shape(tuple(templates), None, metadata_annotations(obj))



KIND = WorkloadKind(
    group=raycluster.GROUP,
    kind="RayService",
    plural="rayservices",
    versions=("v1",),
    read=rayservice,
    pod_specs=raycluster.cluster_pod_specs(("spec", "rayClusterConfig")),
    long_lived=True,
    children=(raycluster.KIND.key,),
    claims=(LabelClaim(NAME_LABEL, raycluster.cluster_made_for, requires=(CRD_LABEL, "RayService")),),
)
