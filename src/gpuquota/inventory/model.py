"""What a node's GPUs are, as discovered by NVML and published on the Node: plain frozen values with a JSON
form that is the ``gpuquota.io/inventory`` annotation (schema 1), so the agent and the webhook share one shape."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from gpuquota.domain import GpuClass

SCHEMA = 1


class InventoryFormatError(ValueError):
    """An inventory document (annotation or file) is not schema-1 JSON of the expected shape."""


@dataclass(frozen=True, slots=True)
class MigInstance:
    """One MIG device (a compute instance inside a GPU instance) with its share of the parent's TPP."""

    index: int
    uuid: str | None
    profile: str | None  # "3g.40gb"; "1c.3g.40gb" when a GPU instance is split into compute instances
    gpu_instance_id: int | None
    compute_instance_id: int | None
    slice_count: int | None  # gpuInstanceSliceCount
    sm_count: int | None
    memory_bytes: int | None
    tpp: float  # parent TPP × SMs of the instance ÷ SMs of the parent
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One physical GPU. ``tpp`` is the whole device's (MIG only partitions it); 0 when the device could not be
    identified at all (``error`` says why) — such a device is listed, never silently dropped."""

    index: int
    uuid: str | None
    name: str | None
    pci_device_id: int | None  # NVML's combined id: device id << 16 | vendor id (0x10DE)
    brand: str | None
    memory_bytes: int | None
    compute_capability: str | None  # "9.0"
    max_sm_clock_mhz: int | None
    power_limit_w: float | None
    mig_mode: bool | None  # None: the device does not support MIG
    catalog_key: str | None
    tpp: float
    gpu_class: GpuClass
    h100e: float
    estimated: bool = False
    estimate_basis: str | None = None
    mig: tuple[MigInstance, ...] = ()
    error: str | None = None
    sm_count: int | None = None

    @property
    def identified(self) -> bool:
        return self.tpp > 0

    @property
    def mig_profiles(self) -> dict[str, int]:
        """MIG instances per profile (``{"3g.40gb": 1, "2g.20gb": 2}``)."""
        counts: dict[str, int] = {}
        for instance in self.mig:
            key = instance.profile or "unknown"
            counts[key] = counts.get(key, 0) + 1
        return counts


@dataclass(frozen=True, slots=True)
class NodeInventory:
    node: str
    driver_version: str | None
    nvml_version: str | None
    cuda_driver_version: int | None  # NVML's integer form, 12040 = CUDA 12.4
    devices: tuple[DeviceInfo, ...] = field(default_factory=tuple)

    @property
    def total_tpp(self) -> float:
        return sum(d.tpp for d in self.devices)

    @property
    def gpu_count(self) -> int:
        """Identified physical GPUs (an unidentifiable, lost GPU is not capacity)."""
        return sum(1 for d in self.devices if d.identified)

    def mig_layout(self) -> tuple[tuple[int, bool | None, tuple[str | None, ...]], ...]:
        """What a MIG reconfiguration changes: per device, the mode and the instances' profiles."""
        return tuple((d.index, d.mig_mode, tuple(m.profile for m in d.mig)) for d in self.devices)

    def to_dict(self) -> dict[str, Any]:
        devices = []
        for device in self.devices:
            entry = asdict(device)
            entry["gpu_class"] = device.gpu_class.value
            entry["pci_device_id"] = None if device.pci_device_id is None else f"{device.pci_device_id:#010x}"
            entry["mig"] = [asdict(m) for m in device.mig]
            devices.append(entry)
        return {
            "schema": SCHEMA,
            "node": self.node,
            "driver_version": self.driver_version,
            "nvml_version": self.nvml_version,
            "cuda_driver_version": self.cuda_driver_version,
            "gpu_count": self.gpu_count,
            "total_tpp": round(self.total_tpp, 1),
            "devices": devices,
        }

    def to_json(self, indent: int | None = None) -> str:
        separators = (",", ":") if indent is None else None
        return json.dumps(self.to_dict(), indent=indent, separators=separators, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> NodeInventory:
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise InventoryFormatError(f"inventory is not JSON: {exc}") from None
        return cls.from_dict(document)

    @classmethod
    def from_dict(cls, document: Any) -> NodeInventory:
        if not isinstance(document, dict):
            raise InventoryFormatError("inventory must be a JSON object")
        if document.get("schema") != SCHEMA:
            raise InventoryFormatError(f"inventory schema {document.get('schema')!r} is not {SCHEMA}")
        try:
            devices = tuple(_device_from_dict(d) for d in document.get("devices") or [])
            return cls(
                node=str(document["node"]),
                driver_version=_opt_str(document.get("driver_version")),
                nvml_version=_opt_str(document.get("nvml_version")),
                cuda_driver_version=_opt_int(document.get("cuda_driver_version")),
                devices=devices,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InventoryFormatError(f"inventory has a malformed field: {type(exc).__name__}: {exc}") from None


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"expected an integer, got {value!r}")
    return int(value)


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _opt_bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise TypeError(f"expected true/false, got {value!r}")


def _pci(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        return int(value, 16) if value.lower().startswith("0x") else int(value)
    return _opt_int(value)


def _mig_from_dict(entry: Mapping[str, Any]) -> MigInstance:
    return MigInstance(
        index=int(entry["index"]),
        uuid=_opt_str(entry.get("uuid")),
        profile=_opt_str(entry.get("profile")),
        gpu_instance_id=_opt_int(entry.get("gpu_instance_id")),
        compute_instance_id=_opt_int(entry.get("compute_instance_id")),
        slice_count=_opt_int(entry.get("slice_count")),
        sm_count=_opt_int(entry.get("sm_count")),
        memory_bytes=_opt_int(entry.get("memory_bytes")),
        tpp=float(entry["tpp"]),
        error=_opt_str(entry.get("error")),
    )


def _device_from_dict(entry: Any) -> DeviceInfo:
    if not isinstance(entry, dict):
        raise TypeError("a device must be an object")
    tpp = float(entry["tpp"])
    if tpp < 0:
        raise ValueError(f"negative tpp {tpp}")
    return DeviceInfo(
        index=int(entry["index"]),
        uuid=_opt_str(entry.get("uuid")),
        name=_opt_str(entry.get("name")),
        pci_device_id=_pci(entry.get("pci_device_id")),
        brand=_opt_str(entry.get("brand")),
        memory_bytes=_opt_int(entry.get("memory_bytes")),
        compute_capability=_opt_str(entry.get("compute_capability")),
        max_sm_clock_mhz=_opt_int(entry.get("max_sm_clock_mhz")),
        power_limit_w=_opt_float(entry.get("power_limit_w")),
        mig_mode=_opt_bool(entry.get("mig_mode")),
        catalog_key=_opt_str(entry.get("catalog_key")),
        tpp=tpp,
        gpu_class=GpuClass(entry["gpu_class"]),
        h100e=float(entry["h100e"]),
        estimated=bool(entry.get("estimated", False)),
        estimate_basis=_opt_str(entry.get("estimate_basis")),
        mig=tuple(_mig_from_dict(m) for m in entry.get("mig") or []),
        error=_opt_str(entry.get("error")),
        sm_count=_opt_int(entry.get("sm_count")),
    )
