"""Whether a StatefulSet really belongs to a LeaderWorkerSet: the ownership chain, read back from the API server.

A LeaderWorkerSet's pods are made by StatefulSets, a kind gpuquota does not review, so the pod's own controller
reference only names a StatefulSet — which a tenant can create under any free name. The LWS controller builds a
chain a tenant cannot forge on objects it did not make (kubernetes-sigs/lws, ``leaderworkerset_controller.go`` and
``pod_controller.go``):

- the leader StatefulSet is named ``<lws>`` and is controlled by the LeaderWorkerSet
  (``leaderworkerset.x-k8s.io/v1``, kind ``LeaderWorkerSet``);
- each group's worker StatefulSet is named after the group's leader pod, ``<lws>-<groupIndex>``, and is controlled by
  that Pod (``v1``, kind ``Pod``, with the pod's uid); the leader pod in turn is controlled by the leader StatefulSet.

So an LWS claim resting on a StatefulSet is believed only when those references, read from the API server, line up
with matching uids — and a worker group's index lies inside the leader StatefulSet's replicas (a tenant's pod named
``<lws>-<n>`` for an unused index cannot pass). Any failure to read counts as "not verified": the pod is judged on
its own (over-count, never under-count).

Positive answers are cached per (namespace, StatefulSet name, uid) so a burst of a group's pods costs one read; a
StatefulSet re-created under the same name has a new uid and is verified afresh. Negative answers are not cached
(the pod is counted, and the ledger path it takes is the slow one anyway).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from gpuquota.admission.owners import OwnerRef, controller_ref
from gpuquota.boundedcache import BoundedCache, text_size
from gpuquota.errors import UserError
from gpuquota.kube import KubeApi, KubeError

log = logging.getLogger("gpuquota.admission")

LWS_GROUP: Final = "leaderworkerset.x-k8s.io"
LWS_KIND: Final = "LeaderWorkerSet"


def statefulset_path(namespace: str, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}"


def pod_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{name}"


def _uid(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def _replicas(sts: Mapping[str, Any]) -> int:
    replicas = (sts.get("spec") or {}).get("replicas", 1)  # the API server defaults an omitted replicas to 1
    return replicas if isinstance(replicas, int) and not isinstance(replicas, bool) else 0


def leader_statefulset_ok(sts: Mapping[str, Any], lws: str) -> bool:
    """The leader StatefulSet ``<lws>`` is controlled by the LeaderWorkerSet ``<lws>``."""
    owner = controller_ref(sts)
    return owner is not None and (owner.group, owner.kind, owner.name) == (LWS_GROUP, LWS_KIND, lws)


def worker_statefulset_leader(sts: Mapping[str, Any], name: str) -> OwnerRef | None:
    """The leader Pod a worker StatefulSet ``name`` is controlled by (named like it), or None."""
    owner = controller_ref(sts)
    if owner is None or (owner.group, owner.kind, owner.name) != ("", "Pod", name) or not owner.uid:
        return None
    return owner


def leader_pod_statefulset(pod: Mapping[str, Any], leader: OwnerRef, lws: str) -> OwnerRef | None:
    """The leader StatefulSet ``<lws>`` that the pod ``leader`` (same uid) is controlled by, or None."""
    if _uid(pod) != leader.uid:
        return None
    owner = controller_ref(pod)
    if owner is None or (owner.group, owner.kind, owner.name) != ("apps", "StatefulSet", lws) or not owner.uid:
        return None
    return owner


@dataclass(frozen=True, slots=True)
class _Verified:
    expires: float
    replicas: int  # a leader StatefulSet's replicas when it was read (0 for a worker StatefulSet)


class LwsStatefulSets:
    """Verifies that a StatefulSet a pod's LWS claim rests on belongs to that LeaderWorkerSet. Thread-safe.

    ``kube`` None (``--kube none``): nothing is ever verified. ``on_error`` is called once per failed read.
    """

    def __init__(self, kube: KubeApi | None, *, ttl_s: float = 30.0, max_entries: int = 10_000,
                 max_bytes: int = 8 * 1024 * 1024, on_error: Callable[[], None] = lambda: None) -> None:
        self.kube = kube
        self._ttl = ttl_s
        self._on_error = on_error
        self.cache = BoundedCache[tuple[str, str, str], _Verified](
            "lws_statefulsets", max_entries=max_entries, max_bytes=max_bytes, size=lambda key, _: text_size(*key))

    def cached(self, namespace: str, claim: OwnerRef) -> bool:
        """Whether the claim's StatefulSet is already known to belong to the claimed LWS (no I/O)."""
        sts = claim.via
        return sts is not None and self._cached(namespace, sts) is not None

    def verify(self, namespace: str, claim: OwnerRef) -> bool:
        """Whether the LWS ``claim`` holds through its StatefulSet ``claim.via``; reads the API server on a miss."""
        sts = claim.via
        if sts is None or self.kube is None or (sts.group, sts.kind) != ("apps", "StatefulSet") or not sts.uid:
            return False
        if self._cached(namespace, sts) is not None:
            return True
        lws = claim.name
        if sts.name == lws:
            return self._leader(namespace, lws, sts.uid, min_replicas=0)
        index = sts.name[len(lws) + 1:] if sts.name.startswith(lws + "-") else ""
        if not index.isdigit():
            return False
        return self._worker(namespace, lws, sts, int(index))

    def _leader(self, namespace: str, lws: str, uid: str, *, min_replicas: int) -> bool:
        """The leader StatefulSet ``<lws>`` with ``uid`` is the LWS's and runs more than ``min_replicas`` groups."""
        known = self._cached(namespace, OwnerRef("apps", "StatefulSet", lws, uid))
        if known is not None and known.replicas > min_replicas:
            return True
        obj = self._get(statefulset_path(namespace, lws))  # unknown, or a scale-up since it was read
        if obj is None or _uid(obj) != uid or not leader_statefulset_ok(obj, lws):
            return False
        replicas = _replicas(obj)
        self._put(namespace, lws, uid, replicas)
        return replicas > min_replicas

    def _worker(self, namespace: str, lws: str, sts: OwnerRef, index: int) -> bool:
        obj = self._get(statefulset_path(namespace, sts.name))
        if obj is None or _uid(obj) != sts.uid:
            return False
        leader_pod = worker_statefulset_leader(obj, sts.name)
        if leader_pod is None:
            return False
        pod = self._get(pod_path(namespace, leader_pod.name))
        leader_sts = leader_pod_statefulset(pod, leader_pod, lws) if pod is not None else None
        # the group must be one the LWS runs: index < the leader StatefulSet's replicas
        if leader_sts is None or not self._leader(namespace, lws, leader_sts.uid, min_replicas=index):
            return False
        self._put(namespace, sts.name, sts.uid, 0)
        return True

    def _get(self, path: str) -> Mapping[str, Any] | None:
        assert self.kube is not None
        try:
            return self.kube.get(path)
        except (KubeError, UserError) as exc:  # UserError: the client's credentials (token file) are unreadable
            log.error("cannot read %s to verify a LeaderWorkerSet pod's owner (the pod is counted): %s", path, exc)
            self._on_error()
            return None

    def _cached(self, namespace: str, sts: OwnerRef) -> _Verified | None:
        entry = self.cache.get((namespace, sts.name, sts.uid))
        if entry is None or entry.expires < time.monotonic():
            return None
        return entry

    def _put(self, namespace: str, name: str, uid: str, replicas: int) -> None:
        self.cache.put((namespace, name, uid), _Verified(time.monotonic() + self._ttl, replicas))
