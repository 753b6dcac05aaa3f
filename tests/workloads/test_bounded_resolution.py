"""A tenant writing ever new, ever larger GPU selectors or MIG resource names cannot grow the webhook's memory:
the resolution cache stays within its byte bound and warnings quote tenant values only in part."""

from __future__ import annotations

from typing import Any

from gpuquota.catalog import Catalog
from gpuquota.domain import ModelSource
from gpuquota.workloads import ExtractContext, extract
from gpuquota.workloads.models import MAX_SHOWN_CHARS, RESOLUTIONS


def _pod(limits: dict[str, Any], product: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "img", "resources": {"limits": limits}}]}
    if product is not None:
        spec["nodeSelector"] = {"nvidia.com/gpu.product": product}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}, "spec": spec}


def test_distinct_large_selectors_stay_within_the_byte_bound(ctx: ExtractContext, catalog: Catalog) -> None:
    value_size = 200_000
    evictions = RESOLUTIONS.stats().evictions
    for index in range(2 * RESOLUTIONS.max_bytes // value_size):  # twice what the cache may hold
        demand = extract(_pod({"nvidia.com/gpu": 1}, f"{index}-" + "x" * value_size), ctx)
        assert demand is not None
        assert demand.groups[0].model_source is ModelSource.UNKNOWN  # counted as the strongest NVIDIA part
        assert all(len(w) < 400 for w in demand.warnings)
        assert RESOLUTIONS.bytes <= RESOLUTIONS.max_bytes
    assert RESOLUTIONS.stats().evictions > evictions


def test_warnings_quote_a_selector_value_only_in_part(ctx: ExtractContext) -> None:
    demand = extract(_pod({"nvidia.com/gpu": 1}, "NVIDIA-ZZ" + "9" * 5000), ctx)
    assert demand is not None
    (warning,) = [w for w in demand.warnings if "not in the catalog" in w]
    assert "NVIDIA-ZZ999" in warning
    assert "9" * (MAX_SHOWN_CHARS + 1) not in warning

