"""The options that say which resource names and DRA DeviceClasses are GPUs, shared by ``serve`` and ``check`` so
that an offline answer counts what the webhook counts (the chart passes ``webhook.gpuResources`` as these flags)."""

from __future__ import annotations

from typing import Annotated

import typer

from gpuquota.errors import UserError
from gpuquota.workloads import DEFAULT_ALL_DEVICES, GpuNameError, GpuResources, gpu_resources

GpuResourceOption = Annotated[
    list[str] | None,
    typer.Option(
        "--gpu-resource",
        metavar="NAME=VENDOR",
        help="Count a resource name as GPUs, besides the bundled table: NAME=VENDOR[,share=S][,model=M]"
        "[,fraction=F] (NAME ending in * is a prefix), e.g. "
        "nvidia.com/a100=nvidia,model=A100-SXM4-80GB. Repeatable.",
    ),
]
GpuDeviceClassOption = Annotated[
    list[str] | None,
    typer.Option(
        "--gpu-device-class",
        metavar="CLASS=VENDOR",
        help="A DRA DeviceClass whose devices are GPUs (CLASS=VENDOR[,share=S][,model=M][,fraction=F]), besides "
        "gpu.nvidia.com, mig.nvidia.com, gpu.amd.com, gpu.intel.com and gaudi.intel.com. Repeatable.",
    ),
]
DraAllDevicesOption = Annotated[
    int,
    typer.Option(
        "--dra-all-devices",
        help="GPUs a DRA request with allocationMode All, or a claim that cannot be read, counts as (per pod).",
    ),
]


def gpu_table(resource_flags: list[str] | None, class_flags: list[str] | None, all_devices: int) -> GpuResources:
    """The table the flags describe; bad entries are a ``UserError`` naming the flag."""
    if not 1 <= all_devices <= 64:
        raise UserError(f"--dra-all-devices must be between 1 and 64, not {all_devices}")
    try:
        return gpu_resources(resource_flags or (), class_flags or ())
    except GpuNameError as exc:
        raise UserError(str(exc)) from None


__all__ = ["DEFAULT_ALL_DEVICES", "DraAllDevicesOption", "GpuDeviceClassOption", "GpuResourceOption", "gpu_table"]
