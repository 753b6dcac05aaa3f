"""JobSet (jobset.x-k8s.io): replicatedJobs, each ``replicas`` copies of a Job template."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuquota.workloads.errors import WorkloadError
from gpuquota.workloads.fields import MAX_PODS, count, mapping, optional_str, sequence, type_name
from gpuquota.workloads.kinds.common import job_template, metadata_annotations
from gpuquota.workloads.shape import Adapter, Shape, Template


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


ADAPTERS: dict[tuple[str, str], Adapter] = {("jobset.x-k8s.io", "JobSet"): jobset}
