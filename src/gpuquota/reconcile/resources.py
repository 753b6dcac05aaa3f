"""Where each workload kind lives in the API: (apiGroup, kind) → REST collection path.

The kinds are those the webhook reserves for (``gpuquota.workloads.SUPPORTED_KINDS``); a test checks that every
one of them has a path here, so a new adapter cannot be admitted without the reconciler following it.
"""

from __future__ import annotations

from dataclasses import dataclass

KindKey = tuple[str, str]  # (apiGroup, kind)


@dataclass(frozen=True, slots=True)
class Resource:
    group: str
    version: str
    plural: str
    long_lived: bool = False  # never "finishes" by itself (a RayCluster, a LeaderWorkerSet): held while it exists

    def collection(self, namespace: str | None = None) -> str:
        """All objects (``namespace=None``) or those of one namespace."""
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        return f"{base}/{self.plural}" if namespace is None else f"{base}/namespaces/{namespace}/{self.plural}"


RESOURCES: dict[KindKey, Resource] = {
    ("", "Pod"): Resource("", "v1", "pods"),
    ("batch", "Job"): Resource("batch", "v1", "jobs"),
    ("batch", "CronJob"): Resource("batch", "v1", "cronjobs", long_lived=True),
    ("jobset.x-k8s.io", "JobSet"): Resource("jobset.x-k8s.io", "v1alpha2", "jobsets"),
    ("kubeflow.org", "PyTorchJob"): Resource("kubeflow.org", "v1", "pytorchjobs"),
    ("kubeflow.org", "TFJob"): Resource("kubeflow.org", "v1", "tfjobs"),
    ("kubeflow.org", "XGBoostJob"): Resource("kubeflow.org", "v1", "xgboostjobs"),
    ("kubeflow.org", "PaddleJob"): Resource("kubeflow.org", "v1", "paddlejobs"),
    ("kubeflow.org", "JAXJob"): Resource("kubeflow.org", "v1", "jaxjobs"),
    ("kubeflow.org", "MPIJob"): Resource("kubeflow.org", "v2beta1", "mpijobs"),
    ("trainer.kubeflow.org", "TrainJob"): Resource("trainer.kubeflow.org", "v1alpha1", "trainjobs"),
    ("ray.io", "RayJob"): Resource("ray.io", "v1", "rayjobs"),
    ("ray.io", "RayCluster"): Resource("ray.io", "v1", "rayclusters", long_lived=True),
    ("leaderworkerset.x-k8s.io", "LeaderWorkerSet"): Resource(
        "leaderworkerset.x-k8s.io", "v1", "leaderworkersets", long_lived=True
    ),
}

POD: KindKey = ("", "Pod")

# Controllers between a workload and its pods that the reconciler also follows, so that a pod's start reaches
# the workload that was admitted (TrainJob → JobSet → Job → Pod; RayJob → RayCluster → Pod).
INTERMEDIATE: dict[KindKey, tuple[KindKey, ...]] = {
    ("batch", "CronJob"): (("batch", "Job"),),
    ("jobset.x-k8s.io", "JobSet"): (("batch", "Job"),),
    ("trainer.kubeflow.org", "TrainJob"): (("jobset.x-k8s.io", "JobSet"), ("batch", "Job")),
    ("ray.io", "RayJob"): (("ray.io", "RayCluster"),),
}


def kinds_to_follow(reserved: KindKey) -> tuple[KindKey, ...]:
    """The kind itself, the controllers under it, and pods."""
    return (reserved, *INTERMEDIATE.get(reserved, ()), POD)
