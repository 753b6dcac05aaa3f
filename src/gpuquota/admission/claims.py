"""Watched views of the cluster's DRA ResourceClaimTemplates and ResourceClaims, for counting a pod's claims.

A pod names its claims; their device requests live in those objects. The webhook reads them from memory, never
from an API call on the request path. Only what counting needs is kept (kind, name, namespace, the claim spec).
A claim not (yet) in the view counts conservatively (``workloads.dra``): a full node of the strongest GPUs.
On a cluster that does not serve ``resource.k8s.io/v1`` the lists fail and are retried with backoff; nothing
waits for them (they report to no ``WatchHealth``: readiness does not depend on DRA being served).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Final

from gpuquota.kube import KubeApi
from gpuquota.kube.api import JsonObject, WatchEvent
from gpuquota.kube.reflector import Reflector
from gpuquota.workloads.dra import CLAIM, CLAIM_TEMPLATE

RESOURCE_API: Final = "/apis/resource.k8s.io/v1"

_Key = tuple[str, str]


def _key(obj: JsonObject) -> _Key:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def _kept(obj: JsonObject, kind: str) -> JsonObject:
    namespace, name = _key(obj)
    return {"apiVersion": "resource.k8s.io/v1", "kind": kind, "metadata": {"namespace": namespace, "name": name},
            "spec": obj.get("spec") or {}}


class _ClaimView:
    """One kind's objects by (namespace, name): a ``Reflector`` store."""

    def __init__(self, kind: str, plural: str) -> None:
        self.kind, self.path = kind, f"{RESOURCE_API}/{plural}"
        self._objects: dict[_Key, JsonObject] = {}

    def get(self, namespace: str, name: str) -> JsonObject | None:
        return self._objects.get((namespace, name))

    def replace(self, objects: list[JsonObject]) -> None:
        self._objects = {_key(o): _kept(o, self.kind) for o in objects if _key(o)[1]}

    def apply(self, event: WatchEvent) -> None:
        key = _key(event.object)
        if not key[1]:
            return
        if event.type == "DELETED":
            self._objects.pop(key, None)
        elif event.type in ("ADDED", "MODIFIED"):
            self._objects[key] = _kept(event.object, self.kind)


class ClaimCache:
    """Both views behind ``workloads.dra.ClaimSource``."""

    def __init__(self) -> None:
        self.views = {CLAIM_TEMPLATE: _ClaimView(CLAIM_TEMPLATE, "resourceclaimtemplates"),
                      CLAIM: _ClaimView(CLAIM, "resourceclaims")}

    def claim_object(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        view = self.views.get(kind)
        return None if view is None else view.get(namespace, name)

    def start(self, kube: KubeApi, stop: threading.Event) -> None:
        for kind, view in self.views.items():
            reflector = Reflector(kube, view.path, view, name=kind.lower())
            threading.Thread(target=reflector.run, args=(stop,), name=f"{kind}-watch", daemon=True).start()
