"""From raw NVML readings to what a device counts for: its catalog model, TPP, 3A090 class and H100e.

Pure functions, so every rule (PCI id before name, estimate only for unknown parts and say so, MIG slices
prorated by SMs, never count a known-but-unrated device as zero) is tested without any NVML.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from gpuquota.catalog import Catalog, GpuSpec, classify, estimate_tpp, h100_equivalents
from gpuquota.domain import GpuClass
from gpuquota.inventory.model import DeviceInfo, MigInstance, NodeInventory

NVIDIA_PCI_VENDOR = 0x10DE
MAX_MIG_SLICES = 7  # compute slices of a full GPU on every MIG-capable part so far

# FP32 CUDA cores per SM by compute capability: turns nvmlDeviceGetNumGpuCores into an SM count for the estimate.
_CORES_PER_SM: dict[tuple[int, int], int] = {
    (7, 0): 64,  # Volta
    (7, 5): 64,  # Turing
    (8, 0): 64,  # GA100
    (8, 6): 128,  # GA10x
    (8, 7): 128,  # Orin
    (8, 9): 128,  # Ada
    (9, 0): 128,  # Hopper
    (10, 0): 128,  # Blackwell data-centre
    (12, 0): 128,  # Blackwell GB20x
}

# nvmlBrandType_t values (nvml.h) → the names nvidia-smi prints.
_BRANDS = {
    0: "Unknown", 1: "Quadro", 2: "Tesla", 3: "NVS", 4: "GRID", 5: "GeForce", 6: "Titan",
    7: "NVIDIA Virtual Applications", 8: "NVIDIA Virtual PC", 9: "NVIDIA Virtual Compute Server",
    10: "NVIDIA RTX Virtual Workstation", 11: "NVIDIA Cloud Gaming", 12: "Quadro RTX", 13: "NVIDIA RTX",
    14: "NVIDIA", 15: "GeForce RTX", 16: "Titan RTX", 17: "NVIDIA DLA", 18: "NVIDIA RTX Virtual Game Dev",
    19: "NVIDIA NPU",
}  # fmt: skip

_PROFILE_IN_NAME = re.compile(r"\b((?:\d+c\.)?\d+g\.\d+gb(?:\+[a-z0-9]+)?)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RawMig:
    """What NVML says about one MIG device handle (attributes answer on MIG handles only)."""

    index: int
    uuid: str | None = None
    name: str | None = None
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None
    slice_count: int | None = None
    compute_slice_count: int | None = None
    sm_count: int | None = None
    memory_mb: int | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RawDevice:
    """What NVML says about one GPU; ``None`` where the query was not supported or failed (then ``error``)."""

    index: int
    uuid: str | None = None
    name: str | None = None
    pci_device_id: int | None = None
    brand: int | None = None
    memory_bytes: int | None = None
    cc_major: int | None = None
    cc_minor: int | None = None
    max_sm_clock_mhz: int | None = None
    power_limit_mw: int | None = None
    cuda_cores: int | None = None
    mig_mode: bool | None = None
    migs: tuple[RawMig, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RawNode:
    driver_version: str | None
    nvml_version: str | None
    cuda_driver_version: int | None
    devices: tuple[RawDevice, ...]


def brand_name(brand: int | None) -> str | None:
    return None if brand is None else _BRANDS.get(brand, f"brand {brand}")


def match_catalog(raw: RawDevice, catalog: Catalog) -> GpuSpec | None:
    """PCI device id first (it survives renamed boards and localised names), then the NVML name."""
    if raw.pci_device_id is not None and (raw.pci_device_id & 0xFFFF) in (NVIDIA_PCI_VENDOR, 0):
        spec = catalog.by_pci_device_id(raw.pci_device_id)
        if spec is not None:
            return spec
    return catalog.get(raw.name) if raw.name else None


def sm_count_from_cores(raw: RawDevice) -> int | None:
    if raw.cuda_cores is None or raw.cc_major is None or raw.cc_minor is None or raw.cuda_cores <= 0:
        return None
    per_sm = _CORES_PER_SM.get((raw.cc_major, raw.cc_minor))
    if per_sm is None:  # a newer minor revision: the highest figure of that major, else the common 128
        same_major = [v for (major, _), v in _CORES_PER_SM.items() if major == raw.cc_major]
        per_sm = max(same_major) if same_major else 128
    return raw.cuda_cores // per_sm or None


NO_FIGURE = "estimate: not in the catalog and no NVML-derived figure"
"""How a device's basis starts when nothing could be estimated (its TPP is then a placeholder, not a figure)."""


def has_estimate(device: DeviceInfo) -> bool:
    """Whether an uncatalogued device's TPP is a real NVML-derived estimate (not the no-figure placeholder)."""
    return (
        device.catalog_key is None
        and device.estimated
        and device.tpp > 0
        and not (device.estimate_basis or "").startswith(NO_FIGURE)
    )


@dataclass(frozen=True, slots=True)
class _Rating:
    catalog_key: str | None
    tpp: float
    gpu_class: GpuClass
    estimated: bool
    basis: str | None
    sm_count: int | None


def _rate(raw: RawDevice, catalog: Catalog) -> _Rating:
    spec = match_catalog(raw, catalog)
    derived_sms = sm_count_from_cores(raw)
    if spec is not None:
        return _Rating(spec.key, spec.tpp, spec.gpu_class, False, None, spec.sm_count or derived_sms)
    if raw.name is None and raw.pci_device_id is None:
        # Nothing identifies the device (lost GPU): it is no usable capacity; ``error`` says why.
        return _Rating(None, 0.0, GpuClass.UNCONTROLLED, False, None, None)
    estimate = None
    if raw.cc_major is not None and raw.cc_minor is not None and derived_sms and raw.max_sm_clock_mhz:
        estimate = estimate_tpp(raw.cc_major, raw.cc_minor, derived_sms, raw.max_sm_clock_mhz)
    if estimate is not None:
        # PD is unknown without a die area: classify() then treats it as high (conservative).
        return _Rating(None, estimate.tpp, classify(estimate.tpp, None), True, estimate.basis, derived_sms)
    strongest = catalog.strongest
    cc = f"{raw.cc_major}.{raw.cc_minor}" if raw.cc_major is not None else "unknown"
    basis = (
        f"{NO_FIGURE} (compute capability {cc}); shown as the most powerful catalog GPU, {strongest.key} "
        f"({strongest.tpp:g} TPP); workloads count the policy's unknown-part figure"
    )
    return _Rating(None, strongest.tpp, strongest.gpu_class, True, basis, derived_sms)


def mig_profile(raw: RawMig) -> str | None:
    """The profile name: from the MIG device's name (``… MIG 3g.40gb``) when the driver puts it there, else
    from its slice count and memory rounded up to whole GiB, the way NVIDIA names profiles (40192 MiB → 40gb)."""
    if raw.name:
        found = _PROFILE_IN_NAME.search(raw.name)
        if found:
            return found.group(1).lower()
    if raw.slice_count and raw.memory_mb:
        gigabytes = max(1, math.ceil(raw.memory_mb / 1024))
        prefix = (
            f"{raw.compute_slice_count}c."
            if raw.compute_slice_count and raw.compute_slice_count != raw.slice_count
            else ""
        )
        return f"{prefix}{raw.slice_count}g.{gigabytes}gb"
    return None


def mig_tpp(raw: RawMig, profile: str | None, device_tpp: float, parent_sms: int | None, spec: GpuSpec | None) -> float:
    """Prorate the parent's TPP by SMs (what the instance can compute with); fall back to the catalog's SM
    count for the profile, then to compute slices out of seven."""
    if raw.sm_count and parent_sms:
        return device_tpp * (min(raw.sm_count, parent_sms) / parent_sms)  # a whole-GPU slice is exactly the parent
    if spec is not None and profile is not None:
        from_catalog = spec.mig_tpp(profile.split(".", 1)[1] if profile.count(".") == 2 else profile)
        if from_catalog is not None:
            return from_catalog
    slices = raw.compute_slice_count or raw.slice_count
    if slices:
        return device_tpp * min(slices, MAX_MIG_SLICES) / MAX_MIG_SLICES
    return device_tpp  # nothing to prorate by: never count less than the whole parent


def rate_device(raw: RawDevice, catalog: Catalog) -> DeviceInfo:
    rating = _rate(raw, catalog)
    spec = catalog.get(rating.catalog_key) if rating.catalog_key else None
    migs = tuple(
        MigInstance(
            index=m.index,
            uuid=m.uuid,
            profile=(profile := mig_profile(m)),
            gpu_instance_id=m.gpu_instance_id,
            compute_instance_id=m.compute_instance_id,
            slice_count=m.slice_count,
            sm_count=m.sm_count,
            memory_bytes=None if m.memory_mb is None else m.memory_mb * 1024 * 1024,
            tpp=mig_tpp(m, profile, rating.tpp, rating.sm_count, spec),
            error=m.error,
        )
        for m in raw.migs
    )
    return DeviceInfo(
        index=raw.index,
        uuid=raw.uuid,
        name=raw.name,
        pci_device_id=raw.pci_device_id,
        brand=brand_name(raw.brand),
        memory_bytes=raw.memory_bytes,
        compute_capability=None if raw.cc_major is None else f"{raw.cc_major}.{raw.cc_minor or 0}",
        max_sm_clock_mhz=raw.max_sm_clock_mhz,
        power_limit_w=None if raw.power_limit_mw is None else raw.power_limit_mw / 1000,
        mig_mode=raw.mig_mode,
        catalog_key=rating.catalog_key,
        tpp=rating.tpp,
        gpu_class=rating.gpu_class,
        h100e=h100_equivalents(rating.tpp),
        estimated=rating.estimated,
        estimate_basis=rating.basis,
        mig=migs,
        error=raw.error,
        sm_count=rating.sm_count,
    )


def rate_node(raw: RawNode, catalog: Catalog, node: str) -> NodeInventory:
    return NodeInventory(
        node=node,
        driver_version=raw.driver_version,
        nvml_version=raw.nvml_version,
        cuda_driver_version=raw.cuda_driver_version,
        devices=tuple(rate_device(d, catalog) for d in raw.devices),
    )
