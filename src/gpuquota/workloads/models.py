"""Which GPU model a pod is counted at: its selector, else the cluster inventory, else the policy default.

Never under-count: a selector with alternatives counts the most powerful alternative; a product the catalog
does not know counts at the node agent's NVML estimate for it when the inventory has one, else at the policy's
unknown-part figure (above every catalog part: the strongest catalog part is no bound on a newer one), with a
warning. A selector is trusted because it really constrains where pods land; tenant-set annotations are not
read here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from gpuquota.boundedcache import BoundedCache, text_size
from gpuquota.catalog import UNKNOWN_KEY, GpuSpec, normalise_name, parse_estimate_entry, unknown_part
from gpuquota.catalog.spec import MAX_NAME_CHARS
from gpuquota.domain import ModelSource
from gpuquota.workloads.context import ExtractContext
from gpuquota.workloads.errors import WorkloadError
from gpuquota.workloads.fields import mapping, sequence, type_name
from gpuquota.workloads.gpu_names import Unit
from gpuquota.workloads.node_models import label_index

PRODUCT_LABEL = "nvidia.com/gpu.product"

Selector = tuple[str, ...] | None
"""Models a pod may land on (sorted; any spelling the catalog knows, or an unknown name), or ``None`` when its
selectors do not constrain it."""


def _translate(per_label: Mapping[str, set[str]]) -> set[str] | None:
    """The models the highest-ranked constrained label allows (``node_models``: the product label first)."""
    if not per_label:
        return None
    index = label_index()
    rank_row = min((index[label] for label in per_label), key=lambda pair: pair[0])
    row = rank_row[1]
    return {model for value in per_label[row.label] for model in row.models(value)}


def _term_values(term: Mapping[str, Any], path: str) -> set[str] | None:
    """Models one nodeSelectorTerm allows; ``None`` when it does not constrain the model."""
    index = label_index()
    per_label: dict[str, set[str]] = {}
    for position, expression in enumerate(sequence(term, "matchExpressions", f"{path}.matchExpressions")):
        where = f"{path}.matchExpressions[{position}]"
        if not isinstance(expression, Mapping):
            raise WorkloadError(f"must be a mapping, got {type_name(expression)}", path=where)
        key = expression.get("key")
        if not isinstance(key, str) or key not in index or expression.get("operator") != "In":
            continue  # NotIn, Exists, DoesNotExist, Gt, Lt: no upper bound on the model (conservative)
        values = sequence(expression, "values", f"{where}.values")
        for value_index, value in enumerate(values):
            if not isinstance(value, str):
                raise WorkloadError(f"must be a string, got {type_name(value)}", path=f"{where}.values[{value_index}]")
        per_label[key] = per_label[key] & set(values) if key in per_label else set(values)
    return _translate(per_label)


def _node_selector_models(node_selector: Mapping[str, Any], path: str) -> set[str] | None:
    """Models a nodeSelector allows; ``None`` when it names no model label."""
    if not node_selector:
        return None
    product = node_selector.get(PRODUCT_LABEL)
    if type(product) is str:
        return {product}  # the first-ranked label: nothing else in the nodeSelector can outrank it
    chosen: dict[str, set[str]] = {}
    for label in label_index():
        value = node_selector.get(label)
        if value is not None:
            if not isinstance(value, str):
                where = f"{path}.nodeSelector[{label}]"
                raise WorkloadError(f"must be a string, got {type_name(value)}", path=where)
            chosen[label] = {value}
    return _translate(chosen)


def product_selector(spec: Mapping[str, Any], path: str) -> Selector:
    """The GPU models a PodSpec's nodeSelector and required node affinity allow, read from the labels of
    ``node_models`` (the product label first, then cloud and provisioner labels).

    Terms are ORed, expressions within a term ANDed, nodeSelector ANDed with the affinity. When the constraints
    contradict each other (the pod could never be scheduled) the union is counted, never nothing.
    """
    from_selector = _node_selector_models(mapping(spec, "nodeSelector", f"{path}.nodeSelector"), path)
    from_affinity: set[str] | None = None
    affinity = mapping(spec, "affinity", f"{path}.affinity")
    if affinity:
        apath = f"{path}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        node_affinity = mapping(affinity, "nodeAffinity", f"{path}.affinity.nodeAffinity")
        required = mapping(node_affinity, "requiredDuringSchedulingIgnoredDuringExecution", apath)
        terms = sequence(required, "nodeSelectorTerms", f"{apath}.nodeSelectorTerms")
        union: set[str] = set()
        constrained = bool(terms)
        for index, term in enumerate(terms):
            where = f"{apath}.nodeSelectorTerms[{index}]"
            if not isinstance(term, Mapping):
                raise WorkloadError(f"must be a mapping, got {type_name(term)}", path=where)
            values = _term_values(term, where)
            if values is None:
                constrained = False
                break
            union |= values
        if constrained and union:
            from_affinity = union
    if from_selector is None and from_affinity is None:
        return None
    if from_selector is None or from_affinity is None:
        allowed = from_selector or from_affinity or set()
    else:
        allowed = (from_selector & from_affinity) or (from_selector | from_affinity)
    return tuple(sorted(allowed))


@dataclass(frozen=True, slots=True)
class Resolution:
    """How one pod's GPU request is counted: the model, and the physical-GPU equivalents of the pod."""

    model: GpuSpec
    source: ModelSource
    gpus_per_pod: float
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Request:
    """A pod's GPU units of one vendor, by kind of share (``gpu_names.Unit``)."""

    vendor: str
    units: tuple[tuple[Unit, int], ...]

    @property
    def mig(self) -> tuple[str, ...]:
        return tuple(unit.param for unit, _ in self.units if unit.kind == "mig")

    @property
    def only_mig(self) -> bool:
        return all(unit.kind == "mig" for unit, _ in self.units)

    def describe(self) -> str:
        """What the pod asks for, in words for warnings (``8 whole nvidia GPU(s), 1 x mig-3g.40gb``)."""
        parts = [_describe(unit, units) for unit, units in self.units[:4]]  # tenant-written names: a few, cut short
        return ", ".join(parts) + (f" and {len(self.units) - 4} more" if len(self.units) > 4 else "")


def _describe(unit: Unit, units: int) -> str:
    unit = unit._replace(param=unit.param[:MAX_SHOWN_CHARS])
    return {
        "whole": f"{units} whole {unit.vendor} GPU(s)",
        "shared": f"{units} shared GPU(s)",
        "mig": f"{units} x mig-{unit.param}",
        "part": f"{units} x {unit.param} of a {unit.vendor} GPU",
        "capped": f"{units} x {unit.param} of a {unit.vendor} GPU's cores",
        "uncapped": f"{units} x {unit.param} of a shared {unit.vendor} GPU",
        "memory": f"{units} x {unit.param} MiB of a shared {unit.vendor} GPU",
    }.get(unit.kind, f"{units} unreadable device request(s)")


def _split(counts: tuple[tuple[Unit, int], ...]) -> _Request | None:
    """A pod's units as one vendor's request; ``None`` when several vendors are mixed in one pod."""
    vendors = {unit.vendor for unit, _ in counts}
    if len(vendors) != 1:
        return None
    return _Request(vendors.pop(), counts)


def pinned_models(counts: tuple[tuple[Unit, int], ...]) -> tuple[str, ...] | None:
    """The models every unit of the pod is pinned to (KubeVirt names, DRA productName selectors), or ``None``
    when any unit may be any model (a pod mixing pinned and free units may land where the free ones lead)."""
    pins: set[str] | None = None
    for unit, _ in counts:
        if not unit.pins:
            return None
        pins = set(unit.pins) if pins is None else (pins & set(unit.pins)) or (pins | set(unit.pins))
    return tuple(sorted(pins)) if pins else None


def _capable(spec: GpuSpec, request: _Request) -> bool:
    if spec.key == UNKNOWN_KEY:  # no MIG table: its slices count as whole GPUs
        return spec.vendor == request.vendor
    return spec.vendor == request.vendor and all(spec.mig_fraction(p) is not None for p in request.mig)


def _unit_gpus(spec: GpuSpec, unit: Unit, shared_fraction: float) -> float:
    """Physical-GPU equivalents of one unit on ``spec``. Shares whose compute is not capped (time-slicing, memory
    limits) count at least as the policy's shared fraction; MIG slices and partitions at their share of the GPU."""
    kind = unit.kind
    if kind == "shared":
        return shared_fraction
    if kind == "mig":
        fraction = spec.mig_fraction(unit.param)
        return 1.0 if fraction is None else fraction
    if kind in ("part", "capped"):
        return float(unit.param)
    if kind == "uncapped":
        return max(float(unit.param), shared_fraction)
    if kind == "memory":
        memory = spec.memory_gib
        share = 1.0 if not memory else min(1.0, float(unit.param) / (memory * 1024))
        return max(share, shared_fraction)
    return 1.0


def _estimates(ctx: ExtractContext) -> dict[str, float]:
    """The node agent's NVML estimates in the inventory, by folded product name (highest per product)."""
    found: dict[str, float] = {}
    for entry in ctx.inventory_models:
        parsed = parse_estimate_entry(entry)
        if parsed is not None:
            found[parsed[0]] = max(parsed[1], found.get(parsed[0], 0.0))
    return found


def _stranger(ctx: ExtractContext, request: _Request, name: str) -> tuple[GpuSpec, str]:
    """The stand-in for a product the catalog lacks, and how it was counted (for the warning). An estimate is
    read from ``name`` only when it is an entry of the inventory itself: a selector value spelled like one is
    tenant input and would let the tenant name its own TPP."""
    parsed = parse_estimate_entry(name) if name in ctx.inventory_models else None
    # a name longer than any label value is no product the inventory can hold: not worth folding (tenant input)
    folded = normalise_name(name) if len(name) <= MAX_NAME_CHARS else None
    tpp = parsed[1] if parsed is not None else (_estimates(ctx).get(folded) if folded is not None else None)
    if tpp is not None and request.vendor == "nvidia":  # NVML estimates are of NVIDIA parts
        basis = f"the node agent's NVML estimate, {tpp:,.0f} TPP"
        return unknown_part("nvidia", tpp, basis), basis
    figure = ctx.unknown_model_tpp or 0.0
    basis = f"the policy's unknown-part figure, {figure:,.0f} TPP"
    return unknown_part(request.vendor, figure, basis), basis


def _lookup(ctx: ExtractContext, name: str) -> GpuSpec | None:
    """An inventory entry's catalog row; an estimated part that a local catalog row now names counts as that row."""
    spec = ctx.catalog.get(name)
    parsed = parse_estimate_entry(name) if spec is None else None
    return ctx.catalog.get(parsed[0]) if parsed is not None else spec


def _shown(name: str) -> str:
    parsed = parse_estimate_entry(name)
    return name if parsed is None else parsed[0]


def _gpus(spec: GpuSpec, request: _Request, shared_fraction: float) -> float:
    """Physical-GPU equivalents of the pod on ``spec``."""
    return sum(units * _unit_gpus(spec, unit, shared_fraction) for unit, units in request.units)


def _best(specs: Iterable[GpuSpec], request: _Request, shared_fraction: float) -> GpuSpec | None:
    return max(specs, key=lambda s: s.tpp * _gpus(s, request, shared_fraction), default=None)


def _as_whole(ctx: ExtractContext, counts: tuple[tuple[Unit, int], ...], why: str) -> Resolution:
    """Last resort: every unit counted as one whole GPU of the most powerful catalog part."""
    strongest = ctx.catalog.strongest
    units = sum(units for _, units in counts)
    return Resolution(
        strongest, ModelSource.UNKNOWN, float(units), (f"{why}; counted as {units} whole {strongest.key} GPU(s)",)
    )


_ResolutionKey = tuple[ExtractContext, Selector, tuple[tuple[Unit, int], ...]]


def _resolution_size(key: _ResolutionKey, value: Resolution) -> int:
    return text_size(key[1], key[2]) + text_size(value.warnings)


RESOLUTIONS: Final = BoundedCache[_ResolutionKey, Resolution](
    "model_resolution", max_entries=8192, max_bytes=16 * 1024 * 1024, size=_resolution_size
)
"""Templates repeat across replicas, roles and admissions, and the catalog is immutable; selector values and
resource names are tenant input, so the cache is bounded in bytes as well as entries."""

MAX_SHOWN_CHARS: Final = 64
"""Longest tenant-written value quoted in a warning (a label value is at most 63 characters)."""


def _listed(values: Sequence[str]) -> str:
    """Tenant-written values for a warning: quoted, the first three, each cut at ``MAX_SHOWN_CHARS``."""
    shown = [repr(v if len(v) <= MAX_SHOWN_CHARS else v[:MAX_SHOWN_CHARS] + "…") for v in values[:3]]
    return ", ".join(shown) + (f" and {len(values) - 3} more" if len(values) > 3 else "")


def resolve(ctx: ExtractContext, selector: Selector, counts: tuple[tuple[Unit, int], ...]) -> Resolution:
    """Count one pod's GPU request (``counts``: sorted units) under ``selector`` (the models its node selector and
    its devices allow), cached."""
    key = (ctx, selector, counts)
    found = RESOLUTIONS.lookup(key)
    if found is not None:
        return found[0]
    resolution = _resolve(ctx, selector, counts)
    RESOLUTIONS.put(key, resolution)
    return resolution


def _resolve(  # noqa: PLR0911 (one return per rung of the fallback ladder)
    ctx: ExtractContext, selector: Selector, counts: tuple[tuple[Unit, int], ...]
) -> Resolution:
    catalog = ctx.catalog
    request = _split(counts)
    if request is None:
        return _as_whole(ctx, counts, "the pod requests GPUs of several vendors")
    capable = [s for s in catalog if _capable(s, request)]
    if not capable:
        return _as_whole(ctx, counts, f"no catalog GPU offers {request.describe()}")
    fraction = ctx.shared_gpu_fraction
    warnings: list[str] = []

    def done(spec: GpuSpec, source: ModelSource) -> Resolution:
        if spec.local:
            where = spec.origin.rpartition("/")[2]  # the file's name: kubectl warnings stay short
            warnings.append(f"GPU model {spec.key} is counted from a local catalog row ({where})")
        return Resolution(spec, source, _gpus(spec, request, fraction), tuple(warnings))

    if selector is not None:
        known = [catalog.get(value) for value in selector]
        unknown = [value for value, spec in zip(selector, known, strict=True) if spec is None]
        if unknown:
            strangers = [_stranger(ctx, request, value) for value in unknown]
            pool = [*(s for s in known if s is not None and _capable(s, request)), *(p for p, _ in strangers)]
            best = _best(pool, request, fraction)
            assert best is not None
            warnings.append(
                f"GPU product {_listed(unknown)} is not in the catalog; counted at "
                f"{'; '.join(sorted({basis for _, basis in strangers}))} per GPU: ask the admin to add a catalog row"
            )
            return done(best, ModelSource.UNKNOWN)
        fits = [s for s in known if s is not None and _capable(s, request)]
        best = _best(fits, request, fraction)
        if best is not None:
            return done(best, ModelSource.SELECTOR)
        warnings.append(
            f"the GPU model selector ({_listed(selector)}) cannot serve {request.describe()}; "
            "counted as if the pod had no selector"
        )
    if ctx.inventory_models:
        inventory = [_lookup(ctx, name) for name in ctx.inventory_models]
        missing = [n for n, s in zip(ctx.inventory_models, inventory, strict=True) if s is None]
        strangers = [_stranger(ctx, request, name) for name in missing]
        pool = [
            *(s for s in inventory if s is not None and _capable(s, request)),
            *(p for p, _ in strangers if _capable(p, request)),
        ]
        best = _best(pool, request, fraction)
        if best is not None and best.key == UNKNOWN_KEY:
            bases = "; ".join(sorted({basis for spec, basis in strangers if spec is best}))
            warnings.append(
                f"cluster inventory holds GPU(s) the catalog does not know ({', '.join(map(_shown, missing))}); "
                f"counted at {bases} per GPU: ask the admin to add a catalog row"
            )
            return done(best, ModelSource.UNKNOWN)
        if best is not None:
            return done(best, ModelSource.INVENTORY)
    if ctx.default_model is not None:
        default = catalog.get(ctx.default_model)
        if default is not None and _capable(default, request):
            return done(default, ModelSource.DEFAULT)
    best = _best(capable, request, fraction)
    assert best is not None
    if request.only_mig:
        return done(best, ModelSource.RESOURCE)
    warnings.append(
        "no usable GPU model selector, inventory or default model: counted as the most powerful catalog GPU, "
        f"{best.key}"
    )
    return done(best, ModelSource.DEFAULT)
