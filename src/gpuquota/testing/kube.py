"""An in-memory API server holding recorded objects, for tests of the agent, reconciler and caches."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from typing import Any

from gpuquota.kube.api import JsonObject, KubeError, ObjectList, WatchEvent


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386 JSON merge patch, in place: ``None`` deletes a key, mappings merge, anything else replaces.

    Public so the HTTP test API server applies merge patches exactly as ``FakeKube`` does."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def json_patch_op(target: dict[str, Any], op: dict[str, Any]) -> None:
    """One RFC 6902 ``test``, ``add`` or ``replace`` on ``target``; a failed test is the API server's 422."""
    *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in op["path"].split("/")[1:]]
    node: Any = target
    try:
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) else last
        if op["op"] == "test":
            if node[key] != op["value"]:
                raise KubeError(422, f"test of {op['path']} failed")
        elif op["op"] in ("add", "replace"):
            node[key] = copy.deepcopy(op["value"])
        else:
            raise KubeError(422, f"FakeKube does not do JSON patch op {op['op']}")
    except (KeyError, IndexError, ValueError, TypeError):
        raise KubeError(422, f"JSON patch path {op['path']} does not exist") from None


def _matches(obj: JsonObject, label_selector: str | None) -> bool:
    if not label_selector:
        return True
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in label_selector.split(","):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class FakeKube:
    """Objects keyed by their full path (``/api/v1/nodes/n1``); a collection path lists its children.

    Every change bumps a global resource version and is kept in an event log that ``watch`` replays, so
    watch-with-resync logic meets the same ordering a real server gives. ``create`` and ``replace`` check names and
    resource versions as the API server does (409 on a duplicate or a stale version), so optimistic-concurrency
    code such as leader election meets real conflicts. ``fail_next`` injects API errors.
    """

    def __init__(self) -> None:
        self._objects: dict[str, JsonObject] = {}
        self._events: list[tuple[int, str, WatchEvent]] = []
        self._version = 0
        self._lock = threading.Lock()
        self.patches: list[tuple[str, JsonObject, str]] = []
        self.errors: list[KubeError] = []

    def fail_next(self, *errors: KubeError) -> None:
        self.errors.extend(errors)

    def _maybe_fail(self) -> None:
        if self.errors:
            raise self.errors.pop(0)

    def _bump(self, path: str, kind: str, obj: JsonObject) -> None:
        self._version += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self._version)
        self._events.append((self._version, path, WatchEvent(kind, copy.deepcopy(obj))))  # type: ignore[arg-type]

    def put(self, path: str, obj: JsonObject) -> None:
        """Create or replace an object (the test's hand on the cluster)."""
        with self._lock:
            kind = "MODIFIED" if path in self._objects else "ADDED"
            stored = copy.deepcopy(obj)
            self._objects[path] = stored
            self._bump(path, kind, stored)

    def delete(self, path: str) -> None:
        with self._lock:
            obj = self._objects.pop(path, None)
            if obj is not None:
                self._bump(path, "DELETED", obj)

    def get(self, path: str) -> JsonObject | None:
        with self._lock:
            self._maybe_fail()
            obj = self._objects.get(path)
            return copy.deepcopy(obj) if obj is not None else None

    def _children(self, collection: str) -> list[str]:
        prefix = collection.rstrip("/") + "/"
        return [p for p in self._objects if p.startswith(prefix) and "/" not in p[len(prefix) :]]

    def list(self, path: str, label_selector: str | None = None) -> ObjectList:
        with self._lock:
            self._maybe_fail()
            items = [copy.deepcopy(self._objects[p]) for p in sorted(self._children(path))]
            return ObjectList([o for o in items if _matches(o, label_selector)], str(self._version))

    def watch(self, path: str, resource_version: str, timeout_s: float = 300.0) -> Iterator[WatchEvent]:
        with self._lock:
            self._maybe_fail()
            since = int(resource_version or 0)
            if self._events and since < self._events[0][0] - 1:
                raise KubeError(410, "too old resource version")
            prefix = path.rstrip("/") + "/"
            pending = [
                ev
                for version, p, ev in self._events
                if version > since and p.startswith(prefix) and "/" not in p[len(prefix) :]
            ]
        yield from pending

    def compact(self) -> None:
        """Forget the event log (as etcd compaction does): older watches get 410 Gone."""
        with self._lock:
            self._events = self._events[-1:] if self._events else []

    def patch(self, path: str, body: JsonObject, patch_type: str = "merge") -> JsonObject:
        """A merge patch, or a JSON patch of ``test``/``add``/``replace`` operations (``body["ops"]``). A
        ``…/status`` path patches the object itself (the status subresource)."""
        with self._lock:
            self._maybe_fail()
            target = path.removesuffix("/status") if path not in self._objects else path
            obj = self._objects.get(target)
            if obj is None:
                raise KubeError(404, f"{path} not found")
            if patch_type not in ("merge", "json"):
                raise KubeError(415, f"FakeKube supports merge and json patches only, not {patch_type}")
            self.patches.append((path, copy.deepcopy(body), patch_type))
            if patch_type == "merge":
                merge_patch(obj, body)
            else:
                patched = copy.deepcopy(obj)
                for op in body["ops"]:
                    json_patch_op(patched, op)
                obj.clear()
                obj.update(patched)
            self._bump(target, "MODIFIED", obj)
            return copy.deepcopy(obj)

    def create(self, path: str, body: JsonObject) -> JsonObject:
        name = (body.get("metadata") or {}).get("name")
        if not name:
            raise KubeError(422, f"POST {path}: metadata.name is required")
        with self._lock:
            self._maybe_fail()
            target = f"{path.rstrip('/')}/{name}"
            if target in self._objects:
                raise KubeError(409, f"{target} already exists")
            stored = copy.deepcopy(body)
            stored["metadata"].pop("resourceVersion", None)
            self._objects[target] = stored
            self._bump(target, "ADDED", stored)
            return copy.deepcopy(stored)

    def replace(self, path: str, body: JsonObject) -> JsonObject:
        with self._lock:
            self._maybe_fail()
            current = self._objects.get(path)
            if current is None:
                raise KubeError(404, f"{path} not found")
            expected = (body.get("metadata") or {}).get("resourceVersion")
            if expected and expected != current["metadata"]["resourceVersion"]:
                raise KubeError(409, f"{path}: the object has been modified; please apply your changes to the latest "
                                     "version and try again")  # fmt: skip
            stored = copy.deepcopy(body)
            self._objects[path] = stored
            self._bump(path, "MODIFIED", stored)
            return copy.deepcopy(stored)
