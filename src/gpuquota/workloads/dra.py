"""Dynamic Resource Allocation: the GPUs a pod gets through ResourceClaims (``resource.k8s.io/v1``, GA in 1.34).

A pod lists claims in ``spec.resourceClaims``: each names a ResourceClaimTemplate (the pod gets a claim of its own,
so it is counted per pod) or a ResourceClaim (shared by every pod naming it, so it is counted once per claim within
a workload). A claim's device requests say how many devices of which DeviceClass; the GPU DeviceClasses come from
the resource table (``gpu_names``). Counted conservatively:

- ``count`` devices (default 1); ``allocationMode: All`` as ``all_devices`` (a full node of GPUs);
- a ``firstAvailable`` list as its largest alternative;
- CEL selectors pin a model only in the forms ``device.attributes["<domain>"].productName == "<name>"`` (or
  ``in [...]``, or an ``||`` of such), possibly ANDed with anything else; a MIG device's ``profile`` likewise;
- a claim that cannot be read (not in the cluster view, not among the manifests) as ``all_devices`` unknown GPUs,
  with a warning — never as zero.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gpuquota.workloads.context import ExtractContext
from gpuquota.workloads.errors import WorkloadError
from gpuquota.workloads.fields import MAX_GPUS_PER_CONTAINER, mapping, mappings, optional_int, optional_str, sequence
from gpuquota.workloads.gpu_names import UNKNOWN_VENDOR, GpuResource, Share, Unit, add_units, fraction_text

RESOURCE_GROUP = "resource.k8s.io"
CLAIM_TEMPLATE = "ResourceClaimTemplate"
CLAIM = "ResourceClaim"

UnitCounts = dict[Unit, int]


class ClaimSource(Protocol):
    """Where claims are read from: the webhook's watched cache, or the manifests given to ``check``."""

    def claim_object(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The ResourceClaimTemplate or ResourceClaim ``namespace/name``; ``None`` when it cannot be read."""
        ...


class ManifestClaims:
    """Claims found among a set of manifests (``gpuquota check``): by (kind, namespace, name)."""

    def __init__(self, objects: Sequence[Mapping[str, Any]], default_namespace: str = "") -> None:
        self._objects: dict[tuple[str, str, str], Mapping[str, Any]] = {}
        for obj in objects:
            kind = obj.get("kind")
            group = str(obj.get("apiVersion") or "").rpartition("/")[0]
            metadata = obj.get("metadata")
            if group != RESOURCE_GROUP or kind not in (CLAIM, CLAIM_TEMPLATE) or not isinstance(metadata, Mapping):
                continue
            namespace = str(metadata.get("namespace") or default_namespace)
            self._objects[(str(kind), namespace, str(metadata.get("name") or ""))] = obj

    def claim_object(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._objects.get((kind, namespace, name))


@dataclass(frozen=True, slots=True)
class PodClaim:
    """One entry of ``spec.resourceClaims``: exactly one of ``template`` and ``claim`` is set."""

    name: str
    template: str | None
    claim: str | None
    path: str


def pod_claims(spec: Mapping[str, Any], path: str) -> tuple[PodClaim, ...]:
    """The claims a PodSpec lists. Every listed claim is allocated for the pod, whether or not a container names it."""
    found = []
    for where, entry in mappings(spec, "resourceClaims", f"{path}.resourceClaims"):
        template = optional_str(entry, "resourceClaimTemplateName", f"{where}.resourceClaimTemplateName")
        claim = optional_str(entry, "resourceClaimName", f"{where}.resourceClaimName")
        if (template is None) == (claim is None):
            raise WorkloadError("needs exactly one of resourceClaimName and resourceClaimTemplateName", path=where)
        found.append(PodClaim(str(entry.get("name") or ""), template, claim, where))
    return tuple(found)


def claim_spec_of(obj: Mapping[str, Any], path: str) -> tuple[Mapping[str, Any], str]:
    """The ResourceClaimSpec of a ResourceClaim (``spec``) or ResourceClaimTemplate (``spec.spec``)."""
    spec = mapping(obj, "spec", f"{path}spec", required=True)
    if obj.get("kind") == CLAIM_TEMPLATE:
        return mapping(spec, "spec", f"{path}spec.spec", required=True), f"{path}spec.spec"
    return spec, f"{path}spec"


def claim_units(claim_spec: Mapping[str, Any], path: str, ctx: ExtractContext) -> UnitCounts:
    """GPU units of one ResourceClaimSpec at ``path``: the sum over its device requests."""
    devices = mapping(claim_spec, "devices", f"{path}.devices")
    total: UnitCounts = {}
    for where, request in mappings(devices, "requests", f"{path}.devices.requests"):
        add_units(total, _request_units(request, where, ctx))
    return total


def _request_units(request: Mapping[str, Any], path: str, ctx: ExtractContext) -> UnitCounts:
    if sequence(request, "firstAvailable", f"{path}.firstAvailable"):
        best: UnitCounts = {}
        for where, sub in mappings(request, "firstAvailable", f"{path}.firstAvailable"):
            units = _exact_units(sub, where, ctx)
            if _weight(units) > _weight(best):
                best = units
        return best
    exactly = request.get("exactly")
    if exactly is not None:  # resource.k8s.io/v1; v1beta1 kept the fields on the request itself
        return _exact_units(mapping(request, "exactly", f"{path}.exactly"), f"{path}.exactly", ctx)
    return _exact_units(request, path, ctx)


def _weight(units: UnitCounts) -> float:
    """A rough size to pick the largest ``firstAvailable`` alternative: devices, partitions at their fraction."""
    return sum(n * (float(u.param) if u.kind == "part" else 1.0) for u, n in units.items())


def _exact_units(request: Mapping[str, Any], path: str, ctx: ExtractContext) -> UnitCounts:
    class_name = optional_str(request, "deviceClassName", f"{path}.deviceClassName")
    if class_name is None:
        raise WorkloadError("needs a deviceClassName", path=path)
    row = ctx.resources.device_class(class_name)
    if row is None:
        return {}  # not a GPU class (a NIC, an IMEX channel …): the table lists the GPU classes
    mode = optional_str(request, "allocationMode", f"{path}.allocationMode") or "ExactCount"
    if mode == "All":
        return {Unit("whole", row.vendor, "", _model_pins(row, request, path)): ctx.all_devices}
    if mode != "ExactCount":
        raise WorkloadError(f"allocationMode must be ExactCount or All, got {mode!r}", path=f"{path}.allocationMode")
    count = optional_int(request, "count", f"{path}.count", minimum=1, maximum=MAX_GPUS_PER_CONTAINER)
    return {_device_unit(row, request, path): 1 if count is None else count}


def _model_pins(row: GpuResource, request: Mapping[str, Any], path: str) -> tuple[str, ...]:
    """A class that is one model (operator configuration) pins it; else a productName selector may."""
    return (row.model,) if row.model else _selector_pins(request, path, "productName")


def _device_unit(row: GpuResource, request: Mapping[str, Any], path: str) -> Unit:
    pins = _model_pins(row, request, path)
    if row.share is Share.MIG:
        profiles = _selector_pins(request, path, "profile")
        if len(profiles) == 1:
            return Unit("mig", row.vendor, profiles[0], pins)
        return Unit("whole", row.vendor, "", pins)  # any slice, up to the whole GPU
    if row.share is Share.SHARED:
        return Unit("shared", row.vendor, "", pins)
    if row.share is Share.PARTITION:
        return Unit("part", row.vendor, fraction_text(row.fraction), pins)
    return Unit("whole", row.vendor, "", pins)


# --- CEL selectors --------------------------------------------------------------------------------------------------

_ATTRIBUTE = r"device\.attributes\[\s*(?:\"[^\"]*\"|'[^']*')\s*\]\.{attr}"
_LITERAL = r"(?:\"([^\"\\]*)\"|'([^'\\]*)')"


def _patterns(attribute: str) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    attr = _ATTRIBUTE.format(attr=re.escape(attribute))
    return (
        re.compile(rf"^{attr}\s*==\s*{_LITERAL}$"),
        re.compile(rf"^{_LITERAL}\s*==\s*{attr}$"),
        re.compile(rf"^{attr}\s+in\s+\[(.*)\]$", re.DOTALL),
    )


_PATTERNS = {name: _patterns(name) for name in ("productName", "profile")}
_LIST_ITEM = re.compile(rf"\s*{_LITERAL}\s*(?:,|$)")


def _split_top(text: str, operator: str) -> list[str] | None:
    """``text`` split on ``operator`` outside quotes and brackets; ``None`` when it is unbalanced."""
    parts, depth, quote, start, i = [], 0, "", 0, 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth < 0:
                return None
        elif depth == 0 and text.startswith(operator, i):
            parts.append(text[start:i])
            start = i + len(operator)
            i = start
            continue
        i += 1
    if depth or quote:
        return None
    parts.append(text[start:])
    return parts


def _strip_parens(text: str) -> str:
    text = text.strip()
    while text.startswith("(") and text.endswith(")") and _split_top(text[1:-1], "\0") is not None:
        text = text[1:-1].strip()
    return text


def _literals(term: str, attribute: str) -> set[str] | None:
    """The values one term ``attribute == "x"`` / ``"x" == attribute`` / ``attribute in [...]`` allows."""
    equals, reverse, member = _PATTERNS[attribute]
    for pattern in (equals, reverse):
        found = pattern.match(term)
        if found is not None:
            return {found.group(1) if found.group(1) is not None else found.group(2)}
    found = member.match(term)
    if found is None:
        return None
    body, values, position = found.group(1), set(), 0
    while position < len(body.rstrip()):
        item = _LIST_ITEM.match(body, position)
        if item is None:
            return None
        values.add(item.group(1) if item.group(1) is not None else item.group(2))
        position = item.end()
    return values or None


def expression_pins(expression: str, attribute: str) -> set[str] | None:
    """The values of ``attribute`` a CEL expression restricts devices to, or ``None`` when it does not (only
    forms that surely restrict are read: a top-level conjunct that is a disjunction of equalities)."""
    conjuncts = _split_top(expression, "&&")
    if conjuncts is None:
        return None
    allowed: set[str] | None = None
    for conjunct in conjuncts:
        disjuncts = _split_top(_strip_parens(conjunct), "||")
        if disjuncts is None:
            continue
        values: set[str] = set()
        for term in disjuncts:
            found = _literals(_strip_parens(term), attribute)
            if found is None:
                break
            values |= found
        else:
            allowed = values if allowed is None else allowed & values
    return allowed


def _selector_pins(request: Mapping[str, Any], path: str, attribute: str) -> tuple[str, ...]:
    allowed: set[str] | None = None
    for where, selector in mappings(request, "selectors", f"{path}.selectors"):
        cel = mapping(selector, "cel", f"{where}.cel")
        expression = optional_str(cel, "expression", f"{where}.cel.expression")
        if expression is None:
            continue
        found = expression_pins(expression, attribute)
        if found is not None:
            allowed = found if allowed is None else (allowed & found) or (allowed | found)
    return tuple(sorted(allowed)) if allowed else ()


# --- a pod's claims --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ClaimCounts:
    """What a pod's claims add: ``per_pod`` (template claims) and ``shared`` (claim name → units, once each)."""

    per_pod: UnitCounts
    shared: dict[str, UnitCounts]
    warnings: list[str]


def read_pod_claims(
    claims: Sequence[PodClaim], namespace: str, ctx: ExtractContext, source: ClaimSource | None
) -> ClaimCounts:
    """Resolve a pod's claims through ``source``; unreadable ones count as ``ctx.all_devices`` unknown GPUs."""
    result = ClaimCounts({}, {}, [])
    for claim in claims:
        kind, name = (CLAIM_TEMPLATE, claim.template) if claim.template is not None else (CLAIM, claim.claim)
        assert name is not None
        obj = None if source is None else source.claim_object(kind, namespace, name)
        if obj is None:
            units: UnitCounts = {Unit("unknown", UNKNOWN_VENDOR): ctx.all_devices}
            result.warnings.append(
                f"{kind} {namespace}/{name} (claim {claim.name!r}) could not be read; its devices are counted as "
                f"{ctx.all_devices} GPU(s) of the most powerful catalog model"
            )
        else:
            spec, where = claim_spec_of(obj, f"{kind} {namespace}/{name}: ")
            units = claim_units(spec, where, ctx)
        if not units:
            continue
        if claim.template is not None:
            add_units(result.per_pod, units)
        else:
            result.shared[name] = units
    return result
