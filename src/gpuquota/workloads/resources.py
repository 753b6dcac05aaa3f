"""GPU resources of a pod: which resource names are accelerators, and the pod's effective request.

The effective request follows the scheduler (``resourcehelper.PodRequests``): per resource, the larger of
(a) the app containers plus every restartable init container (sidecar, ``restartPolicy: Always``), and
(b) each init container in turn, plus the sidecars started before it; then the pod ``overhead`` is added.
For extended resources such as GPUs, limits imply requests and both, when set, must be equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuquota.workloads.errors import WorkloadError
from gpuquota.workloads.fields import device_count, mapping, sequence, type_name

NVIDIA_GPU = "nvidia.com/gpu"
NVIDIA_SHARED = "nvidia.com/gpu.shared"
NVIDIA_MIG_PREFIX = "nvidia.com/mig-"
AMD_GPU = "amd.com/gpu"
GAUDI = "habana.ai/gaudi"

VENDOR_OF_RESOURCE = {NVIDIA_GPU: "nvidia", NVIDIA_SHARED: "nvidia", AMD_GPU: "amd", GAUDI: "intel"}

GpuCounts = dict[str, int]
"""Units per GPU resource name, only names with a positive count."""


def is_gpu_resource(name: str) -> bool:
    return name in VENDOR_OF_RESOURCE or name.startswith(NVIDIA_MIG_PREFIX)


def mig_profile(name: str) -> str | None:
    """``nvidia.com/mig-3g.40gb`` → ``3g.40gb`` (a ``+me`` media-extension suffix is dropped)."""
    if not name.startswith(NVIDIA_MIG_PREFIX):
        return None
    profile = name[len(NVIDIA_MIG_PREFIX) :]
    return profile.removesuffix("+me")


def _gpu_entries(resources: Mapping[str, Any], key: str, path: str) -> GpuCounts:
    """Every GPU entry of ``resources[key]``, zeros included (they matter when comparing with limits)."""
    values = mapping(resources, key, f"{path}.{key}")
    found: GpuCounts = {}
    for name, value in values.items():
        if is_gpu_resource(name):
            found[name] = device_count(value, f"{path}.{key}[{name}]")
    return found


def container_gpus(resources: Mapping[str, Any], path: str) -> GpuCounts:
    """GPU units of one ``resources`` block (``path`` names it). Limits imply requests; requests without
    limits, or requests that differ from limits, are refused as the API server refuses them for devices."""
    if not resources:
        return {}
    limits = _gpu_entries(resources, "limits", path)
    requests = _gpu_entries(resources, "requests", path)
    for name, units in requests.items():
        limit = limits.get(name)
        if limit is None:
            if units:
                raise WorkloadError(
                    f"{name} is requested ({units}) without a limit; devices must be set in limits", path=path
                )
        elif limit != units:
            raise WorkloadError(f"{name} request {units} differs from its limit {limit}", path=path)
    return {name: units for name, units in limits.items() if units}


def _add(total: GpuCounts, extra: GpuCounts) -> None:
    for name, units in extra.items():
        total[name] = total.get(name, 0) + units


def _max_into(total: GpuCounts, other: GpuCounts) -> None:
    for name, units in other.items():
        if units > total.get(name, 0):
            total[name] = units


def _containers(spec: Mapping[str, Any], key: str, path: str) -> list[tuple[Mapping[str, Any], str]]:
    out: list[tuple[Mapping[str, Any], str]] = []
    for index, container in enumerate(sequence(spec, key, f"{path}.{key}")):
        where = f"{path}.{key}[{index}]"
        if not isinstance(container, Mapping):
            raise WorkloadError(f"must be a mapping, got {type_name(container)}", path=where)
        out.append((container, where))
    return out


def pod_gpus(spec: Mapping[str, Any], path: str) -> GpuCounts:
    """Effective GPU request of one pod (``spec`` is a PodSpec at ``path``), with overhead."""
    total: GpuCounts = {}
    for container, where in _containers(spec, "containers", path):
        _add(total, container_gpus(mapping(container, "resources", f"{where}.resources"), f"{where}.resources"))
    init_peak: GpuCounts = {}
    sidecars: GpuCounts = {}
    for container, where in _containers(spec, "initContainers", path):
        own = container_gpus(mapping(container, "resources", f"{where}.resources"), f"{where}.resources")
        restart = container.get("restartPolicy")
        if restart is not None and restart != "Always":
            raise WorkloadError(
                f"restartPolicy of an init container may only be Always, got {restart!r}", path=f"{where}.restartPolicy"
            )
        if restart == "Always":
            # A sidecar keeps running: it adds to the pod's steady state and to every later init container.
            _add(total, own)
            _add(sidecars, own)
            _max_into(init_peak, sidecars)
        else:
            running = dict(sidecars)
            _add(running, own)
            _max_into(init_peak, running)
    _max_into(total, init_peak)
    overhead = mapping(spec, "overhead", f"{path}.overhead")
    if overhead:
        for name, value in overhead.items():
            if is_gpu_resource(name):
                units = device_count(value, f"{path}.overhead[{name}]")
                if units:
                    total[name] = total.get(name, 0) + units
    return total
