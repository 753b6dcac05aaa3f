"""``gpuquota gpus``: the accelerator catalog every cap is counted in."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gpuquota.catalog import GpuSpec, load_catalog


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


def gpu_json(spec: GpuSpec) -> dict[str, Any]:
    pd = spec.performance_density
    return {
        "key": spec.key,
        "vendor": spec.vendor,
        "names": list(spec.names),
        "label": spec.product_label,
        "pci_device_ids": [f"{pci:#06x}" for pci in spec.pci_device_ids],
        "tpp": spec.tpp,
        "performance_density": None if pd is None else round(pd, 2),
        "class": spec.gpu_class.value,
        "h100e": round(spec.h100e, 3),
        "confidence": spec.confidence,
        "source": spec.source,
        "mig_profiles": sorted(spec.mig),
    }


def gpus(
    output: Annotated[OutputFormat, typer.Option("--output", "-o", help="table or json.")] = OutputFormat.TABLE,
) -> None:
    """List the GPU catalog: TPP, performance density, 3A090 class, H100-equivalents and confidence."""
    catalog = load_catalog()
    if output is OutputFormat.JSON:
        sys.stdout.write(json.dumps([gpu_json(s) for s in catalog], indent=2) + "\n")
        return
    table = Table(
        title=f"GPU catalog ({len(catalog)} models; confidence P primary, S secondary, C computed, U unverified)"
    )
    for column, justify in (
        ("key", "left"),
        ("TPP", "right"),
        ("PD", "right"),
        ("class", "left"),
        ("H100e", "right"),
        ("confidence", "left"),
        ("GFD label", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for spec in sorted(catalog, key=lambda s: -s.tpp):
        pd = spec.performance_density
        table.add_row(
            spec.key,
            f"{spec.tpp:,.0f}",
            "n/p" if pd is None else f"{pd:.2f}",
            spec.gpu_class.value,
            f"{spec.h100e:.2f}",
            spec.confidence,
            spec.product_label,
        )
    Console(width=None if sys.stdout.isatty() else 160).print(table)


def register(app: typer.Typer) -> None:
    app.command("gpus")(gpus)
