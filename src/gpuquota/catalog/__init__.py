"""GPU facts: the accelerator table and the TPP / performance-density / 3A090 figures derived from it."""

from gpuquota.catalog.classify import classify, h100_equivalents, performance_density
from gpuquota.catalog.estimate import TppEstimate, estimate_tpp
from gpuquota.catalog.spec import (
    BUNDLED,
    PRECISION_BITS,
    Catalog,
    CatalogError,
    Figure,
    GpuSpec,
    SourceRef,
    load_catalog,
    load_catalog_file,
    load_local_catalog,
    normalise_name,
    parse_catalog,
)
from gpuquota.catalog.unknown import (
    UNKNOWN_KEY,
    UNKNOWN_MODEL_TPP,
    estimate_entry,
    parse_estimate_entry,
    unknown_part,
)

__all__ = [
    "BUNDLED",
    "PRECISION_BITS",
    "UNKNOWN_KEY",
    "UNKNOWN_MODEL_TPP",
    "Catalog",
    "CatalogError",
    "Figure",
    "GpuSpec",
    "SourceRef",
    "TppEstimate",
    "classify",
    "estimate_entry",
    "estimate_tpp",
    "h100_equivalents",
    "load_catalog",
    "load_catalog_file",
    "load_local_catalog",
    "normalise_name",
    "parse_catalog",
    "parse_estimate_entry",
    "performance_density",
    "unknown_part",
]
