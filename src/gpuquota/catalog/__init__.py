"""GPU facts: the accelerator table and the TPP / performance-density / 3A090 figures derived from it."""

from gpuquota.catalog.classify import classify, h100_equivalents, performance_density
from gpuquota.catalog.estimate import TppEstimate, estimate_tpp
from gpuquota.catalog.spec import (
    Catalog,
    CatalogError,
    GpuSpec,
    load_catalog,
    load_catalog_file,
    normalise_name,
    parse_catalog,
)

__all__ = [
    "Catalog",
    "CatalogError",
    "GpuSpec",
    "TppEstimate",
    "classify",
    "estimate_tpp",
    "h100_equivalents",
    "load_catalog",
    "load_catalog_file",
    "normalise_name",
    "parse_catalog",
    "performance_density",
]
