"""Where each workload kind lives in the API: (apiGroup, kind) → its REST collection, and the version served.

Derived from the workload kinds (``gpuquota.workloads.registry.KINDS``): every kind the webhook reserves for is
followed, with the controllers under it (``WorkloadKind.children``) and pods. A kind served at more than one
version by real clusters (MPIJob: ``v2beta1`` by the MPI Operator, ``v1`` by the training operator) is looked up
in the cluster's discovery documents (``served_version``) instead of assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuquota.kube import KubeApi, NotFoundError
from gpuquota.workloads.kind import KindKey
from gpuquota.workloads.registry import KINDS

__all__ = ["INTERMEDIATE", "POD", "RESOURCES", "KindKey", "Resource", "kinds_to_follow", "served_version"]


@dataclass(frozen=True, slots=True)
class Resource:
    group: str
    plural: str
    versions: tuple[str, ...]  # the versions real clusters serve it at, preferred first
    long_lived: bool = False  # never "finishes" by itself (a RayCluster, a LeaderWorkerSet): held while it exists

    def group_version(self, version: str) -> str:
        """The discovery path of one version: ``/api/v1`` or ``/apis/<group>/<version>``."""
        return f"/api/{version}" if not self.group else f"/apis/{self.group}/{version}"

    def collection(self, version: str, namespace: str | None = None) -> str:
        """All objects (``namespace=None``) or those of one namespace, at ``version``."""
        base = self.group_version(version)
        return f"{base}/{self.plural}" if namespace is None else f"{base}/namespaces/{namespace}/{self.plural}"


RESOURCES: dict[KindKey, Resource] = {
    k.key: Resource(k.group, k.plural, k.versions, long_lived=k.long_lived) for k in KINDS
}

POD: KindKey = ("", "Pod")

INTERMEDIATE: dict[KindKey, tuple[KindKey, ...]] = {k.key: k.children for k in KINDS if k.children}
"""Controllers between a workload and its pods that the reconciler also follows, so that a pod's start reaches the
workload that was admitted (TrainJob → JobSet → Job → Pod; RayJob → RayCluster → Pod)."""


def kinds_to_follow(reserved: KindKey) -> tuple[KindKey, ...]:
    """The kind itself, the controllers under it, and pods."""
    return (reserved, *INTERMEDIATE.get(reserved, ()), POD)


def served_version(kube: KubeApi, resource: Resource) -> str | None:
    """The version the cluster serves ``resource`` at: the first of its versions whose discovery document
    (``APIResourceList``) lists the plural; ``None`` when none does (its CRD is not installed). A kind with one
    version is not looked up. ``KubeError`` (other than 404) propagates: the caller tries again later."""
    if len(resource.versions) == 1:
        return resource.versions[0]
    for version in resource.versions:
        try:
            document = kube.get(resource.group_version(version))
        except NotFoundError:
            continue
        listed = (document or {}).get("resources")
        if isinstance(listed, list) and any(isinstance(r, dict) and r.get("name") == resource.plural for r in listed):
            return version
    return None

