"""A watched, cached view of the cluster's Namespaces: the tenant and jurisdiction labels an admin set on them.

The webhook reads the labels on every GPU admission, so they come from memory, never from an API call on the
request path. Only ``gpuquota.io/`` labels are kept: that is all tenancy reads, and it keeps 5,000 namespaces in a
few hundred kilobytes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from gpuquota.kube import KubeApi, KubeError
from gpuquota.kube.api import JsonObject

log = logging.getLogger("gpuquota.admission.namespaces")

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
        self._labels = {_name(o): _labels(o) for o in objects if _name(o) and o.get("kind", "Namespace") == "Namespace"}
        self._synced.set()

    def apply(self, event_type: str, obj: JsonObject) -> None:
        name = _name(obj)
        if not name or obj.get("kind", "Namespace") != "Namespace":
            return
        if event_type == "DELETED":
            self._labels.pop(name, None)
        elif event_type in ("ADDED", "MODIFIED"):
            self._labels[name] = _labels(obj)

    def sync_once(self, kube: KubeApi, stop: threading.Event, *, watch_timeout_s: float = 300.0,
                  resync_s: float = 600.0, idle_wait_s: float = 1.0) -> None:
        """One list, then watches from its version until ``resync_s`` passes (or ``stop`` is set)."""
        listed = kube.list(NAMESPACES_PATH)
        self.replace(listed.items)
        version = listed.resource_version
        listed_at = time.monotonic()
        while not stop.is_set() and time.monotonic() - listed_at < resync_s:
            started, seen = time.monotonic(), 0
            for event in kube.watch(NAMESPACES_PATH, version, timeout_s=watch_timeout_s):
                version = str((event.object.get("metadata") or {}).get("resourceVersion") or version)
                if event.type != "BOOKMARK":
                    seen += 1
                    self.apply(event.type, event.object)
                if stop.is_set():
                    return
            if not seen and time.monotonic() - started < idle_wait_s:
                stop.wait(idle_wait_s)  # a server that ends watches at once must not make us spin

    def run(self, kube: KubeApi, stop: threading.Event, backoff_s: float = 1.0, max_backoff_s: float = 30.0) -> None:
        """List-and-watch until ``stop``; 410 Gone re-lists at once, other API errors back off exponentially."""
        delay = backoff_s
        while not stop.is_set():
            try:
                self.sync_once(kube, stop)
                delay = backoff_s
            except KubeError as exc:
                if exc.status == 410:
                    continue
                log.warning("namespace watch failed (%s); retrying in %.0f s", exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, max_backoff_s)
            except Exception:  # a watch thread must survive anything the API throws at it
                log.exception("namespace watch crashed; retrying in %.0f s", delay)
                stop.wait(delay)
                delay = min(delay * 2, max_backoff_s)
