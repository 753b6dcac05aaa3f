"""CronJob (batch/v1): counted as one run of its schedule (its Jobs come back through the webhook when the
controller creates them, owned by the CronJob). It lasts until deleted.

The CronJob controller names each Job ``<cronjob>-<scheduled time in minutes since the epoch>``, so the pods of a
scheduled run (labelled with their Job's name, controlled by that Job) can be traced to the CronJob that was admitted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from gpuquota.workloads.claims import LabelClaim, OwnerRef
from gpuquota.workloads.fields import mapping
from gpuquota.workloads.kind import PodSpecAt, WorkloadKind
from gpuquota.workloads.kinds.common import job_template, metadata_annotations
from gpuquota.workloads.kinds.job import NAME_LABELS
from gpuquota.workloads.shape import Shape

_SCHEDULED_JOB_NAME: Final = re.compile(r"^(.+)-(\d{8,10})$")


def cronjob(obj: Mapping[str, Any]) -> Shape:
    """One run of the schedule. The CronJob's own annotations win over those of its job template."""
    spec = mapping(obj, "spec", "spec", required=True)
    job_tpl = mapping(spec, "jobTemplate", "spec.jobTemplate", required=True)
    job_spec = mapping(job_tpl, "spec", "spec.jobTemplate.spec", required=True)
    template, bound = job_template(job_spec, "job", "spec.jobTemplate.spec")
    merged = {**metadata_annotations(job_tpl, "spec.jobTemplate.metadata"), **metadata_annotations(obj)}
    return Shape((template,), bound, merged)


def _scheduled_run(value: str, controller: OwnerRef, labels: Mapping[str, Any]) -> str | None:
    """A pod of the Job ``value`` it is controlled by, that Job named as a scheduled run: the CronJob's name."""
    del labels
    if (controller.group, controller.kind) != ("batch", "Job") or controller.name != value:
        return None
    run = _SCHEDULED_JOB_NAME.match(value)
    return run.group(1) if run else None


KIND = WorkloadKind(
    group="batch",
    kind="CronJob",
    plural="cronjobs",
    versions=("v1",),
    read=cronjob,
    pod_specs=(PodSpecAt(("spec", "jobTemplate", "spec", "template", "spec")),),
    long_lived=True,
    children=(("batch", "Job"),),
    claims=tuple(LabelClaim(label, _scheduled_run) for label in NAME_LABELS),
    suspend=("spec", "suspend"),
)
