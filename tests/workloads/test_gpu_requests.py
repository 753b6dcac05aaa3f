"""Every way a workload asks for a GPU besides ``nvidia.com/gpu``: DRA claims and extended resources, other
vendors' and renamed resource names, KAI and HAMi fractions, and models pinned by cloud and provisioner labels.

The manifests under ``requests/`` are modelled on published ones (NVIDIA's DRA driver demos, Kueue's DRA sample,
KAI's GPU-sharing and HAMi's examples, GKE/EKS/AKS node selectors) and validate against the Kubernetes 1.37 schema.
Each test is a way a tenant could otherwise get GPUs counted as zero, or as less than they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gpuquota.catalog import Catalog, load_catalog
from gpuquota.domain import Demand, ModelSource
from gpuquota.workloads import (
    ExtractContext,
    GpuNameError,
    ManifestClaims,
    WorkloadError,
    extract,
    gpu_resources,
    requests_gpu,
)
from gpuquota.workloads.dra import expression_pins
from gpuquota.workloads.gpu_names import parse_entry
from tests.workloads.conftest import spec

REQUESTS = Path(__file__).parent / "requests"
STRONGEST = load_catalog().strongest.key


def documents(name: str) -> list[dict[str, Any]]:
    text = (REQUESTS / f"{name}.yaml").read_text(encoding="utf-8")
    return [d for d in yaml.safe_load_all(text) if d]


def judge(name: str, ctx: ExtractContext) -> dict[str, Demand | None]:
    """Each object of a file, extracted with the file's claims as the cluster's."""
    objects = documents(name)
    claims = ManifestClaims(objects)
    return {
        o["metadata"]["name"]: extract(o, ctx, claims)
        for o in objects
        if not o["apiVersion"].startswith("resource.k8s.io/")
    }


def demand_of(name: str, workload: str, ctx: ExtractContext) -> Demand:
    found = judge(name, ctx)[workload]
    assert found is not None, workload
    return found


@pytest.mark.parametrize("name", sorted(p.stem for p in REQUESTS.glob("*.yaml")))
def test_request_manifests_are_valid_kubernetes(name: str) -> None:
    for document in documents(name):
        if "/" not in document["apiVersion"] or document["apiVersion"].split("/")[0] in ("batch", "resource.k8s.io"):
            kubernetes_validate.validate(document, "1.37", strict=True)


# --- Dynamic Resource Allocation --------------------------------------------------------------------------------------


def test_claim_template_counts_per_pod(ctx: ExtractContext) -> None:
    for pod in ("pod1", "pod2"):
        demand = demand_of("dra-gpu-test1", pod, ctx)
        assert demand.gpus == 1
        assert demand.model == "H100-SXM5-80GB"  # no model pinned: the strongest the inventory holds


def test_claim_template_in_a_job_counts_every_pod(ctx: ExtractContext) -> None:
    demand = demand_of("dra-kueue-job", "dra-sample", ctx)
    assert (demand.pods, demand.gpus) == (3, 6)


def test_shared_claim_counts_once_with_its_pinned_model(ctx: ExtractContext) -> None:
    demand = demand_of("dra-shared-claim-job", "shared-eval", ctx)
    (group,) = demand.groups
    assert (group.role, group.pods, group.gpus_per_pod) == ("claim shared-gpus", 1, 2)
    assert (group.model, group.model_source) == ("H100-SXM5-80GB", ModelSource.SELECTOR)


def test_mig_device_class_counts_the_pinned_profile_on_the_pinned_model(ctx: ExtractContext) -> None:
    demand = demand_of("dra-mig-selector", "notebook", ctx)
    a100 = spec("A100-SXM4-80GB")
    assert demand.model == a100.key
    fraction = a100.mig_fraction("1g.10gb")
    assert fraction is not None
    assert demand.gpus == pytest.approx(2 * fraction)


def test_allocation_mode_all_counts_a_full_node(ctx: ExtractContext) -> None:
    assert demand_of("dra-all-first-available", "full-node", ctx).gpus == ctx.all_devices
    bigger = ExtractContext(ctx.catalog, ctx.inventory_models, all_devices=4)
    assert demand_of("dra-all-first-available", "full-node", bigger).gpus == 4


def test_first_available_counts_its_largest_alternative_and_nics_count_nothing(ctx: ExtractContext) -> None:
    demand = demand_of("dra-all-first-available", "flexible", ctx)
    assert (demand.gpus, demand.model) == (4, "L4")


def test_extended_resource_of_a_gpu_device_class(ctx: ExtractContext) -> None:
    assert demand_of("dra-extended-resource", "extended-resource", ctx).gpus == 2


def test_an_unreadable_claim_is_never_zero(ctx: ExtractContext) -> None:
    pod = documents("dra-gpu-test1")[1]
    demand = extract(pod, ctx)  # no claim source: the template cannot be read
    assert demand is not None
    assert (demand.gpus, demand.model) == (ctx.all_devices, STRONGEST)
    assert any("ResourceClaimTemplate gpu-test1/single-gpu" in w and "could not be read" in w for w in demand.warnings)
    assert requests_gpu(pod)


def test_a_claim_of_no_gpu_class_is_no_demand(ctx: ExtractContext) -> None:
    objects = documents("dra-gpu-test1")
    objects[0]["spec"]["spec"]["devices"]["requests"][0]["exactly"]["deviceClassName"] = "rdma.mellanox.com"
    assert extract(objects[1], ctx, ManifestClaims(objects)) is None


def test_operator_device_classes_count(ctx: ExtractContext) -> None:
    objects = documents("dra-gpu-test1")
    objects[0]["spec"]["spec"]["devices"]["requests"][0]["exactly"]["deviceClassName"] = "h100.example.com"
    table = gpu_resources(class_flags=["h100.example.com=nvidia,model=H100-SXM5-80GB"])
    custom = ExtractContext(ctx.catalog, ("L4",), resources=table)
    demand = extract(objects[1], custom, ManifestClaims(objects))
    assert demand is not None
    assert (demand.gpus, demand.model) == (1, "H100-SXM5-80GB")


def test_v1beta1_requests_are_read_too(ctx: ExtractContext) -> None:
    objects = documents("dra-kueue-job")
    request = objects[0]["spec"]["spec"]["devices"]["requests"][0]
    request.update(request.pop("exactly"))
    objects[0]["apiVersion"] = "resource.k8s.io/v1beta1"
    assert demand_of_objects(objects, "dra-sample", ctx).gpus == 6


def demand_of_objects(objects: list[dict[str, Any]], name: str, ctx: ExtractContext) -> Demand:
    claims = ManifestClaims(objects)
    (obj,) = [o for o in objects if o["metadata"]["name"] == name]
    found = extract(obj, ctx, claims)
    assert found is not None
    return found


def test_a_malformed_claim_reference_is_refused(ctx: ExtractContext) -> None:
    pod = documents("dra-gpu-test1")[1]
    pod["spec"]["resourceClaims"][0]["resourceClaimName"] = "both"
    with pytest.raises(WorkloadError, match="exactly one of"):
        extract(pod, ctx)


@pytest.mark.parametrize(
    ("expression", "pins"),
    [
        ("device.attributes['gpu.nvidia.com'].productName == 'NVIDIA L4'", {"NVIDIA L4"}),
        ('"NVIDIA L4" == device.attributes["gpu.nvidia.com"].productName', {"NVIDIA L4"}),
        ("device.attributes['gpu.nvidia.com'].productName in ['A', \"B\"]", {"A", "B"}),
        (
            "(device.attributes['x'].productName == 'A' || device.attributes['x'].productName == 'B') && "
            "device.capacity['x'].memory.compareTo(quantity('40Gi')) >= 0",
            {"A", "B"},
        ),
        ("device.attributes['x'].productName == 'A' || device.attributes['x'].architecture == 'Hopper'", None),
        ("device.attributes['x'].productName != 'A'", None),
        ("device.attributes['x'].productName.startsWith('NVIDIA')", None),
        ("device.attributes['x'].productName == 'A' && device.attributes['x'].productName == 'B'", set()),
        ("device.attributes['x'].productName == 'A' && (", None),
    ],
)
def test_only_selectors_that_surely_restrict_pin_a_model(expression: str, pins: set[str] | None) -> None:
    assert expression_pins(expression, "productName") == pins


# --- other resource names -------------------------------------------------------------------------------------------


def test_amd_partitions_count_at_their_fraction(ctx: ExtractContext) -> None:
    demand = demand_of("other-vendors", "amd-cpx", ctx)
    strongest_amd = max((s for s in ctx.catalog if s.vendor == "amd"), key=lambda s: s.tpp)
    assert (demand.gpus, demand.model) == (0.5, strongest_amd.key)  # no AMD model pinned: the strongest


def test_intel_gpu_plugin_names_count(ctx: ExtractContext) -> None:
    demand = demand_of("other-vendors", "intel-xpu", ctx)
    assert demand.gpus == 1
    assert spec(demand.model or "").vendor == "intel"


def test_kubevirt_passthrough_name_pins_its_model(ctx: ExtractContext) -> None:
    demand = demand_of("other-vendors", "virt-launcher-gpu-vm", ctx)
    assert (demand.gpus, demand.model, demand.primary and demand.primary.model_source) == (
        1,
        "H100-SXM5-80GB",
        ModelSource.SELECTOR,
    )


def test_renamed_resources_count_once_configured(ctx: ExtractContext) -> None:
    pod = documents("other-vendors")[3]
    assert extract(pod, ctx) is None
    assert not requests_gpu(pod)
    table = gpu_resources(["nvidia.com/a100=nvidia,model=A100-SXM4-80GB"])
    custom = ExtractContext(ctx.catalog, ctx.inventory_models, resources=table)
    demand = extract(pod, custom)  # ... until the operator names them
    assert demand is not None
    assert (demand.gpus, demand.model) == (1, "A100-SXM4-80GB")
    assert requests_gpu(pod, table)


def test_prefix_entries_and_bad_entries() -> None:
    table = gpu_resources(["example.com/vgpu-*=nvidia,share=partition,fraction=0.25"])
    row = table.get("example.com/vgpu-quarter")
    assert row is not None
    assert row.fraction == 0.25
    for bad in ("nvidia.com/x", "x=ibm", "x=nvidia,fraction=0", "x=nvidia,colour=red", "x=nvidia,share=half"):
        with pytest.raises(GpuNameError):
            parse_entry(bad)


# --- fractions ---------------------------------------------------------------------------------------------------


def test_kai_fraction_counts_at_least_the_shared_fraction(ctx: ExtractContext) -> None:
    demands = judge("kai-fractions", ctx)
    half = demands["gpu-sharing"]
    assert half is not None
    assert half.gpus == 0.5
    memory = demands["gpu-memory-sharing"]
    assert memory is not None
    assert (memory.model, memory.gpus) == ("H100-SXM5-80GB", 0.5)
    slices = demands["tiny-slices"]
    # 0.1 of a GPU whose compute is time-sliced, not capped: counted at the policy's shared fraction, per device
    assert slices is not None
    assert slices.gpus == 8 * 2 * ctx.shared_gpu_fraction


def test_kai_annotations_reach_the_webhook_and_garbage_is_refused(ctx: ExtractContext) -> None:
    pod = documents("kai-fractions")[0]
    assert requests_gpu(pod)
    pod["metadata"]["annotations"]["gpu-fraction"] = "lots"
    with pytest.raises(WorkloadError, match="must be a number") as info:
        extract(pod, ctx)
    assert info.value.path == "metadata.annotations[gpu-fraction]"


def test_hami_cores_cap_the_share_and_memory_alone_does_not(ctx: ExtractContext) -> None:
    demands = judge("hami-vgpu", ctx)
    capped = demands["gpu-pod"]
    assert capped is not None
    assert capped.gpus == pytest.approx(0.6)
    memory_only = demands["gpu-pod-memory-only"]
    assert memory_only is not None
    assert memory_only.gpus == 0.5


@given(
    fraction=st.floats(min_value=1e-6, max_value=1.0),
    cores=st.integers(min_value=1, max_value=100),
    memory=st.integers(min_value=1, max_value=1 << 20),
    shared=st.floats(min_value=0.01, max_value=1.0),
)
def test_no_fraction_is_ever_zero(fraction: float, cores: int, memory: int, shared: float) -> None:
    from gpuquota.catalog import load_catalog  # noqa: PLC0415 - a session fixture cannot feed @given

    ctx = ExtractContext(load_catalog(), ("H100-SXM5-80GB",), shared_gpu_fraction=shared)
    pods: list[tuple[dict[str, str], dict[str, int]]] = [
        ({"gpu-fraction": repr(fraction)}, {}),
        ({"gpu-memory": str(memory)}, {}),
        ({}, {"nvidia.com/gpu": 1, "nvidia.com/gpucores": cores}),
        ({}, {"nvidia.com/gpumem": memory}),
    ]
    for notes, limits in pods:
        obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "annotations": notes},
            "spec": {"containers": [{"name": "c", "resources": {"limits": limits}}]},
        }
        demand = extract(obj, ctx)
        assert demand is not None
        assert demand.gpus > 0
        assert demand.tpp > 0


# --- models from cloud and provisioner labels ----------------------------------------------------------------------


def test_gke_accelerator_label_pins_t4(ctx: ExtractContext) -> None:
    demand = demand_of("cloud-selectors", "t4-batch-inference", ctx)
    assert (demand.gpus, demand.model) == (4, "T4")
    assert demand.tpp == 4 * spec("T4").tpp


def test_karpenter_gpu_name_and_instance_types(ctx: ExtractContext) -> None:
    assert demand_of("cloud-selectors", "karpenter-a100", ctx).model in ("A100-SXM4-40GB", "A100-SXM4-80GB")
    # p5 (H100) or p4d (A100 40 GB): the stronger of the two
    assert demand_of("cloud-selectors", "p5-instance", ctx).model == "H100-SXM5-80GB"


def test_the_product_label_comes_first(ctx: ExtractContext) -> None:
    assert demand_of("cloud-selectors", "azure-h200", ctx).model == "H200-SXM"
    objects = documents("cloud-selectors")
    pod = objects[3]
    pod["spec"]["nodeSelector"]["nvidia.com/gpu.product"] = "Tesla-T4"
    demand = extract(pod, ctx)
    assert demand is not None
    assert demand.model == "T4"


def test_an_unknown_cloud_value_counts_as_an_unknown_model(ctx: ExtractContext, catalog: Catalog) -> None:
    job = documents("cloud-selectors")[1]
    job["spec"]["template"]["spec"]["nodeSelector"] = {"node.kubernetes.io/instance-type": "x9.huge"}
    demand = extract(job, ctx)
    assert demand is not None
    assert demand.model == "unknown"  # the policy's unknown-part figure, above every catalog part
    assert demand.tpp >= 8 * catalog.strongest.tpp
    assert any("node.kubernetes.io/instance-type=x9.huge" in w for w in demand.warnings)
