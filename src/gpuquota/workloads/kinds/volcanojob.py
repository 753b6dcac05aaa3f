"""Volcano's Job (batch.volcano.sh): gang-scheduled tasks, each ``replicas`` pods of its own template.

Every task's pods are created (``minAvailable`` only says how many must be schedulable together), so the count is
Σ ``tasks[].replicas``. The Volcano job controller owns the pods and labels them ``volcano.sh/job-name``. Its
phase (``status.state.phase``) says when it ran and finished. It shares the kind name ``Job`` with batch/v1, so its
chart condition is named ``volcanojob``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuquota.workloads.claims import LabelClaim, controlled_by
from gpuquota.workloads.fields import count, mapping, mappings, optional_str
from gpuquota.workloads.kind import PodSpecAt, WorkloadKind
from gpuquota.workloads.kinds.common import metadata_annotations, pod_template
from gpuquota.workloads.lifecycle import Observation, parse_time
from gpuquota.workloads.shape import Shape, Template

GROUP = "batch.volcano.sh"
NAME_LABEL = "volcano.sh/job-name"
FINISHED_PHASES = frozenset({"Completed", "Failed", "Aborted", "Terminated"})
STARTED_PHASES = frozenset({"Running", "Completing", "Restarting", *FINISHED_PHASES})


def volcano_job(obj: Mapping[str, Any]) -> Shape:
    spec = mapping(obj, "spec", "spec", required=True)
    templates: list[Template] = []
    for where, task in mappings(spec, "tasks", "spec.tasks"):
        name = optional_str(task, "name", f"{where}.name") or where.removeprefix("spec.")
        replicas = count(task, "replicas", f"{where}.replicas", 0)
        templates.append(pod_template(task, name, replicas, where))
    return Shape(tuple(templates), None, metadata_annotations(obj))


def observe(obj: Mapping[str, Any]) -> Observation:
    status = obj.get("status")
    state = status.get("state") if isinstance(status, Mapping) else None
    if not isinstance(state, Mapping):
        return Observation(None)
    phase = str(state.get("phase") or "")
    at = parse_time(state.get("lastTransitionTime"))
    started = at if phase in STARTED_PHASES else None
    if phase in FINISHED_PHASES:
        return Observation(started, True, at, phase)
    return Observation(started)


KIND = WorkloadKind(
    group=GROUP,
    kind="Job",
    plural="jobs",
    versions=("v1alpha1",),
    read=volcano_job,
    pod_specs=(PodSpecAt(("template", "spec"), ("spec", "tasks"), "list"),),
    claims=(LabelClaim(NAME_LABEL, controlled_by(GROUP, "Job")),),
    observe=observe,
    chart_name="volcanojob",
)
