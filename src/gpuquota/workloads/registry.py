"""Adapters by (apiGroup, kind): the single list of workload kinds the enforcer reads.

The webhook's rules and the Helm chart's ValidatingWebhookConfiguration are generated from ``SUPPORTED_KINDS``,
so adding an adapter here is all it takes to enforce a new kind.
"""

from __future__ import annotations

from collections.abc import Mapping

from gpuquota.workloads.kinds import core, jobset, kubeflow, lws, ray, trainjob
from gpuquota.workloads.shape import Adapter

ADAPTERS: Mapping[tuple[str, str], Adapter] = {
    **core.ADAPTERS,
    **jobset.ADAPTERS,
    **kubeflow.ADAPTERS,
    **trainjob.ADAPTERS,
    **ray.ADAPTERS,
    **lws.ADAPTERS,
}

SUPPORTED_KINDS: frozenset[tuple[str, str]] = frozenset(ADAPTERS)
"""(apiGroup, kind) pairs extraction understands; ``""`` is the core group (Pod)."""


def api_group(api_version: str) -> str:
    """``batch/v1`` → ``batch``; ``v1`` → ``""`` (the core group)."""
    group, slash, _ = api_version.rpartition("/")
    return group if slash else ""
