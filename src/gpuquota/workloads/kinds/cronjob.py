"""CronJob (batch/v1): judged as one run of its schedule, reserving nothing. Each run — a Job the CronJob controller
creates, named ``<cronjob>-<scheduled time in minutes since the epoch>`` — comes back through the webhook and is
judged and charged as a workload of its own; its pods ride on that Job. So overlapping runs
(``concurrencyPolicy: Allow``) are each charged. It lasts until deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuquota.workloads.fields import mapping
from gpuquota.workloads.kind import PodSpecAt, WorkloadKind
from gpuquota.workloads.kinds.common import job_template, metadata_annotations
from gpuquota.workloads.shape import Shape


def cronjob(obj: Mapping[str, Any]) -> Shape:
    """One run of the schedule. The CronJob's own annotations win over those of its job template."""
    spec = mapping(obj, "spec", "spec", required=True)
    job_tpl = mapping(spec, "jobTemplate", "spec.jobTemplate", required=True)
    job_spec = mapping(job_tpl, "spec", "spec.jobTemplate.spec", required=True)
    template, bound = job_template(job_spec, "job", "spec.jobTemplate.spec")
    merged = {**metadata_annotations(job_tpl, "spec.jobTemplate.metadata"), **metadata_annotations(obj)}
    return Shape((template,), bound, merged)


KIND = WorkloadKind(
    group="batch",
    kind="CronJob",
    plural="cronjobs",
    versions=("v1",),
    read=cronjob,
    pod_specs=(PodSpecAt(("spec", "jobTemplate", "spec", "template", "spec")),),
    long_lived=True,
    children=(("batch", "Job"),),
    suspend=("spec", "suspend"),
    reserves=False,
)
