"""``gpuquota inventory``: the local GPUs as NVML reports them, with their catalog model, TPP and 3A090 class.

Exit status: 0 when NVML answered (per-device errors are part of the output), 3 when NVML is unavailable
(no driver, no library, no permission; one line on stderr), 2 on bad options.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gpuquota.inventory.model import DeviceInfo, NodeInventory


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


def _gib(value: int | None) -> str:
    return "" if value is None else f"{value / 2**30:.1f}"


def _cuda(version: int | None) -> str:
    return "?" if version is None else f"{version // 1000}.{version % 1000 // 10}"


def _model(device: DeviceInfo) -> str:
    if device.catalog_key:
        return device.catalog_key
    return "estimated" if device.estimated else "—"


def render_table(inventory: NodeInventory) -> Table:
    table = Table(
        title=(
            f"{inventory.node}: {inventory.gpu_count} GPU(s), {inventory.total_tpp:,.0f} TPP "
            f"(driver {inventory.driver_version or '?'}, NVML {inventory.nvml_version or '?'}, "
            f"CUDA {_cuda(inventory.cuda_driver_version)})"
        ),
        caption_justify="left",
    )
    for column, justify in (
        ("#", "right"), ("name", "left"), ("model", "left"), ("TPP", "right"), ("class", "left"),
        ("H100e", "right"), ("GiB", "right"), ("CC", "left"), ("MIG", "left"),
    ):  # fmt: skip
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    notes: list[str] = []
    for device in inventory.devices:
        if device.mig_mode is None:
            mig = ""
        elif device.mig:
            mig = ", ".join(f"{n}× {p}" for p, n in sorted(device.mig_profiles.items()))
        else:
            mig = "on (no instances)" if device.mig_mode else "off"
        table.add_row(
            str(device.index),
            device.name or "?",
            _model(device),
            (f"{device.tpp:,.0f}" + ("*" if device.estimated else "")) if device.identified else "—",
            device.gpu_class.value if device.identified else "error",
            f"{device.h100e:.2f}",
            _gib(device.memory_bytes),
            device.compute_capability or "",
            mig,
        )
        if device.estimated and device.estimate_basis:
            notes.append(f"* GPU {device.index}: {device.estimate_basis}")
        if device.error:
            notes.append(f"! GPU {device.index}: {device.error}")
        notes.extend(f"! GPU {device.index} MIG {m.index}: {m.error}" for m in device.mig if m.error)
    if notes:
        table.caption = "\n".join(notes)
    return table


def inventory(
    output: Annotated[OutputFormat, typer.Option("--output", "-o", help="table or json.")] = OutputFormat.TABLE,
    node_name: Annotated[
        str | None, typer.Option(help="Node name recorded in the inventory (default: $NODE_NAME, else the host name).")
    ] = None,
) -> None:
    """Show this machine's GPUs from NVML: catalog model, TPP, 3A090 class, MIG instances (exit 3 without NVML)."""
    from gpuquota.inventory.discovery import NvmlUnavailable, discover  # noqa: PLC0415 - keep --help fast

    try:
        found = discover(node_name=node_name)
    except NvmlUnavailable as exc:
        print(f"gpuquota: {exc}", file=sys.stderr)
        raise typer.Exit(exc.exit_code) from None
    if output is OutputFormat.JSON:
        sys.stdout.write(found.to_json(indent=2) + "\n")
        return
    Console(width=None if sys.stdout.isatty() else 160).print(render_table(found))


def register(app: typer.Typer) -> None:
    app.command("inventory")(inventory)
