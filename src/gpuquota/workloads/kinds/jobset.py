"""JobSet (jobset.x-k8s.io): replicatedJobs, each ``replicas`` copies of a Job template.

The JobSet controller makes one Job per replica, named ``<jobset>-<replicatedJob>-<index>`` and labelled (as are,
through their templates, the Jobs' pods) with the JobSet's name, the replicated Job's name and the index.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuquota.workloads.claims import LabelClaim, OwnerRef
from gpuquota.workloads.errors import WorkloadError
from gpuquota.workloads.fields import MAX_PODS, count, mapping, optional_str, sequence, type_name
from gpuquota.workloads.kind import PodSpecAt, WorkloadKind
from gpuquota.workloads.kinds.common import job_template, metadata_annotations
from gpuquota.workloads.shape import Shape, Template

GROUP = "jobset.x-k8s.io"
NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
_REPLICATED_JOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"
_JOB_INDEX_LABEL = "jobset.sigs.k8s.io/job-index"


def jobset(obj: Mapping[str, Any]) -> Shape:
    """Σ replicas × min(parallelism, completions). The run may last each Job's deadline once per allowed
    restart of the whole set (``failurePolicy.maxRestarts``), so the bound is the longest deadline × (restarts
    + 1), and unbounded as soon as one replicated Job has no deadline."""
    spec = mapping(obj, "spec", "spec", required=True)
    templates: list[Template] = []
    longest: int | None = 0
    for index, replicated in enumerate(sequence(spec, "replicatedJobs", "spec.replicatedJobs")):
        path = f"spec.replicatedJobs[{index}]"
        if not isinstance(replicated, Mapping):
            raise WorkloadError(f"must be a mapping, got {type_name(replicated)}", path=path)
        name = optional_str(replicated, "name", f"{path}.name") or f"replicatedJobs[{index}]"
        replicas = count(replicated, "replicas", f"{path}.replicas", 1)
        job_tpl = mapping(replicated, "template", f"{path}.template", required=True)
        job_spec = mapping(job_tpl, "spec", f"{path}.template.spec", required=True)
        template, bound = job_template(job_spec, name, f"{path}.template.spec", replicas)
        if template.pods > MAX_PODS:
            raise WorkloadError(
                f"{replicas} replicas run {template.pods:,} pods; more than {MAX_PODS:,} is not accepted",
                path=f"{path}.replicas",
            )
        templates.append(template)
        if bound is None or longest is None:
            longest = None
        elif template.pods:
            longest = max(longest, bound)
    restarts = count(
        mapping(spec, "failurePolicy", "spec.failurePolicy"), "maxRestarts", "spec.failurePolicy.maxRestarts", 0
    )
    deadline = None if not longest else float(longest * (restarts + 1))
    return Shape(tuple(templates), deadline, metadata_annotations(obj))


def _child_job(job_name: str, jobset: str, labels: Mapping[str, Any]) -> bool:
    """Whether ``job_name`` is one of ``jobset``'s Jobs (by the labels when they name its parts)."""
    if not job_name.startswith(jobset + "-"):
        return False
    replicated, index = labels.get(_REPLICATED_JOB_LABEL), labels.get(_JOB_INDEX_LABEL)
    if isinstance(replicated, str) and isinstance(index, str):
        return job_name == f"{jobset}-{replicated}-{index}"
    return True


def jobset_member(value: str, controller: OwnerRef, labels: Mapping[str, Any]) -> str | None:
    """The JobSet's own Jobs (controlled by it), or their pods (controlled by one of those Jobs)."""
    if (controller.group, controller.kind) == (GROUP, "JobSet"):
        return value if controller.name == value else None
    if (controller.group, controller.kind) == ("batch", "Job") and _child_job(controller.name, value, labels):
        return value
    return None


KIND = WorkloadKind(
    group=GROUP,
    kind="JobSet",
    plural="jobsets",
    versions=("v1alpha2",),
    read=jobset,
    pod_specs=(PodSpecAt(("template", "spec", "template", "spec"), ("spec", "replicatedJobs"), "list"),),
    children=(("batch", "Job"),),
    claims=(LabelClaim(NAME_LABEL, jobset_member),),
    suspend=("spec", "suspend"),
)
