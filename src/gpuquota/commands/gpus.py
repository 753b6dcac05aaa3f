"""``gpuquota gpus``: the accelerator catalog every cap is counted in, or the figures behind one part."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gpuquota.catalog import PRECISION_BITS, Catalog, GpuSpec
from gpuquota.commands.catalog_option import CatalogOption, catalog_from
from gpuquota.errors import UserError


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
        "tpp_precision": spec.tpp_precision,
        "performance_density": None if pd is None else round(pd, 2),
        "class": spec.gpu_class.value,
        "h100e": round(spec.h100e, 3),
        "confidence": spec.confidence,
        "source": spec.source,
        "origin": spec.origin,
        "mig_profiles": sorted(spec.mig),
    }


def figures_json(spec: GpuSpec, catalog: Catalog) -> list[dict[str, Any]]:
    """Every dense figure of a part with its TPP contribution and its source, highest TPP first."""
    rows = []
    for precision, figure in sorted(spec.dense.items(), key=lambda item: -spec.tpp_of(item[0])):
        source = catalog.sources.get(figure.source)
        rows.append(
            {
                "precision": precision,
                "tflops": figure.tflops,
                "bits": PRECISION_BITS[precision],
                "tpp": spec.tpp_of(precision),
                "sets_tpp": precision == spec.tpp_precision,
                "confidence": figure.confidence,
                "source": figure.source,
                "source_title": None if source is None else source.title,
                "source_url": None if source is None else source.url,
                "note": figure.note,
            }
        )
    return rows


def _one(spec: GpuSpec, catalog: Catalog, output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        document = {
            **gpu_json(spec),
            "figures": figures_json(spec, catalog),
            "sm_count": spec.sm_count,
            "mig": dict(spec.mig),
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    console = Console(width=None if sys.stdout.isatty() else 160)
    pd = spec.performance_density
    where = "bundled catalog" if not spec.local else f"LOCAL catalog file {spec.origin}"
    console.print(
        f"{spec.key} ({spec.vendor}, {where}): {spec.tpp:,.1f} TPP set by {spec.tpp_precision}, "
        f"PD {'n/p' if pd is None else f'{pd:.2f}'}, {spec.gpu_class.value}, {spec.h100e:.2f} H100e, "
        f"confidence {spec.confidence}",
        highlight=False,
    )
    table = Table(title="dense figures (TPP = TFLOPS or TOPS x bit length; the highest counts)")
    for column, justify in (
        ("precision", "left"),
        ("TFLOPS/TOPS", "right"),
        ("bits", "right"),
        ("TPP", "right"),
        ("conf.", "left"),
        ("source", "left"),
        ("note", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in figures_json(spec, catalog):
        table.add_row(
            ("* " if row["sets_tpp"] else "  ") + row["precision"],
            f"{row['tflops']:,.2f}",
            str(row["bits"]),
            f"{row['tpp']:,.1f}",
            row["confidence"],
            row["source"],
            row["note"],
        )
    console.print(table)
    for source_id in sorted({figure.source for figure in spec.dense.values()}):
        ref = catalog.sources.get(source_id)
        if ref is not None:
            console.print(f"source {ref.id}: {ref.title}" + (f" <{ref.url}>" if ref.url else ""), highlight=False)
    console.print(f"names: {', '.join(spec.names)}; GFD labels: {', '.join(spec.labels) or '-'}", highlight=False)
    if spec.pci_device_ids:
        console.print(f"PCI device ids: {', '.join(f'{p:#06x}' for p in spec.pci_device_ids)}", highlight=False)
    if spec.mig:
        slices = ", ".join(f"{p} {s}/{spec.sm_count} SMs" for p, s in sorted(spec.mig.items()))
        console.print(f"MIG: {slices}", highlight=False)
    console.print(f"notes: {spec.source}", highlight=False)


def gpus(
    model: Annotated[
        str | None, typer.Argument(help="Show one part's per-precision figures and sources (any spelling).")
    ] = None,
    output: Annotated[OutputFormat, typer.Option("--output", "-o", help="table or json.")] = OutputFormat.TABLE,
    catalog_file: CatalogOption = None,
) -> None:
    """List the GPU catalog: TPP, performance density, 3A090 class, H100-equivalents and confidence."""
    try:
        catalog = catalog_from(catalog_file)
    except UserError as exc:
        sys.stderr.write(f"gpuquota: {exc}\n")
        raise typer.Exit(2) from None
    if model is not None:
        spec = catalog.get(model)
        if spec is None:
            sys.stderr.write(f"error: {model!r} is not in the GPU catalog (run `gpuquota gpus` for the list)\n")
            raise typer.Exit(2)
        _one(spec, catalog, output)
        return
    if output is OutputFormat.JSON:
        sys.stdout.write(json.dumps([gpu_json(s) for s in catalog], indent=2) + "\n")
        return
    table = Table(
        title=f"GPU catalog ({len(catalog)} models; confidence P primary, S secondary, C computed, U unverified)"
    )
    for column, justify in (
        ("key", "left"),
        ("TPP", "right"),
        ("set by", "left"),
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
            spec.key + (" (local)" if spec.local else ""),
            f"{spec.tpp:,.0f}",
            spec.tpp_precision,
            "n/p" if pd is None else f"{pd:.2f}",
            spec.gpu_class.value,
            f"{spec.h100e:.2f}",
            spec.confidence,
            spec.product_label,
        )
    Console(width=None if sys.stdout.isatty() else 160).print(table)


def register(app: typer.Typer) -> None:
    app.command("gpus")(gpus)
