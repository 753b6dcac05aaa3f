"""The workload kinds gpuquota enforces, and every table derived from them.

``KINDS`` is the single list; the adapters extraction dispatches on, ``SUPPORTED_KINDS``, the owner claims the
webhook believes (``LABEL_CLAIMS``), the ``/scale`` paths (``gpuquota.workloads.scale``), the reconciler's resources
(``gpuquota.reconcile.resources``) and the chart's kind list (``chart_kinds``, written to
``helm/gpuquota/files/workload-kinds.yaml`` by ``scripts/generate-chart-kinds``) all come from it. Order is the
chart's order (and the order label claims are tried in).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuquota.workloads.claims import LabelClaim
from gpuquota.workloads.kind import KindKey, Resolver, WorkloadKind
from gpuquota.workloads.kinds import (
    cronjob,
    job,
    jobset,
    kubeflow,
    lws,
    mpijob,
    pod,
    raycluster,
    rayjob,
    rayservice,
    trainjob,
    volcanojob,
)
from gpuquota.workloads.shape import Adapter

KINDS: tuple[WorkloadKind, ...] = (
    pod.KIND,
    job.KIND,
    cronjob.KIND,
    jobset.KIND,
    *kubeflow.KINDS,
    mpijob.KIND,
    trainjob.KIND,
    raycluster.KIND,
    rayjob.KIND,
    rayservice.KIND,
    lws.KIND,
    volcanojob.KIND,
)

BY_KEY: Mapping[KindKey, WorkloadKind] = {k.key: k for k in KINDS}
if len(BY_KEY) != len(KINDS):
    raise ImportError("gpuquota.workloads.registry: a workload kind is listed twice")

ADAPTERS: Mapping[KindKey, Adapter] = {k.key: k.read for k in KINDS}

RESOLVERS: Mapping[KindKey, Resolver] = {k.key: k.resolve for k in KINDS if k.resolve is not None}
"""The kinds whose pods other objects describe (a TrainJob's runtime): their readers given those objects."""

REFERENCED: frozenset[KindKey] = frozenset((r.group, r.kind) for k in KINDS for r in k.reads)
"""The kinds of the objects those readers read (TrainingRuntime, ClusterTrainingRuntime): not workloads."""

SUPPORTED_KINDS: frozenset[KindKey] = frozenset(BY_KEY)
"""(apiGroup, kind) pairs extraction understands; ``""`` is the core group (Pod)."""

LABEL_CLAIMS: tuple[tuple[WorkloadKind, LabelClaim], ...] = tuple((k, claim) for k in KINDS for claim in k.claims)
"""Every kind's owner claims, in registry order."""

CLAIMS_BY_LABEL: tuple[tuple[str, tuple[tuple[WorkloadKind, LabelClaim], ...]], ...] = tuple(
    (label, tuple(entry for entry in LABEL_CLAIMS if entry[1].label == label))
    for label in dict.fromkeys(claim.label for _, claim in LABEL_CLAIMS)
)
"""The same, grouped by the label they read (each label is looked up once per object), in registry order."""


def api_group(api_version: str) -> str:
    """``batch/v1`` → ``batch``; ``v1`` → ``""`` (the core group)."""
    group, slash, _ = api_version.rpartition("/")
    return group if slash else ""


def resolves(obj: Mapping[str, Any]) -> bool:
    """Whether ``obj`` is of a kind whose demand reads other objects (so judging it may call the API server)."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    return isinstance(api_version, str) and isinstance(kind, str) and (api_group(api_version), kind) in RESOLVERS


def chart_kinds() -> list[dict[str, Any]]:
    """The chart's kind list (``gpuquota.workloadKinds``), one entry per kind."""
    return [k.chart() for k in KINDS]
