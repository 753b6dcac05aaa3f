"""Objects a workload's pods depend on without the workload containing them: a TrainJob's training runtime.

A kind whose demand needs such an object names what it reads (``ReadResource``, also the chart's RBAC) and, for one
object, which one (``Reference``); a ``ReferenceSource`` hands it over. Two sources, two rules:

- the webhook reads through the API server (``gpuquota.admission.references``) and must not guess: an object it
  cannot read (missing, forbidden, the API server down) raises ``UnreadableError`` and the workload is refused, saying
  what is missing and what to do;
- ``gpuquota check`` reads the manifests it is given (``ManifestObjects``): an object not among them is ``None``,
  and the kind counts conservatively, with a warning, or raises ``UnreadableError`` when it cannot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ReadResource:
    """A resource a kind's demand reads (``get`` by name): its API group, version, kind and plural."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    def chart(self) -> dict[str, str]:
        """The chart's spelling (its RBAC rule): ``{group, resource}``."""
        return {"group": self.group, "resource": self.plural}


@dataclass(frozen=True, slots=True)
class Reference:
    """One object of ``resource``, named by the workload's field ``field``; ``namespace`` is ``""`` when the
    resource is cluster-scoped."""

    resource: ReadResource
    namespace: str
    name: str
    field: str

    @property
    def path(self) -> str:
        """The object's API path."""
        r = self.resource
        where = f"/namespaces/{self.namespace}" if r.namespaced else ""
        return f"/apis/{r.group}/{r.version}{where}/{r.plural}/{self.name}"

    def __str__(self) -> str:
        shown = f"{self.namespace}/{self.name}" if self.resource.namespaced else self.name
        return f"{self.resource.kind} {shown}"


class UnreadableError(Exception):
    """The object ``ref`` names cannot be read where counting must not guess: the workload is refused.

    ``problem`` says what is wrong with the read, ``remedy`` what to do; ``missing``: the object does not exist (the
    tenant can fix it), rather than being unreadable to gpuquota (an admin or a retry can)."""

    def __init__(self, ref: Reference, problem: str, remedy: str, *, missing: bool = False) -> None:
        super().__init__(f"{ref} (named by {ref.field}) {problem}; {remedy}")
        self.ref = ref
        self.problem = problem
        self.remedy = remedy
        self.missing = missing


class ReferenceSource(Protocol):
    """Where referenced objects are read from."""

    def referenced(self, ref: Reference) -> Mapping[str, Any] | None:
        """The object ``ref`` names; ``None`` when this source does not hold it and the kind may count without it
        (conservatively, with a warning). Raises ``UnreadableError`` where it must not (the webhook)."""
        ...


class ManifestObjects:
    """Objects found among a set of manifests (``gpuquota check``), by group, kind, namespace and name.

    A namespaced object without a namespace is taken to be in ``default_namespace`` (``check --namespace``), as a
    workload without one is; a cluster-scoped one matches whatever namespace its manifest carries."""

    def __init__(self, objects: Sequence[Mapping[str, Any]], default_namespace: str = "") -> None:
        self._default = default_namespace
        self._objects: dict[tuple[str, str, str, str], Mapping[str, Any]] = {}
        for obj in objects:
            metadata = obj.get("metadata")
            if not isinstance(metadata, Mapping):
                continue
            group = str(obj.get("apiVersion") or "").rpartition("/")[0]
            namespace = str(metadata.get("namespace") or default_namespace)
            self._objects[(group, str(obj.get("kind") or ""), namespace, str(metadata.get("name") or ""))] = obj
            self._objects.setdefault((group, str(obj.get("kind") or ""), "", str(metadata.get("name") or "")), obj)

    def referenced(self, ref: Reference) -> Mapping[str, Any] | None:
        namespace = (ref.namespace or self._default) if ref.resource.namespaced else ""
        return self._objects.get((ref.resource.group, ref.resource.kind, namespace, ref.name))
