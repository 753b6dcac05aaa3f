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
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gpuquota.catalog.classify import classify, h100_equivalents, performance_density
from gpuquota.domain import GpuClass
from gpuquota.errors import UserError

PRECISION_BITS: Mapping[str, int] = {
    "fp4": 4,
    "int4": 4,
    "fp6": 6,
    "fp8": 8,
    "int8": 8,
    "fp16": 16,
    "bf16": 16,
    "tf32": 32,
    "fp32": 32,
    "fp64": 64,
}
"""Bit length of each precision a dense figure may be given in: TPP = max over precisions of TOPS × bits."""

CATALOG_SCHEMA = 2
BUNDLED = "bundled"
"""``GpuSpec.origin`` of the rows shipped with gpuquota; a local catalog file's rows carry its path."""
STAND_IN = "stand-in"
"""``GpuSpec.origin`` of the row a part the catalog lacks is counted as (catalog/unknown.py)."""

Vendor = Literal["nvidia", "amd", "intel"]
PCI_VENDORS: Mapping[Vendor, int] = {"nvidia": 0x10DE, "amd": 0x1002, "intel": 0x8086}
"""PCI vendor id of each vendor a row may name; PCI device ids are looked up per vendor."""

Confidence = Literal["P", "S", "C", "U"]
_CONFIDENCE_RANK = {"P": 3, "S": 2, "C": 1, "U": 0}


class CatalogError(UserError, ValueError):
    """The catalog file is unreadable or inconsistent; the message names the file and the row."""


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceRef(_Row):
    """A document figures are taken from; figures name it by ``id``."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    title: str = Field(min_length=1)
    url: str | None = None


class Figure(_Row):
    """One dense (no sparsity) figure in TFLOPS or TOPS, with where it comes from and how far it is trusted:
    P primary (the vendor's own document), S secondary (press, analysts, or a vendor figure seen only through a
    copy), C computed from cited inputs, U unverified or not published (the conservative, higher value taken)."""

    tflops: float = Field(gt=0, allow_inf_nan=False)
    source: str
    confidence: Confidence
    note: str = ""


class GpuSpec(_Row):
    """One accelerator model. ``tpp`` is derived, never stored: the maximum over ``dense`` of TOPS × bit length."""

    key: str = Field(min_length=1)
    vendor: Vendor
    names: tuple[str, ...]
    labels: tuple[str, ...] = ()
    pci_device_ids: tuple[int, ...] = ()
    compute_capability: str | None = None
    sm_count: int | None = Field(default=None, gt=0)
    memory_gib: float | None = Field(default=None, gt=0)
    dense: Mapping[str, Figure]
    die_area_mm2: float | None = Field(default=None, gt=0)
    source: str
    mig: Mapping[str, int] = Field(default_factory=dict)
    _tpp: float = PrivateAttr(default=0.0)
    _precision: str = PrivateAttr(default="")
    _origin: str = PrivateAttr(default=BUNDLED)

    @field_validator("dense")
    @classmethod
    def _known_precisions(cls, value: Mapping[str, Figure], info: ValidationInfo) -> Mapping[str, Figure]:
        unknown = sorted(set(value) - set(PRECISION_BITS))
        if unknown:
            raise ValueError(f"unknown precision(s) {unknown}; known: {sorted(PRECISION_BITS)}")
        if not value:
            raise ValueError("needs at least one dense figure")
        known_sources = (info.context or {}).get("sources")
        if known_sources is not None:
            for precision, figure in value.items():
                if figure.source not in known_sources:
                    raise ValueError(
                        f"{precision}: source {figure.source!r} is not one of the catalog's sources "
                        f"{sorted(known_sources)}"
                    )
        return value

    @field_validator("mig")
    @classmethod
    def _mig_sms(cls, value: Mapping[str, int]) -> Mapping[str, int]:
        bad = sorted(profile for profile, sms in value.items() if sms <= 0)
        if bad:
            raise ValueError(f"MIG profile(s) {bad} need a positive SM count")
        return value

    @model_validator(mode="after")
    def _derive(self, info: ValidationInfo) -> GpuSpec:
        if self.mig and self.sm_count:
            over = sorted(p for p, sms in self.mig.items() if sms > self.sm_count)
            if over:
                raise ValueError(f"MIG profile(s) {over} hold more SMs than the part's sm_count {self.sm_count}")
        precision = max(self.dense, key=self._precision_rank)
        self._precision = precision
        self._tpp = self.tpp_of(precision)
        self._origin = str((info.context or {}).get("origin", BUNDLED))
        return self

    def _precision_rank(self, precision: str) -> tuple[float, int, bool, int]:
        """Highest TPP first; among equal TPPs the best-supported figure names the row's confidence, then the
        16-bit figure (the one datasheets lead with), then the shortest bit length."""
        bits = PRECISION_BITS[precision]
        confidence = _CONFIDENCE_RANK[self.dense[precision].confidence]
        return (round(self.tpp_of(precision), 6), confidence, bits == 16, -bits)

    def tpp_of(self, precision: str) -> float:
        """TPP the figure of one precision gives (its TOPS × its bit length)."""
        return self.dense[precision].tflops * PRECISION_BITS[precision]

    @property
    def tpp(self) -> float:
        return self._tpp

    @property
    def tpp_precision(self) -> str:
        """The precision whose figure sets the TPP (``fp4`` on Blackwell Ultra, ``fp16``/``fp8`` on Hopper)."""
        return self._precision

    @property
    def confidence(self) -> Confidence:
        """Confidence of the figure that sets the TPP."""
        return self.dense[self._precision].confidence

    @property
    def origin(self) -> str:
        """``bundled``, or the path of the operator's local catalog file the row came from."""
        return self._origin

    @property
    def local(self) -> bool:
        """Whether the row comes from an operator's local catalog file (decisions using it say so)."""
        return self._origin not in (BUNDLED, STAND_IN)

    @property
    def pci_vendor_id(self) -> int:
        return PCI_VENDORS[self.vendor]

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


MAX_NAME_CHARS = 256
_SEPARATORS = re.compile(r"[\s_]+")
_SHARED_SUFFIX = "-shared"
_MIG_SUFFIX = re.compile(r"-mig-\d+g\.\d+gb(\+me)?")


def normalise_name(name: str) -> str:
    """Fold NVML names, GFD labels and catalog keys onto one spelling (lower case, dashes), without the
    ``-SHARED`` and ``-MIG-<profile>`` suffixes GFD appends (any number of them, in any order).

    Linear in the length of ``name``: a selector value is tenant input, read on the event loop, so suffixes are
    peeled from the end by moving one index (re-substituting the whole string per suffix was quadratic: a 112 kB
    value of repeated suffixes held the loop for seconds). A MIG suffix can only start at the last ``-mig-``."""
    folded = _SEPARATORS.sub("-", name.strip()).lower()
    end = len(folded)
    while True:
        if folded.endswith(_SHARED_SUFFIX, 0, end):
            end -= len(_SHARED_SUFFIX)
            continue
        start = folded.rfind("-mig-", 0, end)
        if start < 0 or _MIG_SUFFIX.fullmatch(folded, start, end) is None:
            return folded[:end]
        end = start


class Catalog:
    """All known accelerators, indexed by every spelling; the most powerful one is the conservative default."""

    def __init__(self, specs: list[GpuSpec], sources: Mapping[str, SourceRef] | None = None) -> None:
        if not specs:
            raise CatalogError("the catalog holds no GPU")
        self._specs = tuple(specs)
        self.sources: Mapping[str, SourceRef] = dict(sources or {})
        self._by_name: dict[str, GpuSpec] = {}
        self._by_pci: dict[tuple[int, int], GpuSpec] = {}
        keys: dict[str, GpuSpec] = {}
        for spec in specs:
            if keys.setdefault(spec.key, spec) is not spec:
                raise CatalogError(f"key {spec.key!r} is used by two rows")
            for alias in (spec.key, *spec.names, *spec.labels):
                other = self._by_name.setdefault(normalise_name(alias), spec)
                if other is not spec:
                    raise CatalogError(f"name {alias!r} is used by both {other.key} and {spec.key}")
            for pci in spec.pci_device_ids:
                other = self._by_pci.setdefault((spec.pci_vendor_id, pci), spec)
                if other is not spec:
                    raise CatalogError(f"PCI device id {pci:#06x} is used by both {other.key} and {spec.key}")
        self._most_powerful = max(specs, key=lambda s: s.tpp)
        self._mig_cache: dict[str, tuple[GpuSpec, float] | None] = {}

    def __iter__(self) -> Iterator[GpuSpec]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def get(self, name: str) -> GpuSpec | None:
        """A model by catalog key, NVML name or GFD label (suffixes such as ``-SHARED`` ignored). A name longer than
        ``MAX_NAME_CHARS`` is no model (a label value has at most 63 characters): not worth folding, since a selector
        value is tenant input and folding a megabyte costs ~75 ms of the event loop."""
        if len(name) > MAX_NAME_CHARS:
            return None
        return self._by_name.get(normalise_name(name))

    def by_pci_device_id(self, pci_device_id: int, vendor_id: int = PCI_VENDORS["nvidia"]) -> GpuSpec | None:
        """A model by PCI device id: either the 16-bit device id of ``vendor_id`` (NVIDIA unless told) or NVML's
        combined ``pciDeviceId`` (device id in the high 16 bits, vendor in the low)."""
        if pci_device_id > 0xFFFF:
            pci_device_id, vendor_id = pci_device_id >> 16, pci_device_id & 0xFFFF
        return self._by_pci.get((vendor_id, pci_device_id))

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

    def merged(self, local: Catalog) -> Catalog:
        """This catalog with an operator's ``local`` rows over it: a local row replaces the bundled row of the
        same key; a new key may not take a name, label or PCI id a remaining row holds (the error names both)."""
        replaced = {spec.key for spec in local}
        kept = [spec for spec in self._specs if spec.key not in replaced]
        return Catalog([*kept, *local], {**self.sources, **local.sources})


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(row)'}: {err['msg']}" for err in exc.errors())


def parse_catalog(document: Any, origin: str, *, base: Catalog | None = None) -> Catalog:
    """Validate a catalog document; errors name ``origin``, the row and the field.

    ``base`` is the catalog a local file extends: the file's figures may cite the base's sources as well as its
    own, its source ids may not redefine the base's, and the result is the base with the file's rows merged in
    (each marked with ``origin``)."""
    if not isinstance(document, dict) or not isinstance(document.get("gpus"), list):
        raise CatalogError(f"{origin}: expected a mapping with a 'gpus' list")
    extra = sorted(set(document) - {"schema", "sources", "gpus"})
    if extra:
        raise CatalogError(f"{origin}: unknown top-level key(s) {extra}; expected schema, sources, gpus")
    if document.get("schema") != CATALOG_SCHEMA:
        raise CatalogError(
            f"{origin}: schema: {document.get('schema')!r} is not supported; this gpuquota reads catalog schema "
            f"{CATALOG_SCHEMA} (per-precision figures under 'dense', each with source and confidence)"
        )
    sources: dict[str, SourceRef] = {}
    raw_sources = document.get("sources") or []
    if not isinstance(raw_sources, list):
        raise CatalogError(f"{origin}: sources: expected a list")
    for index, row in enumerate(raw_sources):
        try:
            ref = SourceRef.model_validate(row)
        except ValidationError as exc:
            raise CatalogError(f"{origin}: sources[{index}]: {_problems(exc)}") from None
        if ref.id in sources or (base is not None and ref.id in base.sources):
            raise CatalogError(f"{origin}: sources[{index}]: id {ref.id!r} is already defined")
        sources[ref.id] = ref
    known = {**(base.sources if base is not None else {}), **sources}
    context = {"sources": known, "origin": BUNDLED if base is None else origin}
    specs: list[GpuSpec] = []
    for index, row in enumerate(document["gpus"]):
        try:
            specs.append(GpuSpec.model_validate(row, context=context))
        except ValidationError as exc:
            where = row.get("key", f"#{index}") if isinstance(row, dict) else f"#{index}"
            raise CatalogError(f"{origin}: gpus[{index}] ({where}): {_problems(exc)}") from None
    try:
        own = Catalog(specs, sources)
        return own if base is None else base.merged(own)
    except CatalogError as exc:  # duplicate names or PCI ids: say which file
        raise CatalogError(f"{origin}: {exc}") from None


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"{path}: {exc}") from None


def load_catalog_file(path: Path) -> Catalog:
    """A complete catalog from a file (its rows are marked as bundled: it stands alone)."""
    return parse_catalog(_read_yaml(path), str(path))


def load_local_catalog(path: Path, base: Catalog | None = None) -> Catalog:
    """The bundled catalog (or ``base``) with an operator's catalog file merged over it, its rows marked local.
    Read afresh on every call, so a reload picks up an edited file; a broken file raises ``CatalogError`` and
    changes nothing."""
    return parse_catalog(_read_yaml(path), str(path), base=base or load_catalog())


@cache
def load_catalog() -> Catalog:
    """The bundled catalog, parsed once per process."""
    text = resources.files("gpuquota.catalog").joinpath("gpus.yaml").read_text(encoding="utf-8")
    return parse_catalog(yaml.safe_load(text), "gpuquota/catalog/gpus.yaml")
