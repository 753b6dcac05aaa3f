"""GPU fractions a scheduler hands out from pod annotations instead of resources: the KAI scheduler's
``gpu-fraction`` (a share of one GPU's memory), ``gpu-memory`` (MiB) and ``gpu-fraction-num-devices``.

Such a pod requests no GPU resource at all, so without these it would read as zero GPUs. KAI time-slices the
compute of a shared GPU (only memory is divided), so a fraction counts at least as the policy's shared fraction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from gpuquota.workloads.errors import WorkloadError
from gpuquota.workloads.fields import MAX_GPUS_PER_CONTAINER
from gpuquota.workloads.gpu_names import Unit, fraction_text

KAI_FRACTION = "gpu-fraction"
KAI_MEMORY = "gpu-memory"
KAI_DEVICES = "gpu-fraction-num-devices"
KAI_ANNOTATIONS = (KAI_FRACTION, KAI_MEMORY)
MAX_MEMORY_MIB = 1 << 24


def _number(annotations: Mapping[str, Any], key: str, path: str) -> float:
    value = annotations[key]
    try:
        number = float(str(value).strip())
    except ValueError:
        raise WorkloadError(f"must be a number, got {value!r}", path=f"{path}[{key}]") from None
    if not math.isfinite(number) or number <= 0:
        raise WorkloadError(f"must be a positive number, got {value!r}", path=f"{path}[{key}]")
    return number


def kai_units(annotations: Mapping[str, Any], path: str) -> dict[Unit, int]:
    """The GPU share a pod's KAI annotations (at ``path``) ask for; empty when it has none."""
    if KAI_FRACTION not in annotations and KAI_MEMORY not in annotations:
        return {}
    devices = 1
    if KAI_DEVICES in annotations:
        count = _number(annotations, KAI_DEVICES, path)
        if count != int(count) or count > MAX_GPUS_PER_CONTAINER:
            raise WorkloadError(
                f"must be a whole number of devices up to {MAX_GPUS_PER_CONTAINER}, got {annotations[KAI_DEVICES]!r}",
                path=f"{path}[{KAI_DEVICES}]",
            )
        devices = int(count)
    if KAI_FRACTION in annotations:
        fraction = _number(annotations, KAI_FRACTION, path)
        if fraction > 1:
            raise WorkloadError(f"must be at most 1, got {annotations[KAI_FRACTION]!r}", path=f"{path}[{KAI_FRACTION}]")
        return {Unit("uncapped", "nvidia", fraction_text(fraction)): devices}
    memory = _number(annotations, KAI_MEMORY, path)
    if memory > MAX_MEMORY_MIB:
        raise WorkloadError(f"{annotations[KAI_MEMORY]!r} MiB is beyond any GPU", path=f"{path}[{KAI_MEMORY}]")
    return {Unit("memory", "nvidia", str(math.ceil(memory))): devices}
