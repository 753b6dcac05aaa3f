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
from gpuquota.workloads.gpu_names import MISSING, GpuResources, Unit, add_units, default_gpu_resources, units_of

GpuCounts = dict[str, int]
"""Units per GPU resource name, only names with a positive count."""

UnitCounts = dict[Unit, int]
"""A pod's GPU request as normalised units (``gpu_names.Unit``)."""


def _gpu_entries(values: object, path: str, key: str, table: GpuResources) -> GpuCounts | None:
    """Every GPU entry of ``resources[key]``, zeros included (they matter when comparing with limits).

    Hot path: plain dicts and small non-negative ints are taken as they are; anything else goes through the
    full quantity parser. Field paths are only formatted when something is wrong.
    """
    if values is None:
        return None
    if type(values) is not dict and not isinstance(values, Mapping):
        raise WorkloadError(f"must be a mapping, got {type_name(values)}", path=f"{path}.{key}")
    found: GpuCounts | None = None
    known = table.rows
    for name, value in values.items():
        row = known.get(name, MISSING)
        if row is MISSING:
            row = table.get(name) if type(name) is str else None
        if row is None:
            continue
        bound = row.max_units or MAX_GPUS_PER_CONTAINER
        if type(value) is int and 0 <= value <= bound:
            units = value
        elif type(value) is str and value.isascii() and value.isdigit() and int(value) <= bound:
            units = int(value)
        else:
            units = device_count(value, f"{path}.{key}[{name}]", maximum=bound)
        if found is None:
            found = {name: units}
        else:
            found[name] = units
    return found


def container_gpus(resources: Mapping[str, Any], path: str, table: GpuResources | None = None) -> GpuCounts:
    """GPU units of one ``resources`` block (``path`` names it) by resource name. Limits imply requests; requests
    without limits, or requests that differ from limits, are refused as the API server refuses them for devices."""
    table = table or default_gpu_resources()
    if not resources:
        return {}
    if type(resources) is not dict and not isinstance(resources, Mapping):
        raise WorkloadError(f"must be a mapping, got {type_name(resources)}", path=path)
    limits = _gpu_entries(resources.get("limits"), path, "limits", table)
    requests = _gpu_entries(resources.get("requests"), path, "requests", table)
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


def container_units(resources: Mapping[str, Any], path: str, table: GpuResources) -> UnitCounts:
    """One ``resources`` block as normalised units (HAMi's per-GPU limits folded into the GPUs they limit)."""
    return units_of(container_gpus(resources, path, table), table, path)


def _max_into(total: UnitCounts, other: UnitCounts) -> None:
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


def _resources_of(container: object, path: str, key: str, index: int, table: GpuResources) -> UnitCounts:
    if type(container) is not dict and not isinstance(container, Mapping):
        raise WorkloadError(f"must be a mapping, got {type_name(container)}", path=f"{path}.{key}[{index}]")
    resources = container.get("resources")
    if not resources or not _may_hold_gpus(resources, table):
        return {}
    return container_units(resources, f"{path}.{key}[{index}].resources", table)


def _may_hold_gpus(resources: object, table: GpuResources) -> bool:
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
        known = table.rows
        for name in values:
            row = known.get(name, MISSING)
            if row is not None and (row is not MISSING or type(name) is not str or table.get(name) is not None):
                return True
    return False


def pod_gpus(spec: Mapping[str, Any], path: str, table: GpuResources | None = None) -> UnitCounts:
    """Effective GPU request of one pod (``spec`` is a PodSpec at ``path``) from its containers' resources, with
    overhead, as normalised units. (DRA claims and pod annotations are added by ``extract``.)"""
    table = table or default_gpu_resources()
    total: UnitCounts = {}
    for index, container in enumerate(_container_list(spec, "containers", path)):
        own = _resources_of(container, path, "containers", index, table)
        if own:
            add_units(total, own)
    inits = _container_list(spec, "initContainers", path)
    if inits:
        init_peak: UnitCounts = {}
        sidecars: UnitCounts = {}
        for index, container in enumerate(inits):
            own = _resources_of(container, path, "initContainers", index, table)
            restart = container.get("restartPolicy")
            if restart is not None and restart != "Always":
                raise WorkloadError(
                    f"restartPolicy of an init container may only be Always, got {restart!r}",
                    path=f"{path}.initContainers[{index}].restartPolicy",
                )
            if restart == "Always":
                # A sidecar keeps running: it adds to the pod's steady state and to every later init container.
                add_units(total, own)
                add_units(sidecars, own)
                _max_into(init_peak, sidecars)
            else:
                running = dict(sidecars)
                add_units(running, own)
                _max_into(init_peak, running)
        _max_into(total, init_peak)
    overhead = spec.get("overhead")
    if overhead:
        extra = _gpu_entries(overhead, path, "overhead", table)
        if extra:
            add_units(total, units_of(extra, table, f"{path}.overhead"))
    return total
