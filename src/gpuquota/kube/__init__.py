"""Kubernetes API access behind one small interface, so the agent, the reconciler and the webhook's caches are
tested with recorded API objects (``gpuquota.testing.FakeKube``) and run in a cluster with the real client.
Configuration and credentials come from the official ``kubernetes`` package (``gpuquota.kube.config``); every cache
follows the API through one list-and-watch loop (``gpuquota.kube.reflector``)."""

from gpuquota.kube.api import KubeApi, ObjectList, WatchEvent
from gpuquota.kube.client import KubeClient
from gpuquota.kube.config import KubeConfigError, KubeSource
from gpuquota.kube.errors import (
    AccessDeniedError,
    ConflictError,
    ForbiddenError,
    GoneError,
    KubeError,
    NotFoundError,
    TransportError,
    UnauthorizedError,
)
from gpuquota.kube.leader import ElectionTiming, LeaderElector

__all__ = [
    "AccessDeniedError",
    "ConflictError",
    "ElectionTiming",
    "ForbiddenError",
    "GoneError",
    "KubeApi",
    "KubeClient",
    "KubeConfigError",
    "KubeError",
    "KubeSource",
    "LeaderElector",
    "NotFoundError",
    "ObjectList",
    "TransportError",
    "UnauthorizedError",
    "WatchEvent",
]
