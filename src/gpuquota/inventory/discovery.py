"""Reading the local GPUs through NVML (the ``pynvml`` module of ``nvidia-ml-py``).

Every query is guarded on its own: a query the device does not support leaves its field empty, and any other
NVML error (a lost GPU, a permission problem) is recorded on that device only, so one bad GPU never hides the
others. Only a failure to start NVML at all — no driver, no library — stops discovery, as ``NvmlUnavailable``
with a one-line message.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import pynvml

from gpuquota.catalog import Catalog, load_catalog
from gpuquota.inventory.model import NodeInventory
from gpuquota.inventory.rating import RawDevice, RawMig, RawNode, rate_node

T = TypeVar("T")

NVML_UNAVAILABLE_EXIT = 3
"""Exit status of ``gpuquota inventory`` and ``gpuquota agent`` when NVML cannot start (documented in agent.md)."""


class NvmlUnavailable(Exception):  # noqa: N818 -- the name the interface promises
    """NVML cannot be used on this machine. The message is one line, fit for a user and a pod's log."""

    exit_code = NVML_UNAVAILABLE_EXIT


def _error_name(nvml: Any, value: int) -> str:
    for attr in dir(nvml):
        if attr.startswith("NVML_ERROR_") and getattr(nvml, attr) == value:
            return str(attr)
    return f"NVML error {value}"


def _describe(nvml: Any, exc: Exception) -> str:
    value = getattr(exc, "value", None)
    name = _error_name(nvml, value) if isinstance(value, int) else type(exc).__name__
    return f"{name}: {exc}"


_INIT_HINTS = {
    "NVML_ERROR_LIBRARY_NOT_FOUND": "libnvidia-ml.so.1 not found: no NVIDIA driver on this machine, or the container "
    "was not started with the NVIDIA runtime",
    "NVML_ERROR_DRIVER_NOT_LOADED": "the NVIDIA kernel driver is not loaded (no GPU on this machine?)",
    "NVML_ERROR_NO_PERMISSION": "no permission to open the GPU device files (/dev/nvidia*)",
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": "the NVML library and the kernel driver differ in version "
    "(driver upgraded without a reboot?)",
}


def _unavailable(nvml: Any, exc: Exception, step: str) -> NvmlUnavailable:
    value = getattr(exc, "value", None)
    name = _error_name(nvml, value) if isinstance(value, int) else type(exc).__name__
    hint = _INIT_HINTS.get(name)
    detail = f"{hint} ({name})" if hint else f"{step} failed: {_describe(nvml, exc)}"
    return NvmlUnavailable(f"NVML is not available: {detail}")


class _Reader:
    """Runs NVML queries for one device, treating 'not supported' as absent and collecting every other error."""

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        self._failures: dict[str, list[str]] = {}  # error description → the queries that got it
        self._absent = {
            getattr(nvml, "NVML_ERROR_NOT_SUPPORTED", 3),
            getattr(nvml, "NVML_ERROR_FUNCTION_NOT_FOUND", 13),
        }

    def read(self, what: str, query: Callable[..., T], *args: Any) -> T | None:
        try:
            return query(*args)
        except self.nvml.NVMLError as exc:
            if exc.value not in self._absent:
                self._failures.setdefault(_describe(self.nvml, exc), []).append(what)
            return None

    @property
    def error(self) -> str | None:
        """One line: each distinct error with the queries that failed with it (a lost GPU fails them all)."""
        parts = []
        for description, queries in self._failures.items():
            shown = ", ".join(queries[:3]) + (f" and {len(queries) - 3} more" if len(queries) > 3 else "")
            parts.append(f"{description} ({shown})")
        return "; ".join(parts) or None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _read_migs(nvml: Any, handle: Any) -> tuple[RawMig, ...]:
    reader = _Reader(nvml)
    slots = reader.read("nvmlDeviceGetMaxMigDeviceCount", nvml.nvmlDeviceGetMaxMigDeviceCount, handle) or 0
    migs: list[RawMig] = []
    for slot in range(slots):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
        except nvml.NVMLError as exc:
            if exc.value == getattr(nvml, "NVML_ERROR_NOT_FOUND", 6):
                continue  # an empty slot
            migs.append(RawMig(index=slot, error=f"{_describe(nvml, exc)} (nvmlDeviceGetMigDeviceHandleByIndex)"))
            continue
        mig_reader = _Reader(nvml)
        attributes = mig_reader.read("nvmlDeviceGetAttributes", nvml.nvmlDeviceGetAttributes, mig)
        memory = mig_reader.read("nvmlDeviceGetMemoryInfo", nvml.nvmlDeviceGetMemoryInfo, mig)
        memory_mb = getattr(attributes, "memorySizeMB", None)
        if memory_mb is None and memory is not None:
            memory_mb = int(memory.total) // (1024 * 1024)
        migs.append(
            RawMig(
                index=slot,
                uuid=_text(mig_reader.read("nvmlDeviceGetUUID", nvml.nvmlDeviceGetUUID, mig)),
                name=_text(mig_reader.read("nvmlDeviceGetName", nvml.nvmlDeviceGetName, mig)),
                gpu_instance_id=mig_reader.read("nvmlDeviceGetGpuInstanceId", nvml.nvmlDeviceGetGpuInstanceId, mig),
                compute_instance_id=mig_reader.read(
                    "nvmlDeviceGetComputeInstanceId", nvml.nvmlDeviceGetComputeInstanceId, mig
                ),
                slice_count=getattr(attributes, "gpuInstanceSliceCount", None),
                compute_slice_count=getattr(attributes, "computeInstanceSliceCount", None),
                sm_count=getattr(attributes, "multiprocessorCount", None),
                memory_mb=None if memory_mb is None else int(memory_mb),
                error=mig_reader.error,
            )
        )
    return tuple(migs)


def read_device(nvml: Any, index: int) -> RawDevice:
    """All the readings of one GPU; a failing query leaves its field ``None`` and is named in ``error``."""
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
    except nvml.NVMLError as exc:
        return RawDevice(index=index, error=f"{_describe(nvml, exc)} (nvmlDeviceGetHandleByIndex)")
    reader = _Reader(nvml)
    pci = reader.read("nvmlDeviceGetPciInfo", nvml.nvmlDeviceGetPciInfo, handle)
    memory = reader.read("nvmlDeviceGetMemoryInfo", nvml.nvmlDeviceGetMemoryInfo, handle)
    cc = reader.read("nvmlDeviceGetCudaComputeCapability", nvml.nvmlDeviceGetCudaComputeCapability, handle)
    mig_mode = reader.read("nvmlDeviceGetMigMode", nvml.nvmlDeviceGetMigMode, handle)
    mig_enabled = None if mig_mode is None else bool(mig_mode[0] == getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1))
    device = RawDevice(
        index=index,
        uuid=_text(reader.read("nvmlDeviceGetUUID", nvml.nvmlDeviceGetUUID, handle)),
        name=_text(reader.read("nvmlDeviceGetName", nvml.nvmlDeviceGetName, handle)),
        pci_device_id=None if pci is None else int(pci.pciDeviceId),
        brand=reader.read("nvmlDeviceGetBrand", nvml.nvmlDeviceGetBrand, handle),
        memory_bytes=None if memory is None else int(memory.total),
        cc_major=None if cc is None else int(cc[0]),
        cc_minor=None if cc is None else int(cc[1]),
        max_sm_clock_mhz=reader.read(
            "nvmlDeviceGetMaxClockInfo", nvml.nvmlDeviceGetMaxClockInfo, handle, nvml.NVML_CLOCK_SM
        ),
        power_limit_mw=reader.read("nvmlDeviceGetPowerManagementLimit", nvml.nvmlDeviceGetPowerManagementLimit, handle),
        cuda_cores=reader.read("nvmlDeviceGetNumGpuCores", nvml.nvmlDeviceGetNumGpuCores, handle),
        mig_mode=mig_enabled,
        migs=_read_migs(nvml, handle) if mig_enabled else (),
    )
    return device if reader.error is None else replace(device, error=reader.error)


def read_node(nvml: Any = pynvml) -> RawNode:
    """Initialise NVML, read every device, shut NVML down again (so a MIG change is seen on the next read)."""
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise _unavailable(nvml, exc, "nvmlInit") from None
    try:
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except nvml.NVMLError as exc:
            raise _unavailable(nvml, exc, "nvmlDeviceGetCount") from None
        reader = _Reader(nvml)
        return RawNode(
            driver_version=_text(reader.read("driver version", nvml.nvmlSystemGetDriverVersion)),
            nvml_version=_text(reader.read("NVML version", nvml.nvmlSystemGetNVMLVersion)),
            cuda_driver_version=reader.read("CUDA driver version", nvml.nvmlSystemGetCudaDriverVersion),
            devices=tuple(read_device(nvml, index) for index in range(count)),
        )
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()


def default_node_name() -> str:
    """The Node this process runs on: ``NODE_NAME`` (set from the downward API in the DaemonSet), else the host."""
    return os.environ.get("NODE_NAME") or socket.gethostname()


def discover(nvml: Any = pynvml, *, catalog: Catalog | None = None, node_name: str | None = None) -> NodeInventory:
    """The local node's GPU inventory. Raises ``NvmlUnavailable`` when NVML cannot start."""
    raw = read_node(nvml)
    return rate_node(raw, catalog or load_catalog(), node_name or default_node_name())
