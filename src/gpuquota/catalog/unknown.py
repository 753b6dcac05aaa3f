"""What a GPU the catalog lacks is counted as.

The strongest catalog part is no upper bound for a newer one (a GB300 would have been counted as a GB200, a third
short), so an uncatalogued part counts at the node agent's NVML estimate when the cluster inventory has one
(flagged as an estimate), else at the profile's ``unknownModelTpp``, which the bundled profiles set well above
every catalog part. Either way it is ``unknown`` in decisions, metrics and the ledger, and the tenant is warned.
"""

from __future__ import annotations

from functools import lru_cache

from gpuquota.catalog.spec import STAND_IN, GpuSpec, Vendor, normalise_name

UNKNOWN_MODEL_TPP = 120_000.0
"""What a part the catalog lacks counts as when nothing says otherwise (a profile's ``unknownModelTpp`` default):
twice the strongest bundled part, never below the strongest part of the catalog in use."""

UNKNOWN_KEY = "unknown"
"""The model name an uncatalogued part is recorded under (one value: metric labels stay bounded)."""

_ESTIMATE_MARK = "@estimate="
_SOURCES = {"unknown-part": None}


def estimate_entry(product: str | None, tpp: float) -> str:
    """How the cluster inventory lists an uncatalogued GPU the node agent estimated: ``<product>@estimate=<tpp>``
    (the product folded like every catalog name, so a selector naming it finds its estimate)."""
    return f"{normalise_name(product or UNKNOWN_KEY)}{_ESTIMATE_MARK}{tpp:.1f}"


def parse_estimate_entry(entry: str) -> tuple[str, float] | None:
    """``(product, tpp)`` of an inventory entry made by ``estimate_entry``; ``None`` for anything else."""
    product, mark, number = entry.rpartition(_ESTIMATE_MARK)
    if not mark:
        return None
    try:
        tpp = float(number)
    except ValueError:
        return None
    return (product, tpp) if tpp > 0 and tpp != float("inf") else None


@lru_cache(maxsize=256)
def unknown_part(vendor: Vendor, tpp: float, basis: str) -> GpuSpec:
    """A stand-in catalog row for a part the catalog lacks, counted at ``tpp`` (its figure is marked U and says
    where it came from). Its unknown die area classifies it as dense (3A090.a above 1,600 TPP)."""
    row = {
        "key": UNKNOWN_KEY,
        "vendor": vendor,
        "names": [UNKNOWN_KEY],
        "dense": {"fp16": {"tflops": tpp / 16, "source": "unknown-part", "confidence": "U", "note": basis}},
        "source": basis,
    }
    return GpuSpec.model_validate(row, context={"sources": _SOURCES, "origin": STAND_IN})
