"""``--catalog FILE``: an operator's catalog file merged over the bundled GPU catalog, for every command that counts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gpuquota.catalog import Catalog, load_catalog, load_local_catalog

CatalogOption = Annotated[
    Path | None,
    typer.Option(
        "--catalog",
        help="A local GPU catalog file (docs/catalog.md) merged over the bundled rows; its rows are marked local.",
    ),
]


def catalog_from(path: Path | None) -> Catalog:
    """The bundled catalog, or it with the operator's file merged over it (a broken file: ``CatalogError``)."""
    return load_catalog() if path is None else load_local_catalog(path)
