"""Built-in kinds: Pod (the backstop for anything else that asks for GPUs), Job and CronJob."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuquota.workloads.fields import deadline, mapping
from gpuquota.workloads.kinds.common import job_template, metadata_annotations
from gpuquota.workloads.shape import Adapter, Shape, Template


def pod(obj: Mapping[str, Any]) -> Shape:
    spec = mapping(obj, "spec", "spec", required=True)
    bound = deadline(spec, "activeDeadlineSeconds", "spec.activeDeadlineSeconds")
    return Shape((Template("pod", 1, spec, "spec"),), bound, metadata_annotations(obj))


def job(obj: Mapping[str, Any]) -> Shape:
    spec = mapping(obj, "spec", "spec", required=True)
    template, bound = job_template(spec, "job", "spec")
    return Shape((template,), bound, metadata_annotations(obj))


def cronjob(obj: Mapping[str, Any]) -> Shape:
    """One run of the schedule (its Jobs are checked again when the controller creates them). The CronJob's
    own annotations win over those of its job template."""
    spec = mapping(obj, "spec", "spec", required=True)
    job_tpl = mapping(spec, "jobTemplate", "spec.jobTemplate", required=True)
    job_spec = mapping(job_tpl, "spec", "spec.jobTemplate.spec", required=True)
    template, bound = job_template(job_spec, "job", "spec.jobTemplate.spec")
    merged = {**metadata_annotations(job_tpl, "spec.jobTemplate.metadata"), **metadata_annotations(obj)}
    return Shape((template,), bound, merged)


ADAPTERS: dict[tuple[str, str], Adapter] = {
    ("", "Pod"): pod,
    ("batch", "Job"): job,
    ("batch", "CronJob"): cronjob,
}
