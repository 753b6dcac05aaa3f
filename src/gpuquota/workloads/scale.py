"""The ``/scale`` subresource: which workload kinds have one, and the parent a Scale request would leave behind.

``kubectl scale``, an HPA or KEDA change a workload through ``<resource>/scale``: the API server reviews an
``autoscaling/v1 Scale`` (``spec.replicas`` only) and writes that number to the parent at the CRD's
``specReplicasPath``. The Scale names no GPUs, so the webhook judges the parent with that one field set, exactly
like an UPDATE of the parent. Each kind module names its path (``WorkloadKind.scale``, that of the project's own CRD;
see docs/workloads.md, "Scale subresources"); kinds without one have no scale subresource, so they cannot be scaled
that way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuquota.workloads.errors import WorkloadError
from gpuquota.workloads.fields import integer, mapping, type_name
from gpuquota.workloads.registry import KINDS

SCALE_SUBRESOURCES: Mapping[tuple[str, str], tuple[str, ...]] = {k.key: k.scale for k in KINDS if k.scale is not None}
"""(apiGroup, kind) → the parent's field ``Scale.spec.replicas`` maps to (the CRD's ``specReplicasPath``)."""


def scale_replicas(scale: Mapping[str, Any] | None, field: str) -> int:
    """``spec.replicas`` of a Scale object; absent means 0 (the API server omits a zero ``replicas``)."""
    if scale is None:
        return 0
    spec = mapping(scale, "spec", f"{field}.spec")
    value = spec.get("replicas")
    return 0 if value is None else integer(value, f"{field}.spec.replicas")


def with_replicas(parent: Mapping[str, Any], path: tuple[str, ...], replicas: int) -> dict[str, Any]:
    """A copy of ``parent`` with the field at ``path`` set to ``replicas``: the object the Scale write leaves.

    Only the mappings along ``path`` are copied (the pod templates are shared with ``parent``, never written).
    A missing mapping on the way is created, as the API server does when it sets ``specReplicasPath``.
    """
    out = dict(parent)
    node = out
    for depth, key in enumerate(path[:-1]):
        where = ".".join(path[: depth + 1])
        child = node.get(key)
        if child is None:
            child = {}
        elif not isinstance(child, Mapping):
            raise WorkloadError(f"must be a mapping, got {type_name(child)}", path=where)
        child = dict(child)
        node[key] = child
        node = child
    node[path[-1]] = replicas
    return out
