"""GPU resources of a pod: which resource names are accelerators, and the pod's effective request.

The effective request follows the scheduler (``resourcehelper.PodRequests``): per resource, the larger of
(a) the app containers plus every restartable init container (sidecar, ``restartPolicy: Always``), and
(b) each init container in turn, plus the sidecars started before it; then the pod ``overhead`` is added.
For extended resources such as GPUs, limits imply requests and both, when set, must be equal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gpuquota.workloads.errors import WorkloadError
from gpuquota.workloads.fields import MAX_GPUS_PER_CONTAINER, device_count, type_name

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


def _gpu_entries(values: object, path: str, key: str) -> GpuCounts | None:
    """Every GPU entry of ``resources[key]``, zeros included (they matter when comparing with limits).

    Hot path: plain dicts and small non-negative ints are taken as they are; anything else goes through the
    full quantity parser. Field paths are only formatted when something is wrong.
    """
    if values is None:
        return None
    if type(values) is not dict and not isinstance(values, Mapping):
        raise WorkloadError(f"must be a mapping, got {type_name(values)}", path=f"{path}.{key}")
    found: GpuCounts | None = None
    for name, value in values.items():
        if name in VENDOR_OF_RESOURCE or name.startswith(NVIDIA_MIG_PREFIX):
            if type(value) is int and 0 <= value <= MAX_GPUS_PER_CONTAINER:
                units = value
            elif type(value) is str and value.isascii() and value.isdigit() and int(value) <= MAX_GPUS_PER_CONTAINER:
                units = int(value)
            else:
                units = device_count(value, f"{path}.{key}[{name}]")
            if found is None:
                found = {name: units}
            else:
                found[name] = units
    return found


def container_gpus(resources: Mapping[str, Any], path: str) -> GpuCounts:
    """GPU units of one ``resources`` block (``path`` names it). Limits imply requests; requests without
    limits, or requests that differ from limits, are refused as the API server refuses them for devices."""
    if not resources:
        return {}
    if type(resources) is not dict and not isinstance(resources, Mapping):
        raise WorkloadError(f"must be a mapping, got {type_name(resources)}", path=path)
    limits = _gpu_entries(resources.get("limits"), path, "limits")
    requests = _gpu_entries(resources.get("requests"), path, "requests")
    if requests:
        for name, units in requests.items():
            limit = None if limits is None else limits.get(name)
            if limit is None:
                if units:
                    raise WorkloadError(
                        f"{name} is requested ({units}) without a limit; devices must be set in limits", path=path
                    )
            elif limit != units:
                raise WorkloadError(f"{name} request {units} differs from its limit {limit}", path=path)
    if not limits:
        return {}
    return {name: units for name, units in limits.items() if units}


def _add(total: GpuCounts, extra: GpuCounts) -> None:
    for name, units in extra.items():
        total[name] = total.get(name, 0) + units


def _max_into(total: GpuCounts, other: GpuCounts) -> None:
    for name, units in other.items():
        if units > total.get(name, 0):
            total[name] = units


def _container_list(spec: Mapping[str, Any], key: str, path: str) -> Sequence[Any]:
    containers: object = spec.get(key)
    if containers is None:
        return ()
    if not isinstance(containers, (list, tuple)):
        raise WorkloadError(f"must be a list, got {type_name(containers)}", path=f"{path}.{key}")
    return containers


def _resources_of(container: object, path: str, key: str, index: int) -> GpuCounts:
    if type(container) is not dict and not isinstance(container, Mapping):
        raise WorkloadError(f"must be a mapping, got {type_name(container)}", path=f"{path}.{key}[{index}]")
    resources = container.get("resources")
    if not resources:
        return {}
    return container_gpus(resources, f"{path}.{key}[{index}].resources") if _may_hold_gpus(resources) else {}


def _may_hold_gpus(resources: object) -> bool:
    """Cheap screen: a resources block whose limits and requests name no GPU needs no further reading (but a
    malformed block is passed on, to be refused with its path)."""
    if type(resources) is not dict:
        return True
    for key in ("limits", "requests"):
        values = resources.get(key)
        if values is None:
            continue
        if type(values) is not dict:
            return True
        for name in values:
            if name in VENDOR_OF_RESOURCE or name.startswith(NVIDIA_MIG_PREFIX):
                return True
    return False


def pod_gpus(spec: Mapping[str, Any], path: str) -> GpuCounts:
    """Effective GPU request of one pod (``spec`` is a PodSpec at ``path``), with overhead."""
    total: GpuCounts = {}
    for index, container in enumerate(_container_list(spec, "containers", path)):
        own = _resources_of(container, path, "containers", index)
        if own:
            _add(total, own)
    inits = _container_list(spec, "initContainers", path)
    if inits:
        init_peak: GpuCounts = {}
        sidecars: GpuCounts = {}
        for index, container in enumerate(inits):
            own = _resources_of(container, path, "initContainers", index)
            restart = container.get("restartPolicy")
            if restart is not None and restart != "Always":
                raise WorkloadError(
                    f"restartPolicy of an init container may only be Always, got {restart!r}",
                    path=f"{path}.initContainers[{index}].restartPolicy",
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
    overhead = spec.get("overhead")
    if overhead:
        extra = _gpu_entries(overhead, path, "overhead")
        if extra:
            _add(total, {name: units for name, units in extra.items() if units})
    return total
