"""Which resource names and DRA DeviceClasses are GPUs, and how much of a GPU one unit of each is: one table.

Clusters name GPUs many ways — vendor device plugins (``nvidia.com/gpu``, ``amd.com/gpu``, ``gpu.intel.com/i915``),
MIG slices, time-sliced shares, AMD compute partitions, KubeVirt passthrough names that say the model
(``nvidia.com/GH100_H100_SXM5_80GB``), renamed resources (``nvidia.com/a100``), HAMi's core and memory shares,
Dynamic Resource Allocation's DeviceClasses and their extended-resource names. A name the table does not know is
invisible to every cap, so the table is configuration: the bundled defaults (``gpu_names.yaml``) plus what the
operator adds (``--gpu-resource``/``--gpu-device-class``, fed by the chart's ``webhook.gpuResources`` values, which
also write the webhook's match conditions).

Every request is turned into ``Unit`` keys — what kind of share, of which vendor, pinned to which models — so that
model resolution never needs the table and caches on plain tuples.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any, NamedTuple

import yaml

VENDORS = ("nvidia", "amd", "intel")
DEVICE_CLASS_PREFIX = "deviceclass.resource.kubernetes.io/"
"""DRA extended resources: a container asking for ``deviceclass.resource.kubernetes.io/<class>`` gets devices of
that DeviceClass (Kubernetes 1.34+), with no ResourceClaim written by the tenant."""
MAX_CACHED_NAMES = 4096
"""Lookups are cached per name, up to this many (names come from tenants' manifests: the cache must stay bounded)."""


class Share(StrEnum):
    """What one unit of a resource is."""

    WHOLE = "whole"  # a whole GPU (optionally of a known model)
    SHARED = "shared"  # a time-sliced GPU: the policy's sharedGpuFraction
    MIG = "mig"  # a MIG slice, named by the suffix after the prefix (nvidia.com/mig-3g.40gb): its SMs' share
    PARTITION = "partition"  # a fixed, isolated part of a GPU (AMD CPX/QPX/DPX compute partitions): ``fraction``
    CORES = "cores"  # HAMi nvidia.com/gpucores: percent of each shared GPU's cores (compute capped)
    MEMORY = "memory"  # HAMi nvidia.com/gpumem: MiB of each shared GPU (compute not capped)
    MEMORY_PERCENT = "memory-percent"  # HAMi nvidia.com/gpumem-percentage (compute not capped)
    DEVICE_CLASS = "device-class"  # the DRA extended-resource prefix: the DeviceClass table says what it is


_MODIFIERS = frozenset({Share.CORES, Share.MEMORY, Share.MEMORY_PERCENT})
_MAX_UNITS = {Share.CORES: 100, Share.MEMORY: 1 << 24, Share.MEMORY_PERCENT: 100}


class GpuNameError(ValueError):
    """A table entry (file, flag or chart value) is malformed; the message names it."""


@dataclass(frozen=True, slots=True)
class GpuResource:
    """One row of the table. ``model`` pins a catalog model (any spelling the catalog knows)."""

    vendor: str
    share: Share = Share.WHOLE
    model: str | None = None
    fraction: float = 1.0

    def __post_init__(self) -> None:
        if self.vendor not in VENDORS:
            raise GpuNameError(f"vendor must be one of {', '.join(VENDORS)}, not {self.vendor!r}")
        if not (math.isfinite(self.fraction) and 0.0 < self.fraction <= 1.0):
            raise GpuNameError(f"fraction must be in (0, 1], not {self.fraction!r}")

    @property
    def max_units(self) -> int | None:
        """Largest quantity one container may ask for (``None``: the device bound of ``fields``)."""
        return _MAX_UNITS.get(self.share)


class Unit(NamedTuple):
    """A normalised share of a GPU. ``kind``: whole, shared, mig, part (isolated fraction), capped (compute capped
    at ``param``), uncapped (``param`` of the memory, compute not capped), memory (``param`` MiB, compute not capped),
    unknown (a device request that could not be read). ``pins``: the models it can only be (empty: any)."""

    kind: str
    vendor: str
    param: str = ""
    pins: tuple[str, ...] = ()


UNKNOWN_VENDOR = "?"
MISSING: Any = object()


def fraction_text(value: float) -> str:
    return repr(float(value))


@dataclass(frozen=True, eq=False)
class GpuResources:
    """The table: exact names, prefixes (longest first wins) and DeviceClasses, with a bounded lookup cache.
    Hashed by identity, like the catalog: it is an ``ExtractContext`` field, and resolution's cache hashes the
    context on every call (hashing the rows each time would cost more than the lookup it saves)."""

    names: tuple[tuple[str, GpuResource], ...]
    prefixes: tuple[tuple[str, GpuResource], ...]
    device_classes: tuple[tuple[str, GpuResource], ...]
    rows: dict[str, GpuResource | None] = field(default_factory=dict, repr=False)
    """Every name looked up so far (the exact names first): ``rows.get(name, MISSING)`` is the hot path's read."""
    _units: dict[str, Unit] = field(default_factory=dict, repr=False)
    _classes: dict[str, GpuResource] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.rows.update(self.names)
        self._classes.update(self.device_classes)
        object.__setattr__(self, "prefixes", tuple(sorted(self.prefixes, key=lambda p: -len(p[0]))))

    def get(self, name: str) -> GpuResource | None:
        """The row for a resource name; ``None`` when it is not a GPU. DRA extended resources resolve through the
        DeviceClass table (``deviceclass.resource.kubernetes.io/gpu.nvidia.com`` is a whole NVIDIA GPU)."""
        if name in self.rows:
            return self.rows[name]
        result: GpuResource | None = None
        for prefix, row in self.prefixes:
            if name.startswith(prefix) and len(name) > len(prefix):
                result = self._classes.get(name[len(prefix) :]) if row.share is Share.DEVICE_CLASS else row
                break
        if len(self.rows) < MAX_CACHED_NAMES:
            self.rows[name] = result
        return result

    def unit(self, name: str, row: GpuResource) -> Unit:
        """The unit one ``name`` (whose row is ``row``, not a HAMi modifier) stands for; cached per known name."""
        found = self._units.get(name)
        if found is None:
            found = _unit(row, name)
            if len(self._units) < MAX_CACHED_NAMES:
                self._units[name] = found
        return found

    def device_class(self, name: str) -> GpuResource | None:
        """What a device of DRA DeviceClass ``name`` is; ``None``: not a GPU class (NICs, IMEX channels …)."""
        return self._classes.get(name)

    def with_entries(
        self, names: Iterable[tuple[str, GpuResource]] = (), device_classes: Iterable[tuple[str, GpuResource]] = ()
    ) -> GpuResources:
        """This table with operator entries added (a name ending in ``*`` is a prefix); later entries win."""
        exact, prefixes = dict(self.names), dict(self.prefixes)
        for name, row in names:
            if name.endswith("*"):
                prefixes[name[:-1]] = row
            else:
                exact[name] = row
        classes = dict(self.device_classes)
        classes.update(device_classes)
        return GpuResources(tuple(exact.items()), tuple(prefixes.items()), tuple(classes.items()))

    def match_names(self) -> tuple[list[str], list[str]]:
        """(exact names, prefixes) that must reach the webhook — what the chart's match conditions list."""
        return sorted(name for name, _ in self.names), sorted(p for p, _ in self.prefixes)


# --- units -----------------------------------------------------------------------------------------------------------


def _pins(row: GpuResource) -> tuple[str, ...]:
    return (row.model,) if row.model else ()


def units_of(raw: Mapping[str, int], table: GpuResources, path: str) -> dict[Unit, int]:
    """One container's GPU resources (name → units, as ``resources.container_gpus`` reads them) as Units.

    HAMi's ``gpucores``/``gpumem``/``gpumem-percentage`` modify the container's whole GPUs of the same vendor (each
    becomes that share of a GPU); alone they stand for one shared GPU. Never zero.
    """
    if len(raw) == 1:  # the common case: one GPU resource in the container
        ((name, units),) = raw.items()
        row = table.get(name)
        if row is None or not units:
            return {}
        if row.share not in _MODIFIERS:
            return {table.unit(name, row): units}
    out: dict[Unit, int] = {}
    modifiers: dict[str, dict[Share, int]] = {}
    for name, units in raw.items():
        row = table.get(name)
        if row is None or not units:
            continue
        if row.share in _MODIFIERS:
            modifiers.setdefault(row.vendor, {})[row.share] = units
            continue
        unit = table.unit(name, row)
        out[unit] = out.get(unit, 0) + units
    for vendor, mods in modifiers.items():
        plain = Unit("whole", vendor)
        devices = out.pop(plain, 0) or 1
        unit = _modified(vendor, mods)
        out[unit] = out.get(unit, 0) + devices
    return out


def _unit(row: GpuResource, name: str) -> Unit:
    if row.share is Share.WHOLE:
        return Unit("whole", row.vendor, "", _pins(row))
    if row.share is Share.SHARED:
        return Unit("shared", row.vendor, "", _pins(row))
    if row.share is Share.PARTITION:
        return Unit("part", row.vendor, fraction_text(row.fraction), _pins(row))
    # MIG: the profile is what follows "mig-" (a "+me" media-extension suffix is dropped); a MIG DeviceClass's
    # extended resource names no profile, so it may be any slice up to the whole GPU
    _, found, profile = name.rpartition("mig-")
    if not found:
        return Unit("whole", row.vendor, "", _pins(row))
    return Unit("mig", row.vendor, profile.removesuffix("+me"), _pins(row))


def _modified(vendor: str, mods: Mapping[Share, int]) -> Unit:
    cores = mods.get(Share.CORES, 0)
    if cores:
        return Unit("whole", vendor) if cores >= 100 else Unit("capped", vendor, fraction_text(cores / 100))
    percent = mods.get(Share.MEMORY_PERCENT, 0)
    if percent:
        return Unit("uncapped", vendor, fraction_text(min(percent, 100) / 100))
    return Unit("memory", vendor, str(mods[Share.MEMORY]))


def add_units(total: dict[Unit, int], extra: Mapping[Unit, int]) -> None:
    if not total:
        total.update(extra)
        return
    for unit, units in extra.items():
        total[unit] = total.get(unit, 0) + units


# --- configuration -------------------------------------------------------------------------------------------------

_ROW_KEYS = frozenset({"vendor", "share", "model", "fraction"})


def row_from_mapping(entry: Mapping[str, Any], where: str) -> GpuResource:
    unknown = sorted(set(entry) - _ROW_KEYS - {"name", "prefix"})
    if unknown:
        raise GpuNameError(f"{where}: unknown key(s) {', '.join(unknown)}")
    try:
        share = Share(entry.get("share", "whole"))
        fraction = float(entry.get("fraction", 1.0))
        model = entry.get("model")
        if model is not None and not isinstance(model, str):
            raise GpuNameError("model must be a string")
        return GpuResource(str(entry.get("vendor", "")), share, model, fraction)
    except (ValueError, TypeError) as exc:
        raise GpuNameError(f"{where}: {exc}") from None


_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?(/[-A-Za-z0-9_.+]+)?\*?$")


def parse_entry(text: str, *, device_class: bool = False) -> tuple[str, GpuResource]:
    """``NAME=VENDOR[,share=S][,model=M][,fraction=F]`` (a flag value); a NAME ending in ``*`` is a prefix.

    ``nvidia.com/a100=nvidia,model=A100-SXM4-80GB``; ``amd.com/cpx_*=amd,share=partition,fraction=0.125``;
    with ``device_class``: ``gpu.example.com=nvidia`` (a DeviceClass whose devices are whole NVIDIA GPUs).
    """
    what = "--gpu-device-class" if device_class else "--gpu-resource"
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not name or not _NAME.match(name) or (device_class and name.endswith("*")):
        raise GpuNameError(f"{what} {text!r}: expected NAME=VENDOR[,share=…][,model=…][,fraction=…]")
    vendor, *options = [part.strip() for part in rest.split(",")]
    entry: dict[str, Any] = {"vendor": vendor}
    for option in options:
        key, eq, value = option.partition("=")
        if not eq or key not in _ROW_KEYS - {"vendor"}:
            raise GpuNameError(f"{what} {text!r}: options are share=, model= and fraction=, not {option!r}")
        entry[key] = value
    return name, row_from_mapping(entry, f"{what} {text!r}")


def parse_table(document: Any, origin: str) -> GpuResources:
    if not isinstance(document, dict):
        raise GpuNameError(f"{origin}: expected a mapping")

    def rows(key: str) -> list[tuple[str, GpuResource]]:
        found = []
        for index, entry in enumerate(document.get(key) or ()):
            where = f"{origin}: {key}[{index}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise GpuNameError(f"{where}: expected a mapping with a name")
            found.append((entry["name"], row_from_mapping(entry, where)))
        return found

    return GpuResources(tuple(rows("resources")), tuple(rows("prefixes")), tuple(rows("deviceClasses")))


@cache
def default_gpu_resources() -> GpuResources:
    """The bundled table (``gpu_names.yaml``), parsed once per process."""
    text = resources.files("gpuquota.workloads").joinpath("gpu_names.yaml").read_text(encoding="utf-8")
    return parse_table(yaml.safe_load(text), "gpuquota/workloads/gpu_names.yaml")


def configured(resource_flags: Iterable[str] = (), class_flags: Iterable[str] = ()) -> GpuResources:
    """The bundled table plus ``--gpu-resource`` and ``--gpu-device-class`` values."""
    names = [parse_entry(text) for text in resource_flags]
    classes = [parse_entry(text, device_class=True) for text in class_flags]
    if not names and not classes:
        return default_gpu_resources()
    return default_gpu_resources().with_entries(names, classes)
