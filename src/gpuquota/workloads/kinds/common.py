"""Readers shared by adapters: pod templates, Job specs and the annotations of an object's metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuquota.workloads.fields import count, deadline, mapping
from gpuquota.workloads.shape import Template


def metadata_annotations(obj: Mapping[str, Any], path: str = "metadata") -> Mapping[str, Any]:
    return mapping(mapping(obj, "metadata", path), "annotations", f"{path}.annotations")


def pod_template(parent: Mapping[str, Any], role: str, pods: int, path: str) -> Template:
    """``parent.template`` (a PodTemplateSpec) as a Template of ``pods`` pods; ``path`` names ``parent``."""
    template = mapping(parent, "template", f"{path}.template")
    spec = mapping(template, "spec", f"{path}.template.spec")
    notes = metadata_annotations(template, f"{path}.template.metadata")
    return Template(role, pods, spec, f"{path}.template.spec", annotations=notes)


def job_pods(job_spec: Mapping[str, Any], path: str) -> int:
    """Pods a Job runs at once: min(parallelism, completions); parallelism defaults to 1 and unset
    completions to parallelism (the batch/v1 defaults)."""
    parallelism = count(job_spec, "parallelism", f"{path}.parallelism", 1)
    completions = count(job_spec, "completions", f"{path}.completions", parallelism)
    return min(parallelism, completions)


def job_template(job_spec: Mapping[str, Any], role: str, path: str, replicas: int = 1) -> tuple[Template, int | None]:
    """A JobSpec at ``path`` as (its pod template × ``replicas`` jobs, its activeDeadlineSeconds)."""
    pods = job_pods(job_spec, path) * replicas
    return pod_template(job_spec, role, pods, path), deadline(
        job_spec, "activeDeadlineSeconds", f"{path}.activeDeadlineSeconds"
    )
