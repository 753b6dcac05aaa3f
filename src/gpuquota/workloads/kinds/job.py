"""Job (batch/v1): ``min(parallelism, completions)`` pods of one template, bounded by ``activeDeadlineSeconds``.

The Job controller labels its pods with the Job's name (``batch.kubernetes.io/job-name``, and the older
``job-name``) and is their controller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuquota.workloads.claims import LabelClaim, controlled_by
from gpuquota.workloads.fields import mapping
from gpuquota.workloads.kind import PodSpecAt, WorkloadKind
from gpuquota.workloads.kinds.common import job_template, metadata_annotations
from gpuquota.workloads.shape import Shape

NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
"""The labels the Job controller puts on its pods, naming the Job."""


def job(obj: Mapping[str, Any]) -> Shape:
    spec = mapping(obj, "spec", "spec", required=True)
    template, bound = job_template(spec, "job", "spec")
    return Shape((template,), bound, metadata_annotations(obj))


KIND = WorkloadKind(
    group="batch",
    kind="Job",
    plural="jobs",
    versions=("v1",),
    read=job,
    pod_specs=(PodSpecAt(("spec", "template", "spec")),),
    claims=tuple(LabelClaim(label, controlled_by("batch", "Job")) for label in NAME_LABELS),
    suspend=("spec", "suspend"),
)
