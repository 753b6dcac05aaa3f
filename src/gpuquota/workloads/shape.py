"""What an adapter reports about a workload: its pod templates with replica counts, and its deadline.

Adapters only know where a kind keeps its pods; everything else (GPU units, model, annotations) is read the same
way for every kind by ``extract``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Template:
    """``pods`` identical pods of one role, described by the PodSpec ``spec`` found at field path ``path``, with
    the pod template's ``annotations`` (schedulers such as KAI read GPU fractions from them).

    ``resources`` is set by kinds that state a pod's resources outside a PodSpec (TrainJob's ``resourcesPerNode``,
    a resources block); ``spec`` then only carries the nodeSelector/affinity that pick the model.
    """

    role: str
    pods: int
    spec: Mapping[str, Any]
    path: str
    resources: Mapping[str, Any] | None = None
    annotations: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Shape:
    """A workload as pods: every role's template, the runtime bound its own fields set, and the metadata whose
    annotations declare purpose, weights, base model and max runtime."""

    templates: tuple[Template, ...]
    deadline_s: float | None = None
    annotations: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


Adapter = Callable[[Mapping[str, Any]], Shape]
"""Reads one object of its kind; raises ``WorkloadError`` (path and problem) on malformed input."""
