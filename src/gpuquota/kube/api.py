"""The slice of the Kubernetes API gpuquota uses: get, list, watch, patch, create and replace by REST path.

Paths are the API server's own (``/api/v1/nodes``, ``/apis/batch/v1/namespaces/ns/jobs``), so the interface
needs no per-kind code and a recorded object can be replayed as it came from a real cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from gpuquota.kube.errors import KubeError

__all__ = ["JsonObject", "KubeApi", "KubeError", "ObjectList", "WatchEvent"]

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ObjectList:
    items: list[JsonObject]
    resource_version: str


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]
    object: JsonObject


class KubeApi(Protocol):
    def get(self, path: str) -> JsonObject | None:
        """The object at ``path``, or ``None`` when it does not exist (404)."""
        ...

    def list(self, path: str, label_selector: str | None = None) -> ObjectList: ...

    def watch(self, path: str, resource_version: str, timeout_s: float = 300.0) -> Iterator[WatchEvent]:
        """Events after ``resource_version`` until the server ends the watch or ``timeout_s`` passes.
        A 410 Gone (too old a version) raises ``GoneError``: the caller lists again (as ``gpuquota.kube.reflector``
        does)."""
        ...

    def patch(self, path: str, body: JsonObject, patch_type: str = "merge") -> JsonObject:
        """Apply a ``merge`` (RFC 7386) or ``json`` (RFC 6902, ``body`` = {"ops": [...]}) patch."""
        ...

    def create(self, path: str, body: JsonObject) -> JsonObject:
        """POST ``body`` to the collection ``path``; the created object as stored (with its resourceVersion).
        ``KubeError(409, …)`` when an object of that name already exists."""
        ...

    def replace(self, path: str, body: JsonObject) -> JsonObject:
        """PUT ``body`` at the object ``path``. With ``metadata.resourceVersion`` set this is an optimistic-concurrency
        update: ``KubeError(409, …)`` when the object changed since that version; 404 when it is gone."""
        ...

    def delete(self, path: str) -> None:
        """DELETE the object at ``path`` (background propagation: its dependents go after it). One already gone
        (404) is no error."""
        ...
