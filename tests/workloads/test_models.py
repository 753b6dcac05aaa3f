"""GPU model resolution: selector, affinity, inventory, default, unknown products, MIG, shares, vendors."""

from __future__ import annotations

from typing import Any

import pytest

from gpuquota.catalog import UNKNOWN_MODEL_TPP, Catalog, estimate_entry
from gpuquota.domain import GpuClass, ModelSource
from gpuquota.workloads import ExtractContext, extract
from tests.workloads.conftest import manifest, spec

H100 = spec("H100-SXM5-80GB")


def strongest_nvidia(catalog: Catalog) -> str:
    """What an NVIDIA request is counted at when nothing narrows it (the catalog's strongest part may be AMD's)."""
    return max((s for s in catalog if s.vendor == "nvidia"), key=lambda s: s.tpp).key


def pod(limits: dict[str, Any], **spec_fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"containers": [{"name": "c", "image": "img", "resources": {"limits": limits}}], **spec_fields},
    }


def affinity(*terms: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": expressions} for expressions in terms]
            }
        }
    }


def product(operator: str, *values: str) -> dict[str, Any]:
    expression: dict[str, Any] = {"key": "nvidia.com/gpu.product", "operator": operator}
    if values:
        expression["values"] = list(values)
    return expression


def only_group(obj: dict[str, Any], ctx: ExtractContext) -> Any:
    demand = extract(obj, ctx)
    assert demand is not None
    assert len(demand.groups) == 1
    return demand.groups[0], demand


def test_selector_names_the_model_even_outside_inventory(ctx: ExtractContext) -> None:
    group, _ = only_group(pod({"nvidia.com/gpu": 2}, nodeSelector={"nvidia.com/gpu.product": "Tesla-T4"}), ctx)
    assert (group.model, group.model_source, group.gpus_per_pod) == ("T4", ModelSource.SELECTOR, 2.0)
    assert group.tpp_per_gpu == spec("T4").tpp
    assert group.gpu_class is GpuClass.UNCONTROLLED


@pytest.mark.parametrize("name", ["NVIDIA H100 80GB HBM3", "H100-SXM5-80GB", "NVIDIA-H100-80GB-HBM3"])
def test_selector_accepts_every_catalog_spelling(ctx: ExtractContext, name: str) -> None:
    group, _ = only_group(pod({"nvidia.com/gpu": 1}, nodeSelector={"nvidia.com/gpu.product": name}), ctx)
    assert group.model == H100.key


def test_affinity_in_with_several_values_counts_the_strongest(ctx: ExtractContext) -> None:
    obj = pod({"nvidia.com/gpu": 1}, affinity=affinity([product("In", "NVIDIA-L4", "NVIDIA-H200", "Tesla-T4")]))
    group, _ = only_group(obj, ctx)
    assert group.model == "H200-SXM"
    assert group.model_source is ModelSource.SELECTOR


def test_affinity_terms_are_ored(ctx: ExtractContext) -> None:
    obj = pod({"nvidia.com/gpu": 1}, affinity=affinity([product("In", "NVIDIA-L4")], [product("In", "Tesla-T4")]))
    group, _ = only_group(obj, ctx)
    assert group.model == "L4"  # L4 (1940 TPP) beats T4 (1040 TPP)


def test_a_term_without_product_constraint_unconstrains(ctx: ExtractContext) -> None:
    zone = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}
    obj = pod({"nvidia.com/gpu": 1}, affinity=affinity([product("In", "Tesla-T4")], [zone]))
    group, _ = only_group(obj, ctx)
    assert (group.model, group.model_source) == (H100.key, ModelSource.INVENTORY)


@pytest.mark.parametrize("expression", [product("NotIn", "NVIDIA-H100-80GB-HBM3"), product("Exists")])
def test_notin_and_exists_are_conservative(ctx: ExtractContext, expression: dict[str, Any]) -> None:
    group, _ = only_group(pod({"nvidia.com/gpu": 1}, affinity=affinity([expression])), ctx)
    # NotIn H100 cannot be trusted to exclude an unlisted stronger model: the inventory's strongest counts.
    assert (group.model, group.model_source) == (H100.key, ModelSource.INVENTORY)


def test_node_selector_and_affinity_intersect(ctx: ExtractContext) -> None:
    obj = pod(
        {"nvidia.com/gpu": 1},
        nodeSelector={"nvidia.com/gpu.product": "NVIDIA-L4"},
        affinity=affinity([product("In", "NVIDIA-L4", "NVIDIA-H200")]),
    )
    group, _ = only_group(obj, ctx)
    assert group.model == "L4"


def test_contradicting_selectors_count_the_union(ctx: ExtractContext) -> None:
    obj = pod(
        {"nvidia.com/gpu": 1},
        nodeSelector={"nvidia.com/gpu.product": "NVIDIA-L4"},
        affinity=affinity([product("In", "NVIDIA-H200")]),
    )
    group, _ = only_group(obj, ctx)
    assert group.model == "H200-SXM"


def test_unknown_product_counts_at_the_unknown_part_figure_with_warning(
    ctx: ExtractContext, catalog: Catalog
) -> None:
    """A future product is not bounded by the strongest catalog part: it counts at the policy's figure, which is
    never below it (twice it when the policy says nothing)."""
    group, demand = only_group(manifest("pod-unknown-product"), ctx)
    assert (group.model, group.model_source) == ("unknown", ModelSource.UNKNOWN)
    assert group.tpp_per_gpu == ctx.unknown_model_tpp == UNKNOWN_MODEL_TPP > catalog.strongest.tpp
    assert group.gpus_per_pod == 4
    assert any("NVIDIA-X300-288GB-HBM4" in w and "add a catalog row" in w for w in demand.warnings)
    set_by_policy = ExtractContext(catalog, ctx.inventory_models, unknown_model_tpp=200_000)
    group, _ = only_group(manifest("pod-unknown-product"), set_by_policy)
    assert group.tpp_per_gpu == 200_000
    too_low = ExtractContext(catalog, ctx.inventory_models, unknown_model_tpp=1_000)
    group, _ = only_group(manifest("pod-unknown-product"), too_low)
    assert group.tpp_per_gpu == catalog.strongest.tpp  # never below a part the catalog knows


def test_unknown_among_alternatives_is_still_conservative(ctx: ExtractContext, catalog: Catalog) -> None:
    obj = pod({"nvidia.com/gpu": 1}, affinity=affinity([product("In", "Tesla-T4", "NVIDIA-Z9")]))
    group, _ = only_group(obj, ctx)
    assert (group.model, group.model_source) == ("unknown", ModelSource.UNKNOWN)
    assert group.tpp_per_gpu > max(s.tpp for s in catalog)


def test_unknown_product_counts_at_its_nvml_estimate_when_the_inventory_has_one(catalog: Catalog) -> None:
    estimate = estimate_entry("NVIDIA X300 SXM7", 63_921.2)
    ctx = ExtractContext(catalog, inventory_models=("L4", estimate), unknown_model_tpp=120_000)
    by_selector = pod({"nvidia.com/gpu": 2}, nodeSelector={"nvidia.com/gpu.product": "NVIDIA-X300-SXM7"})
    group, demand = only_group(by_selector, ctx)
    assert (group.model, group.model_source, group.tpp_per_gpu) == ("unknown", ModelSource.UNKNOWN, 63_921.2)
    assert any("NVML estimate, 63,921 TPP" in w for w in demand.warnings)
    group, demand = only_group(manifest("pod-h100-single"), ctx)  # no selector: the inventory's strongest
    assert (group.model, group.tpp_per_gpu) == ("unknown", 63_921.2)
    assert any("nvidia-x300-sxm7" in w for w in demand.warnings)
    other = pod({"nvidia.com/gpu": 1}, nodeSelector={"nvidia.com/gpu.product": "NVIDIA-Q900"})
    group, _ = only_group(other, ctx)  # an unknown product with no estimate of its own
    assert group.tpp_per_gpu == 120_000


def test_a_selector_spelled_like_an_estimate_does_not_set_its_own_tpp(catalog: Catalog) -> None:
    # A CRD's pod template is not validated as a Pod, so a tenant can write any string as the product it selects.
    forged = pod({"nvidia.com/gpu": 8}, nodeSelector={"nvidia.com/gpu.product": estimate_entry("NVIDIA X300", 1.0)})
    group, _ = only_group(forged, ExtractContext(catalog, inventory_models=("L4",), unknown_model_tpp=120_000))
    assert (group.model, group.tpp_per_gpu) == ("unknown", 120_000)
    listed = estimate_entry("NVIDIA X300", 63_921.2)  # the same text as the inventory's entry: its estimate
    ctx = ExtractContext(catalog, inventory_models=("L4", listed), unknown_model_tpp=120_000)
    group, _ = only_group(pod({"nvidia.com/gpu": 1}, nodeSelector={"nvidia.com/gpu.product": listed}), ctx)
    assert group.tpp_per_gpu == 63_921.2


def test_default_model_without_inventory(catalog: Catalog) -> None:
    ctx = ExtractContext(catalog, default_model="A100-SXM4-80GB")
    group, demand = only_group(manifest("pod-h100-single"), ctx)
    assert (group.model, group.model_source) == ("A100-SXM4-80GB", ModelSource.DEFAULT)
    assert not demand.warnings


def test_last_resort_is_the_strongest_catalog_gpu(bare_ctx: ExtractContext, catalog: Catalog) -> None:
    group, demand = only_group(manifest("pod-h100-single"), bare_ctx)
    assert group.model == strongest_nvidia(catalog)
    assert any("no usable GPU model selector" in w for w in demand.warnings)


def test_unknown_inventory_entry_counts_conservatively(catalog: Catalog) -> None:
    ctx = ExtractContext(catalog, inventory_models=("L4", "NVIDIA-Z9-Ultra"))
    group, demand = only_group(manifest("pod-h100-single"), ctx)
    assert (group.model, group.model_source) == ("unknown", ModelSource.UNKNOWN)
    assert group.tpp_per_gpu == ctx.unknown_model_tpp
    assert any("NVIDIA-Z9-Ultra" in w for w in demand.warnings)


def test_mig_slices_are_fractions_of_the_selected_parent(ctx: ExtractContext) -> None:
    group, _ = only_group(manifest("pod-mig-mixed"), ctx)
    expected = (H100.mig["3g.40gb"] + 2 * H100.mig["1g.10gb"]) / (H100.sm_count or 1)
    assert group.model == H100.key
    assert group.gpus_per_pod == pytest.approx(expected)
    assert group.gpus_per_pod < 1
    assert group.tpp_per_gpu * group.gpus_per_pod == pytest.approx(
        (H100.mig_tpp("3g.40gb") or 0) + 2 * (H100.mig_tpp("1g.10gb") or 0)
    )


def test_mig_without_selector_or_inventory_uses_the_strongest_parent(
    bare_ctx: ExtractContext, catalog: Catalog
) -> None:
    group, demand = only_group(manifest("pod-mig-no-selector"), bare_ctx)
    parent = catalog.mig_parent("3g.40gb")
    assert parent is not None
    assert (group.model, group.model_source) == (parent[0].key, ModelSource.RESOURCE)
    assert group.gpus_per_pod * group.tpp_per_gpu == pytest.approx(parent[1])
    assert not demand.warnings


def test_mig_with_inventory_is_limited_to_parts_offering_the_profile(catalog: Catalog) -> None:
    # L4 has no MIG: the slice can only land on the A100.
    ctx = ExtractContext(catalog, inventory_models=("L4", "A100-SXM4-80GB"))
    group, _ = only_group(manifest("pod-mig-no-selector"), ctx)
    assert (group.model, group.model_source) == ("A100-SXM4-80GB", ModelSource.INVENTORY)


def test_mig_profile_nobody_offers_counts_whole_gpus(ctx: ExtractContext, catalog: Catalog) -> None:
    group, demand = only_group(pod({"nvidia.com/mig-5g.99gb": 2}), ctx)
    assert (group.model, group.gpus_per_pod, group.model_source) == (catalog.strongest.key, 2.0, ModelSource.UNKNOWN)
    assert any("5g.99gb" in w for w in demand.warnings)


def test_selector_without_the_mig_profile_falls_back_with_warning(ctx: ExtractContext) -> None:
    obj = pod({"nvidia.com/mig-3g.40gb": 1}, nodeSelector={"nvidia.com/gpu.product": "NVIDIA-L4"})
    group, demand = only_group(obj, ctx)
    assert group.model in {"H100-SXM5-80GB", "A100-SXM4-80GB"}
    assert group.model == H100.key  # the strongest inventory part offering 3g.40gb
    assert any("cannot serve 1 x mig-3g.40gb" in w for w in demand.warnings)


def test_time_sliced_share_counts_the_policy_fraction(ctx: ExtractContext, catalog: Catalog) -> None:
    group, _ = only_group(manifest("pod-time-sliced"), ctx)
    assert (group.model, group.gpus_per_pod) == ("L4", 2 * ctx.shared_gpu_fraction)
    tight = ExtractContext(catalog, inventory_models=ctx.inventory_models, shared_gpu_fraction=0.1)
    group, _ = only_group(manifest("pod-time-sliced"), tight)
    assert group.gpus_per_pod == pytest.approx(0.2)


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
def test_shared_fraction_is_never_zero(catalog: Catalog, fraction: float) -> None:
    with pytest.raises(ValueError, match="shared_gpu_fraction"):
        ExtractContext(catalog, shared_gpu_fraction=fraction)


def test_default_model_must_be_in_the_catalog(catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="not in the GPU catalog"):
        ExtractContext(catalog, default_model="NVIDIA-Z9")


def test_inventory_given_as_list_still_hashes(catalog: Catalog) -> None:
    ctx = ExtractContext(catalog, inventory_models=["L4"])  # type: ignore[arg-type]
    group, _ = only_group(manifest("pod-h100-single"), ctx)
    assert group.model == "L4"


def test_amd_gpus_resolve_to_amd_parts(ctx: ExtractContext) -> None:
    group, _ = only_group(manifest("pod-amd-mi300x"), ctx)
    # The inventory holds only NVIDIA parts: the AMD request falls back to the strongest AMD part.
    assert (group.model, group.gpus_per_pod) == ("MI355X", 8.0)


def test_gaudi_resolves_to_an_intel_part(ctx: ExtractContext) -> None:
    group, _ = only_group(pod({"habana.ai/gaudi": 8}), ctx)
    assert group.model == "Gaudi3"


def test_mixed_vendors_in_one_pod_count_whole_strongest(ctx: ExtractContext, catalog: Catalog) -> None:
    group, demand = only_group(pod({"nvidia.com/gpu": 1, "amd.com/gpu": 2}), ctx)
    assert (group.model, group.gpus_per_pod) == (catalog.strongest.key, 3.0)
    assert any("several vendors" in w for w in demand.warnings)
