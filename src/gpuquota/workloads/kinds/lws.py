"""LeaderWorkerSet (leaderworkerset.x-k8s.io): ``replicas`` groups of ``size`` pods, one leader each.

The leader uses ``leaderTemplate`` when set, else the worker template. A rolling update may run ``maxSurge``
extra groups beside the old ones, so they are counted too (never under-count).

The LWS controller runs the leaders in a StatefulSet named ``<lws>`` and each group's workers in one named after
the group's leader pod, ``<lws>-<groupIndex>``; their pods are labelled with the LWS's name. A claim resting on
such a StatefulSet holds only once the StatefulSet's own owner is checked (``gpuquota.admission.lws``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from gpuquota.workloads.claims import LabelClaim, OwnerRef
from gpuquota.workloads.errors import WorkloadError
from gpuquota.workloads.fields import MAX_PODS, count, integer, mapping, type_name
from gpuquota.workloads.kind import PodSpecAt, WorkloadKind
from gpuquota.workloads.kinds.common import metadata_annotations
from gpuquota.workloads.shape import Shape, Template

_PERCENT = re.compile(r"^(\d+)%$")
NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
_GROUP_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/group-index"


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
    worker_tpl = mapping(lwt, "workerTemplate", f"{path}.workerTemplate", required=True)
    worker = mapping(worker_tpl, "spec", f"{path}.workerTemplate.spec")
    worker_notes = metadata_annotations(worker_tpl, f"{path}.workerTemplate.metadata")
    leader_tpl = mapping(lwt, "leaderTemplate", f"{path}.leaderTemplate")
    templates: tuple[Template, ...]
    if leader_tpl:
        leader = mapping(leader_tpl, "spec", f"{path}.leaderTemplate.spec")
        templates = (
            Template("leader", groups, leader, f"{path}.leaderTemplate.spec",
                     annotations=metadata_annotations(leader_tpl, f"{path}.leaderTemplate.metadata")),
            Template("worker", groups * (size - 1), worker, f"{path}.workerTemplate.spec", annotations=worker_notes),
        )
    else:
        only = Template("worker", groups * size, worker, f"{path}.workerTemplate.spec", annotations=worker_notes)
        templates = (only,)
    return Shape(templates, None, metadata_annotations(obj))


def _statefulset_of(value: str, controller: OwnerRef, labels: Mapping[str, Any]) -> str | None:
    """A pod of the leaders' StatefulSet ``<lws>`` or of a group's ``<lws>-<groupIndex>``."""
    if (controller.group, controller.kind) != ("apps", "StatefulSet"):
        return None
    if controller.name == value:
        return value
    if not controller.name.startswith(value + "-"):
        return None
    index = controller.name[len(value) + 1 :]
    group_index = labels.get(_GROUP_INDEX_LABEL)
    return value if index.isdigit() and (group_index is None or group_index == index) else None


_SPEC = ("spec", "leaderWorkerTemplate")
KIND = WorkloadKind(
    group="leaderworkerset.x-k8s.io",
    kind="LeaderWorkerSet",
    plural="leaderworkersets",
    versions=("v1",),
    read=leaderworkerset,
    pod_specs=(PodSpecAt((*_SPEC, "leaderTemplate", "spec")), PodSpecAt((*_SPEC, "workerTemplate", "spec"))),
    scale=("spec", "replicas"),
    long_lived=True,
    claims=(LabelClaim(NAME_LABEL, _statefulset_of, via_controller=True),),
)
