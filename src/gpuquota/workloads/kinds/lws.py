"""LeaderWorkerSet (leaderworkerset.x-k8s.io): ``replicas`` groups of ``size`` pods, one leader each.

The leader uses ``leaderTemplate`` when set, else the worker template. A rolling update may run ``maxSurge``
extra groups beside the old ones, so they are counted too (never under-count).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from gpuquota.workloads.errors import WorkloadError
from gpuquota.workloads.fields import MAX_PODS, count, integer, mapping, type_name
from gpuquota.workloads.kinds.common import metadata_annotations
from gpuquota.workloads.shape import Adapter, Shape, Template

_PERCENT = re.compile(r"^(\d+)%$")


def _surge(value: object, replicas: int, path: str) -> int:
    """``maxSurge`` as groups: an integer, or a percentage of ``replicas`` rounded up (as the controller does)."""
    if value is None:
        return 0
    if isinstance(value, str):
        match = _PERCENT.match(value.strip())
        if match is None:
            raise WorkloadError(f"{value!r} is neither a whole number nor a percentage", path=path)
        return math.ceil(replicas * int(match.group(1)) / 100)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WorkloadError(f"must be a whole number or a percentage, got {type_name(value)}", path=path)
    return integer(value, path)


def leaderworkerset(obj: Mapping[str, Any]) -> Shape:
    spec = mapping(obj, "spec", "spec", required=True)
    replicas = count(spec, "replicas", "spec.replicas", 1)
    lwt = mapping(spec, "leaderWorkerTemplate", "spec.leaderWorkerTemplate", required=True)
    path = "spec.leaderWorkerTemplate"
    size = count(lwt, "size", f"{path}.size", 1)
    if size < 1:
        raise WorkloadError("must be at least 1 (the leader)", path=f"{path}.size")
    rollout = mapping(
        mapping(spec, "rolloutStrategy", "spec.rolloutStrategy"),
        "rollingUpdateConfiguration",
        "spec.rolloutStrategy.rollingUpdateConfiguration",
    )
    surge_path = "spec.rolloutStrategy.rollingUpdateConfiguration.maxSurge"
    surge = _surge(rollout.get("maxSurge"), replicas, surge_path)
    groups = replicas + surge if replicas else 0  # nothing to roll when there are no replicas
    if groups * size > MAX_PODS:
        raise WorkloadError(
            f"{groups} groups × {size} pods is {groups * size:,} pods; more than {MAX_PODS:,} is not accepted",
            path="spec.replicas",
        )
    worker = mapping(
        mapping(lwt, "workerTemplate", f"{path}.workerTemplate", required=True), "spec", f"{path}.workerTemplate.spec"
    )
    leader_tpl = mapping(lwt, "leaderTemplate", f"{path}.leaderTemplate")
    templates: tuple[Template, ...]
    if leader_tpl:
        leader = mapping(leader_tpl, "spec", f"{path}.leaderTemplate.spec")
        templates = (
            Template("leader", groups, leader, f"{path}.leaderTemplate.spec"),
            Template("worker", groups * (size - 1), worker, f"{path}.workerTemplate.spec"),
        )
    else:
        templates = (Template("worker", groups * size, worker, f"{path}.workerTemplate.spec"),)
    return Shape(templates, None, metadata_annotations(obj))


ADAPTERS: dict[tuple[str, str], Adapter] = {("leaderworkerset.x-k8s.io", "LeaderWorkerSet"): leaderworkerset}
