"""A watched, cached view of the cluster's Namespaces: the tenant and jurisdiction labels an admin set on them.

The webhook reads the labels on every GPU admission, so they come from memory, never from an API call on the
request path. Only ``gpuquota.io/`` labels are kept: that is all tenancy reads, and it keeps 5,000 namespaces in a
few hundred kilobytes.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from gpuquota.kube.api import JsonObject, KubeApi, WatchEvent
from gpuquota.kube.health import WatchHealth
from gpuquota.kube.reflector import Backoff, Reflector

NAMESPACES_PATH: Final = "/api/v1/namespaces"
LABEL_PREFIX: Final = "gpuquota.io/"
_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})


def _labels(obj: JsonObject) -> Mapping[str, str]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    kept = {k: str(v) for k, v in labels.items() if isinstance(k, str) and k.startswith(LABEL_PREFIX)}
    return MappingProxyType(kept) if kept else _EMPTY


def _name(obj: JsonObject) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


class NamespaceCache:
    """Name → gpuquota labels. ``labels(ns)`` is ``None`` for a namespace the cache has not seen."""

    def __init__(self) -> None:
        self._labels: dict[str, Mapping[str, str]] = {}
        self._synced = threading.Event()

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def __len__(self) -> int:
        return len(self._labels)

    def labels(self, namespace: str) -> Mapping[str, str] | None:
        return self._labels.get(namespace)

    def replace(self, objects: list[JsonObject]) -> None:
        """The full list (``Store``): namespaces absent from it are dropped, deletions missed meanwhile included."""
        self._labels = {_name(o): _labels(o) for o in objects if _name(o) and o.get("kind", "Namespace") == "Namespace"}
        self._synced.set()

    def apply(self, event: WatchEvent) -> None:
        name = _name(event.object)
        if not name or event.object.get("kind", "Namespace") != "Namespace":
            return
        if event.type == "DELETED":
            self._labels.pop(name, None)
        elif event.type in ("ADDED", "MODIFIED"):
            self._labels[name] = _labels(event.object)

    def reflector(self, kube: KubeApi, *, health: WatchHealth | None = None, backoff_s: float = 1.0,
                  max_backoff_s: float = 30.0) -> Reflector:
        return Reflector(kube, NAMESPACES_PATH, self, name="namespaces", health=health,
                         backoff=Backoff(backoff_s, max_backoff_s))

    def run(self, kube: KubeApi, stop: threading.Event, backoff_s: float = 1.0, max_backoff_s: float = 30.0,
            health: WatchHealth | None = None) -> None:
        """List-and-watch until ``stop`` (``gpuquota.kube.reflector``: relist on 410, backoff with jitter)."""
        self.reflector(kube, health=health, backoff_s=backoff_s, max_backoff_s=max_backoff_s).run(stop)
