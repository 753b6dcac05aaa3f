"""Manifest → Demand: the adapter gives the pods, then GPU units, model and declarations are read uniformly.

This runs on the admission hot path: no copies of the object, PodSpecs are read in place, and model resolution
is cached per (context, selector, request) because the same templates come back on every admission.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuquota.domain import Demand, PodGroup
from gpuquota.workloads import annotations as declared
from gpuquota.workloads.context import ExtractContext
from gpuquota.workloads.errors import UnsupportedKind, WorkloadError
from gpuquota.workloads.fields import MAX_PODS, type_name
from gpuquota.workloads.models import product_selector, resolve
from gpuquota.workloads.registry import ADAPTERS, api_group
from gpuquota.workloads.resources import is_gpu_resource, pod_gpus
from gpuquota.workloads.shape import Shape


def _identity(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(apiVersion, kind, namespace, name) — ``generateName`` stands in for a name not yet given."""
    api_version = obj.get("apiVersion")
    kind = obj.get("kind")
    metadata = obj.get("metadata")
    meta: Mapping[str, Any] = metadata if isinstance(metadata, Mapping) else {}
    name = meta.get("name") or meta.get("generateName") or ""
    namespace = meta.get("namespace") or ""
    shown_kind = kind if isinstance(kind, str) else "object"
    shown_name = f"{namespace}/{name}" if namespace else str(name)
    if not isinstance(kind, str) or not kind:
        raise WorkloadError(f"has no kind (got {type_name(kind)})", path="kind", kind=shown_kind, name=shown_name)
    if not isinstance(api_version, str) or not api_version:
        raise WorkloadError(
            f"has no apiVersion (got {type_name(api_version)})", path="apiVersion", kind=kind, name=shown_name
        )
    if metadata is not None and not isinstance(metadata, Mapping):
        raise WorkloadError(
            f"must be a mapping, got {type_name(metadata)}", path="metadata", kind=kind, name=shown_name
        )
    if not isinstance(name, str) or not isinstance(namespace, str):
        raise WorkloadError("name and namespace must be strings", path="metadata", kind=kind, name=shown_name)
    return api_version, kind, namespace, name


def extract(obj: Mapping[str, Any], ctx: ExtractContext) -> Demand | None:
    """The GPU demand of one workload object; ``None`` when it asks for no GPU at all.

    Raises ``UnsupportedKind`` for a kind no adapter reads and ``WorkloadError`` (naming kind/name and the field
    path) for anything malformed or beyond the documented bounds.
    """
    if not isinstance(obj, Mapping):
        raise WorkloadError(f"a workload must be a mapping, got {type_name(obj)}")
    api_version, kind, namespace, name = _identity(obj)
    shown = f"{namespace}/{name}" if namespace else name
    adapter = ADAPTERS.get((api_group(api_version), kind))
    if adapter is None:
        raise UnsupportedKind(f"{api_version} {kind} is not a workload kind gpuquota reads", kind=kind, name=shown)
    try:
        return _demand(adapter(obj), ctx, api_version=api_version, kind=kind, namespace=namespace, name=name)
    except WorkloadError as exc:
        if exc.kind:
            raise
        raise exc.located(kind, shown) from None


def _demand(
    shape: Shape, ctx: ExtractContext, *, api_version: str, kind: str, namespace: str, name: str
) -> Demand | None:
    groups: list[PodGroup] = []
    warnings: list[str] = list(shape.warnings)
    total_pods = 0
    for template in shape.templates:
        total_pods += template.pods
        if not template.pods:
            continue
        counts = pod_gpus(template.spec, template.path) if template.gpus is None else template.gpus
        if not counts:
            continue
        selector = product_selector(template.spec, template.path)
        resolution = resolve(ctx, selector, tuple(sorted(counts.items())))
        model = resolution.model
        groups.append(
            PodGroup(
                role=template.role,
                pods=template.pods,
                gpus_per_pod=resolution.gpus_per_pod,
                model=model.key,
                model_source=resolution.source,
                tpp_per_gpu=model.tpp,
                gpu_class=model.gpu_class,
            )
        )
        for warning in resolution.warnings:
            text = f"{template.role}: {warning}"
            if text not in warnings:
                warnings.append(text)
    if not groups:
        return None
    if total_pods > MAX_PODS:
        raise WorkloadError(f"asks for {total_pods:,} pods in all; more than {MAX_PODS:,} is not accepted", path="spec")
    notes = shape.annotations
    return Demand(
        kind=kind,
        namespace=namespace,
        name=name,
        groups=tuple(groups),
        purpose=declared.purpose(notes),
        weights=declared.weights(notes),
        base_model=declared.base_model(notes),
        max_runtime_s=declared.max_runtime(notes, shape.deadline_s),
        warnings=tuple(warnings),
        api_version=api_version,
    )


# Keys whose values never hold a resources block: skipping them keeps the walk proportional to the pod specs'
# structure rather than to their environment, volumes and probes.
_SKIPPED = frozenset(
    {
        "metadata",
        "status",
        "env",
        "envFrom",
        "command",
        "args",
        "ports",
        "volumeMounts",
        "volumeDevices",
        "volumes",
        "tolerations",
        "affinity",
        "nodeSelector",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "lifecycle",
        "securityContext",
        "rayStartParams",
    }
)


_RESOURCE_BLOCKS = frozenset({"limits", "requests", "overhead"})
_SCALARS = frozenset({str, int, float, bool, type(None)})  # never a Mapping or a list
_CONTAINERS = frozenset({dict, list})


def requests_gpu(obj: Mapping[str, Any]) -> bool:
    """Whether any ``limits``/``requests``/``overhead`` block anywhere in the object names a GPU resource with
    a non-zero value. Cheap (one walk, no parsing, no catalog) and kind-agnostic, so it also decides which
    objects of unknown kinds deserve a closer look; a malformed value counts as a request."""
    stack: list[Any] = [obj]
    while stack:
        node = stack.pop()
        kind = type(node)  # exact-type checks first: decoded JSON is dicts, lists and scalars (ABC checks are slow)
        if kind is dict or (kind is not list and isinstance(node, Mapping)):
            for key, value in node.items():
                if key in _SKIPPED:
                    continue
                vkind = type(value)
                if key in _RESOURCE_BLOCKS and (vkind is dict or isinstance(value, Mapping)):
                    for name, units in value.items():
                        if isinstance(name, str) and is_gpu_resource(name) and units not in (0, "0"):
                            return True
                elif vkind is dict or vkind is list or (vkind not in _SCALARS and isinstance(value, (Mapping, list))):
                    stack.append(value)
        elif kind is list or isinstance(node, list):
            stack.extend(v for v in node if type(v) in _CONTAINERS or isinstance(v, (Mapping, list)))
    return False
