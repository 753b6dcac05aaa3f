"""Which already-admitted workload an object (a pod, a JobSet's Job) belongs to.

Workload controllers create pods (and child Jobs) that come back through the webhook. Their GPUs were reserved when
the workload itself was admitted, so they must pass without a second reservation — but a tenant writes its own
pods and can forge an owner reference or a label. A candidate owner is therefore only a hint, read only for a
controller's request (``trust.Trust.controller_made``), and the ledger must hold an active reservation for it
(checked by the caller); otherwise the object is judged on its own.

Even a controller's object carries labels the tenant wrote: a controller copies its pod template's labels onto the
pods it makes, so a tenant's Deployment whose template says ``job-name: <an admitted job>`` gets pods from the
(trusted) ReplicaSet controller with that label. The one thing a template cannot forge is the object's controller
owner reference (``controller: true``): controllers set it themselves and do not copy one from a template. So a
label claim is believed only when it agrees with that reference — the controller is the kind the label's real
controller chain makes (a kind the webhook itself reviews, so the parent was judged when it was created) and its
name follows that controller's naming convention. Each kind module says which labels name it and which controllers
may carry them (``WorkloadKind.claims``); this module applies them all. Claims read from owner references themselves
are kept as they are (the caller still filters them to reviewed kinds and asks the ledger).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from gpuquota.boundedcache import BoundedCache, text_size
from gpuquota.workloads.claims import OwnerRef
from gpuquota.workloads.registry import CLAIMS_BY_LABEL, api_group

__all__ = ["OwnerCache", "OwnerRef", "candidate_owners", "controller_ref"]


def _owner_refs(obj: Mapping[str, Any]) -> tuple[list[OwnerRef], OwnerRef | None]:
    """The object's owner references, and the first with ``controller: true``."""
    found: list[OwnerRef] = []
    controller: OwnerRef | None = None
    refs = (obj.get("metadata") or {}).get("ownerReferences")
    if isinstance(refs, list):
        for ref in refs:
            if isinstance(ref, dict) and ref.get("kind") and ref.get("name"):
                owner = OwnerRef(api_group(str(ref.get("apiVersion", ""))), str(ref["kind"]), str(ref["name"]),
                                 str(ref.get("uid") or ""))
                found.append(owner)
                if ref.get("controller") is True and controller is None:
                    controller = owner
    return found, controller


def controller_ref(obj: Mapping[str, Any]) -> OwnerRef | None:
    """The object's controller owner reference (``controller: true``), if any."""
    return _owner_refs(obj)[1]


def candidate_owners(obj: Mapping[str, Any]) -> tuple[OwnerRef, ...]:
    """Owner references first (they carry a uid), then the controller labels that agree with the object's controller
    reference (none without one); duplicates dropped, order kept. A LeaderWorkerSet claim carries the StatefulSet it
    rests on in ``via``: it holds only once that StatefulSet's own owner is checked."""
    found, controller = _owner_refs(obj)
    labels = (obj.get("metadata") or {}).get("labels")
    if controller is not None and isinstance(labels, dict):
        for label, entries in CLAIMS_BY_LABEL:
            value = labels.get(label)
            if not isinstance(value, str) or not value:
                continue
            for kind, label_claim in entries:
                claim = label_claim.claim(kind.group, kind.kind, value, labels, controller)
                if claim is not None:
                    found.append(claim)
    seen: set[tuple[str, str, str]] = set()
    unique: list[OwnerRef] = []
    for ref in found:
        if (ref.kind, ref.name, ref.uid) not in seen:
            seen.add((ref.kind, ref.name, ref.uid))
            unique.append(ref)
    return tuple(unique)


class OwnerCache:
    """Remembers ledger answers about owners so a burst of pods from one workload costs one ledger read.

    Positive answers live ``ttl_s``; negative ones a shorter ``negative_ttl_s`` (an owner is admitted before its
    controller creates pods, so a miss is almost always a forged or foreign owner). ``forget`` drops a workload at
    once when this replica sees it deleted; other replicas notice within the TTL.
    """

    def __init__(self, ttl_s: float = 30.0, negative_ttl_s: float = 2.0, max_entries: int = 50_000,
                 max_bytes: int = 32 * 1024 * 1024) -> None:
        self.cache = BoundedCache[tuple[str, str, str, str], tuple[float, bool]](
            "owners", max_entries=max_entries, max_bytes=max_bytes, size=lambda key, _: text_size(*key))
        self._ttl = ttl_s
        self._negative_ttl = negative_ttl_s

    def get(self, namespace: str, ref: OwnerRef) -> bool | None:
        entry = self.cache.get((namespace, ref.kind, ref.name, ref.uid))
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, namespace: str, ref: OwnerRef, active: bool) -> None:
        expires = time.monotonic() + (self._ttl if active else self._negative_ttl)
        self.cache.put((namespace, ref.kind, ref.name, ref.uid), (expires, active))

    def forget(self, namespace: str, kind: str, name: str) -> None:
        self.cache.discard_where(lambda k: k[0] == namespace and k[1] == kind and k[2] == name)
