"""The accelerator table (``gpus.yaml``) and lookups by every name a GPU goes by.

A GPU reaches gpuquota under several spellings — NVML's ``NVIDIA H100 80GB HBM3``, GPU Feature Discovery's
``NVIDIA-H100-80GB-HBM3`` (with ``-SHARED`` or ``-MIG-3g.40gb`` suffixes), the catalog key ``H100-SXM5-80GB``,
a PCI device id — so lookups normalise all of them to one index built once at load.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gpuquota.catalog.classify import classify, h100_equivalents, performance_density
from gpuquota.domain import GpuClass

_BITS = {"fp4": 4, "fp6": 6, "fp8": 8, "int8": 8, "fp16": 16, "bf16": 16, "tf32": 32, "fp32": 32, "fp64": 64}
_TPP_TOLERANCE = 0.01


class CatalogError(ValueError):
    """The catalog file is unreadable or inconsistent; the message names the file and the row."""


class GpuSpec(BaseModel):
    """One accelerator model. ``tpp`` is dense, the maximum over precisions of TFLOPS × bit length."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    vendor: str
    names: tuple[str, ...]
    labels: tuple[str, ...] = ()
    pci_device_ids: tuple[int, ...] = ()
    compute_capability: str | None = None
    sm_count: int | None = Field(default=None, gt=0)
    memory_gib: float | None = Field(default=None, gt=0)
    tflops: Mapping[str, float]
    tpp: float = Field(gt=0)
    die_area_mm2: float | None = Field(default=None, gt=0)
    confidence: str = Field(pattern=r"^[PSCU](/[PSCU])?$")
    source: str
    mig: Mapping[str, int] = Field(default_factory=dict)

    @field_validator("tflops")
    @classmethod
    def _known_precisions(cls, value: Mapping[str, float]) -> Mapping[str, float]:
        unknown = sorted(set(value) - set(_BITS))
        if unknown:
            raise ValueError(f"unknown precision(s) {unknown}; known: {sorted(_BITS)}")
        if not value or any(v <= 0 for v in value.values()):
            raise ValueError("needs at least one positive dense figure")
        return value

    @model_validator(mode="after")
    def _tpp_matches_figures(self) -> GpuSpec:
        computed = max(v * _BITS[p] for p, v in self.tflops.items())
        if abs(computed - self.tpp) > _TPP_TOLERANCE * self.tpp:
            raise ValueError(f"tpp {self.tpp:g} disagrees with its per-precision figures ({computed:g})")
        return self

    @property
    def performance_density(self) -> float | None:
        return performance_density(self.tpp, self.die_area_mm2)

    @property
    def gpu_class(self) -> GpuClass:
        return classify(self.tpp, self.performance_density)

    @property
    def h100e(self) -> float:
        return h100_equivalents(self.tpp)

    @property
    def product_label(self) -> str:
        """The ``nvidia.com/gpu.product`` value GPU Feature Discovery publishes for this model."""
        return self.labels[0] if self.labels else normalise_name(self.names[0])

    def mig_fraction(self, profile: str) -> float | None:
        """Share of this GPU a MIG profile (``3g.40gb``) gets, by SMs; ``None`` if the part has no such profile."""
        sms = self.mig.get(profile)
        if sms is None or not self.sm_count:
            return None
        return sms / self.sm_count

    def mig_tpp(self, profile: str) -> float | None:
        """TPP of one MIG slice, prorated by its SMs over the parent's SMs."""
        fraction = self.mig_fraction(profile)
        return None if fraction is None else self.tpp * fraction


_SUFFIX = re.compile(r"(-shared|-mig-\d+g\.\d+gb(\+me)?)$")


def normalise_name(name: str) -> str:
    """Fold NVML names, GFD labels and catalog keys onto one spelling (lower case, dashes)."""
    folded = re.sub(r"[\s_]+", "-", name.strip()).lower()
    while True:
        stripped = _SUFFIX.sub("", folded)
        if stripped == folded:
            return folded
        folded = stripped


class Catalog:
    """All known accelerators, indexed by every spelling; the most powerful one is the conservative default."""

    def __init__(self, specs: list[GpuSpec]) -> None:
        if not specs:
            raise CatalogError("the catalog holds no GPU")
        self._specs = tuple(specs)
        self._by_name: dict[str, GpuSpec] = {}
        self._by_pci: dict[int, GpuSpec] = {}
        for spec in specs:
            for alias in (spec.key, *spec.names, *spec.labels):
                other = self._by_name.setdefault(normalise_name(alias), spec)
                if other is not spec:
                    raise CatalogError(f"name {alias!r} is used by both {other.key} and {spec.key}")
            for pci in spec.pci_device_ids:
                other = self._by_pci.setdefault(pci, spec)
                if other is not spec:
                    raise CatalogError(f"PCI device id {pci:#06x} is used by both {other.key} and {spec.key}")
        self._most_powerful = max(specs, key=lambda s: s.tpp)
        self._mig_cache: dict[str, tuple[GpuSpec, float] | None] = {}

    def __iter__(self) -> Iterator[GpuSpec]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def get(self, name: str) -> GpuSpec | None:
        """A model by catalog key, NVML name or GFD label (suffixes such as ``-SHARED`` ignored)."""
        return self._by_name.get(normalise_name(name))

    def by_pci_device_id(self, pci_device_id: int) -> GpuSpec | None:
        """A model by PCI device id: either the 16-bit device id or NVML's combined ``pciDeviceId``
        (device id in the high 16 bits, vendor in the low)."""
        if pci_device_id > 0xFFFF:
            pci_device_id >>= 16
        return self._by_pci.get(pci_device_id)

    def most_powerful(self, candidates: list[GpuSpec] | None = None) -> GpuSpec:
        """The highest-TPP model among ``candidates`` (or the whole catalog): what 'never under-count' counts."""
        pool = candidates or list(self._specs)
        return max(pool, key=lambda s: s.tpp)

    @property
    def strongest(self) -> GpuSpec:
        return self._most_powerful

    def mig_parent(self, profile: str) -> tuple[GpuSpec, float] | None:
        """The most powerful part offering a MIG profile, with the TPP of one slice: how a request for
        ``nvidia.com/mig-<profile>`` with no model selector is counted."""
        if profile not in self._mig_cache:
            best: tuple[GpuSpec, float] | None = None
            for spec in self._specs:
                tpp = spec.mig_tpp(profile)
                if tpp is not None and (best is None or tpp > best[1]):
                    best = (spec, tpp)
            self._mig_cache[profile] = best
        return self._mig_cache[profile]


def parse_catalog(document: Any, origin: str) -> Catalog:
    """Validate a catalog document; errors name ``origin``, the row and the field."""
    if not isinstance(document, dict) or not isinstance(document.get("gpus"), list):
        raise CatalogError(f"{origin}: expected a mapping with a 'gpus' list")
    specs: list[GpuSpec] = []
    for index, row in enumerate(document["gpus"]):
        try:
            specs.append(GpuSpec.model_validate(row))
        except ValidationError as exc:
            where = row.get("key", f"#{index}") if isinstance(row, dict) else f"#{index}"
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(row)'}: {err['msg']}" for err in exc.errors()
            )
            raise CatalogError(f"{origin}: gpus[{index}] ({where}): {problems}") from None
    try:
        return Catalog(specs)
    except CatalogError as exc:  # duplicate names or PCI ids: say which file
        raise CatalogError(f"{origin}: {exc}") from None


def load_catalog_file(path: Path) -> Catalog:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"{path}: {exc}") from None
    return parse_catalog(document, str(path))


@cache
def load_catalog() -> Catalog:
    """The bundled catalog, parsed once per process."""
    text = resources.files("gpuquota.catalog").joinpath("gpus.yaml").read_text(encoding="utf-8")
    return parse_catalog(yaml.safe_load(text), "gpuquota/catalog/gpus.yaml")
