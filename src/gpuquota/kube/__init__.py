"""Kubernetes API access behind one small interface, so the agent, the reconciler and the webhook's caches are
tested with recorded API objects (``FakeKube``) and run in a cluster with the real client."""

from gpuquota.kube.api import KubeApi, KubeError, ObjectList, WatchEvent
from gpuquota.kube.client import KubeClient, KubeConfigError
from gpuquota.kube.fake import FakeKube
from gpuquota.kube.leader import ElectionTiming, LeaderElector

__all__ = [
    "ElectionTiming",
    "FakeKube",
    "KubeApi",
    "KubeClient",
    "KubeConfigError",
    "KubeError",
    "LeaderElector",
    "ObjectList",
    "WatchEvent",
]
