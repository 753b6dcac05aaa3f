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
from gpuquota.workloads.dra import ClaimSource, pod_claims, read_pod_claims
from gpuquota.workloads.errors import UnsupportedKind, WorkloadError
from gpuquota.workloads.fields import MAX_PODS, type_name
from gpuquota.workloads.fractions import KAI_ANNOTATIONS, kai_units
from gpuquota.workloads.generic import generic_shape
from gpuquota.workloads.gpu_names import MISSING, GpuResources, Unit, add_units, default_gpu_resources
from gpuquota.workloads.kind import Resolver
from gpuquota.workloads.models import Selector, pinned_models, product_selector, resolve
from gpuquota.workloads.references import ReferenceSource
from gpuquota.workloads.registry import ADAPTERS, RESOLVERS, api_group
from gpuquota.workloads.resources import UnitCounts, container_units, pod_gpus
from gpuquota.workloads.shape import Adapter, Shape, Template


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


def extract(obj: Mapping[str, Any], ctx: ExtractContext, claims: ClaimSource | None = None,
            references: ReferenceSource | None = None) -> Demand | None:
    """The GPU demand of one workload object; ``None`` when it asks for no GPU at all.

    ``claims`` reads the ResourceClaim(Template)s its pods name (DRA); without it, or when one cannot be read,
    a claim counts as ``ctx.all_devices`` GPUs of the most powerful model, with a warning. ``references`` reads the
    other objects a kind's pods depend on (a TrainJob's runtime, ``workloads.references``); without it such a kind
    is counted from the object alone. ``UnreadableError`` (from ``references``) propagates: the caller refuses.

    Raises ``UnsupportedKind`` for a kind no adapter reads and ``WorkloadError`` (naming kind/name and the field
    path) for anything malformed or beyond the documented bounds.
    """
    if not isinstance(obj, Mapping):
        raise WorkloadError(f"a workload must be a mapping, got {type_name(obj)}")
    identity = _identity(obj)
    api_version, kind, namespace, name = identity
    key = (api_group(api_version), kind)
    resolver = RESOLVERS.get(key)
    adapter = ADAPTERS.get(key) if resolver is None or references is None else _given(resolver, references)
    if adapter is None:
        shown = f"{namespace}/{name}" if namespace else name
        raise UnsupportedKind(f"{api_version} {kind} is not a workload kind gpuquota reads", kind=kind, name=shown)
    return _read(adapter, obj, identity, ctx, claims)


def _given(resolver: Resolver, references: ReferenceSource) -> Adapter:
    return lambda obj: resolver(obj, references)


def estimate(obj: Mapping[str, Any], ctx: ExtractContext, claims: ClaimSource | None = None) -> Demand | None:
    """The demand of an object of a kind no adapter reads, from the pod templates found in it (``generic``): what
    ``check`` reports for a kind the webhook judges pod by pod. An estimate for people; it never admits anything."""
    return _read(generic_shape, obj, _identity(obj), ctx, claims)


def shape_demand(shape: Shape, obj: Mapping[str, Any], ctx: ExtractContext,
                 claims: ClaimSource | None = None) -> Demand | None:
    """The demand of pods described elsewhere than in ``obj`` itself, named after ``obj``: a Kueue Workload's
    PodSets, with the node labels of the flavours Kueue assigned (``gpuquota.kueue``), are its owner's pods."""
    return _read(lambda _obj: shape, obj, _identity(obj), ctx, claims)


def _read(
    adapter: Adapter,
    obj: Mapping[str, Any],
    identity: tuple[str, str, str, str],
    ctx: ExtractContext,
    claims: ClaimSource | None,
) -> Demand | None:
    """``adapter``'s shape of ``obj`` as a Demand; errors name the object's kind and name."""
    api_version, kind, namespace, name = identity
    try:
        return _demand(
            adapter(obj), ctx, claims, api_version=api_version, kind=kind, namespace=namespace, name=name
        )
    except WorkloadError as exc:
        if exc.kind:
            raise
        raise exc.located(kind, f"{namespace}/{name}" if namespace else name) from None


def _pod_units(template: Template, ctx: ExtractContext) -> UnitCounts:
    """Containers' resources (or the kind's own resources block) plus the pod template's KAI fractions."""
    table = ctx.resources
    if template.resources is None:
        counts = pod_gpus(template.spec, template.path, table)
    else:
        counts = container_units(template.resources, template.path, table)
    if template.annotations:
        where = f"{template.path.removesuffix('spec')}metadata.annotations"
        add_units(counts, kai_units(template.annotations, where))
    return counts


def _selector(template: Template, counts: tuple[tuple[Unit, int], ...]) -> Selector:
    """The models the node selector allows, narrowed by the models the devices themselves are pinned to."""
    chosen = product_selector(template.spec, template.path)
    pins = pinned_models(counts)
    if pins is None or chosen is None:
        return chosen if pins is None else pins
    return tuple(sorted((set(chosen) & set(pins)) or (set(chosen) | set(pins))))


def _group(
    role: str, pods: int, template: Template, counts: UnitCounts, *, ctx: ExtractContext, warnings: list[str]
) -> PodGroup:
    units = tuple(sorted(counts.items()))
    resolution = resolve(ctx, _selector(template, units), units)
    model = resolution.model
    for warning in resolution.warnings:
        text = f"{role}: {warning}"
        if text not in warnings:
            warnings.append(text)
    return PodGroup(
        role=role,
        pods=pods,
        gpus_per_pod=resolution.gpus_per_pod,
        model=model.key,
        model_source=resolution.source,
        tpp_per_gpu=model.tpp,
        gpu_class=model.gpu_class,
    )


def _demand(
    shape: Shape,
    ctx: ExtractContext,
    claims: ClaimSource | None,
    *,
    api_version: str,
    kind: str,
    namespace: str,
    name: str,
) -> Demand | None:
    groups: list[PodGroup] = []
    warnings: list[str] = list(shape.warnings)
    shared: dict[str, tuple[UnitCounts, Template]] = {}  # a ResourceClaim shared by pods: counted once
    total_pods = 0
    for template in shape.templates:
        total_pods += template.pods
        if not template.pods:
            continue
        counts = _pod_units(template, ctx)
        listed = pod_claims(template.spec, template.path) if "resourceClaims" in template.spec else ()
        if listed:
            found = read_pod_claims(listed, namespace, ctx, claims)
            add_units(counts, found.per_pod)
            for claim_name, units in found.shared.items():
                shared.setdefault(claim_name, (units, template))
            for warning in found.warnings:
                text = f"{template.role}: {warning}"
                if text not in warnings:
                    warnings.append(text)
        if counts:
            groups.append(_group(template.role, template.pods, template, counts, ctx=ctx, warnings=warnings))
    for claim_name, (units, template) in shared.items():
        groups.append(_group(f"claim {claim_name}", 1, template, units, ctx=ctx, warnings=warnings))
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


def _kai_annotated(metadata: object) -> bool:
    if type(metadata) is not dict:
        return False
    annotations = metadata.get("annotations")
    return type(annotations) is dict and any(key in annotations for key in KAI_ANNOTATIONS)
_SCALARS = frozenset({str, int, float, bool, type(None)})  # never a Mapping or a list
_CONTAINERS = frozenset({dict, list})


def requests_gpu(obj: Mapping[str, Any], resources: GpuResources | None = None) -> bool:
    """Whether any ``limits``/``requests``/``overhead`` block anywhere in the object names a GPU resource (of
    ``resources``) with a non-zero value, any pod lists DRA ``resourceClaims``, or any metadata carries KAI's GPU
    fraction annotations. Cheap (one walk, no parsing, no catalog) and kind-agnostic, so it also decides which
    objects of unknown kinds deserve a closer look; a malformed value counts as a request."""
    table = resources or default_gpu_resources()
    known = table.rows
    stack: list[Any] = [obj]
    while stack:
        node = stack.pop()
        kind = type(node)  # exact-type checks first: decoded JSON is dicts, lists and scalars (ABC checks are slow)
        if kind is dict or (kind is not list and isinstance(node, Mapping)):
            for key, value in node.items():
                if key in _SKIPPED:
                    if key == "metadata" and _kai_annotated(value):
                        return True
                    continue
                vkind = type(value)
                if key in _RESOURCE_BLOCKS and (vkind is dict or isinstance(value, Mapping)):
                    for name, units in value.items():
                        row = known.get(name, MISSING)
                        if row is MISSING:
                            row = table.get(name) if isinstance(name, str) else None
                        if row is not None and units not in (0, "0"):
                            return True
                elif key == "resourceClaims" and value:
                    return True
                elif vkind is dict or vkind is list or (vkind not in _SCALARS and isinstance(value, (Mapping, list))):
                    stack.append(value)
        elif kind is list or isinstance(node, list):
            stack.extend(v for v in node if type(v) in _CONTAINERS or isinstance(v, (Mapping, list)))
    return False
