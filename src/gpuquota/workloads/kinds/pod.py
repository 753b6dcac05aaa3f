"""Pod: the backstop for anything else that asks for GPUs (a bare pod, a Deployment's, an operator's)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuquota.workloads.fields import deadline, mapping
from gpuquota.workloads.kind import PodSpecAt, WorkloadKind
from gpuquota.workloads.kinds.common import metadata_annotations
from gpuquota.workloads.lifecycle import observe_pod
from gpuquota.workloads.shape import Shape, Template


def pod(obj: Mapping[str, Any]) -> Shape:
    spec = mapping(obj, "spec", "spec", required=True)
    bound = deadline(spec, "activeDeadlineSeconds", "spec.activeDeadlineSeconds")
    notes = metadata_annotations(obj)
    return Shape((Template("pod", 1, spec, "spec", annotations=notes),), bound, notes)


KIND = WorkloadKind(
    group="",
    kind="Pod",
    plural="pods",
    versions=("v1",),
    read=pod,
    pod_specs=(PodSpecAt(("spec",)),),
    observe=observe_pod,
)
