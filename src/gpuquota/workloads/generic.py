"""Pod templates of an object of a kind no adapter reads: what ``gpuquota check`` reports for a skipped kind.

The webhook judges such objects' pods one by one (the backstop), so nothing here decides an admission. But a
report of "0 GPUs" for a Deployment of 8-GPU pods, a RayService or a Volcano Job misleads whoever reads it, so
``check`` estimates from every PodTemplateSpec it finds (a mapping with a ``template`` whose ``spec`` lists
``containers``), times a ``replicas`` beside it (1 when absent), and says it is an estimate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuquota.workloads.fields import MAX_PODS
from gpuquota.workloads.kinds.common import metadata_annotations
from gpuquota.workloads.shape import Shape, Template

MAX_DEPTH = 12


def _replicas(parent: Mapping[str, Any]) -> int:
    value = parent.get("replicas")
    if isinstance(value, bool) or not isinstance(value, int):
        return 1
    return min(max(value, 0), MAX_PODS)


def _walk(node: Any, path: str, depth: int, found: list[Template]) -> None:
    if depth > MAX_DEPTH:
        return
    if isinstance(node, Mapping):
        template = node.get("template")
        spec = template.get("spec") if isinstance(template, Mapping) else None
        if isinstance(spec, Mapping) and isinstance(spec.get("containers"), list):
            notes = metadata_annotations(template, f"{path}.template.metadata")  # type: ignore[arg-type]
            role = str(node.get("name") or node.get("groupName") or path or "pods")
            found.append(Template(role, _replicas(node), spec, f"{path}.template.spec", annotations=notes))
            return
        for key, value in node.items():
            if key not in ("metadata", "status") and isinstance(value, (Mapping, list)):
                _walk(value, f"{path}.{key}" if path else str(key), depth + 1, found)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _walk(value, f"{path}[{index}]", depth + 1, found)


def generic_shape(obj: Mapping[str, Any]) -> Shape:
    """Every pod template found in ``obj`` (not inside metadata or status), each times its sibling replicas."""
    found: list[Template] = []
    _walk(obj.get("spec"), "spec", 0, found)
    return Shape(tuple(found), None, metadata_annotations(obj))
