"""The webhook's cluster view: Node objects (agent-published, GFD-only, unknown) → models and capacity, and the
list+watch loop that keeps it current through FakeKube (recorded nodes, 410 Gone, API errors)."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gpuquota.catalog import Catalog, parse_estimate_entry
from gpuquota.domain import GpuClass
from gpuquota.inventory import (
    ANNOTATION_INVENTORY,
    CapacityRow,
    ClusterInventory,
    NodeInventory,
    node_patch,
    run_node_watch,
)
from gpuquota.inventory.allocatable import strongest_of
from gpuquota.inventory.cluster import stands_for
from gpuquota.kube import KubeError
from gpuquota.testing import FakeKube
from tests.inventory.conftest import profile_variant

NODES = Path(__file__).parent / "nodes"
Discover = Callable[..., NodeInventory]


def recorded(name: str) -> dict[str, Any]:
    node: dict[str, Any] = json.loads((NODES / f"{name}.json").read_text())
    return node


def published_node(inventory: NodeInventory, base: str = "cpu-only") -> dict[str, Any]:
    """A recorded node after the agent's merge patch (labels + annotation) was applied to it."""
    node = recorded(base)
    node["metadata"]["name"] = inventory.node
    patch = node_patch(inventory)["metadata"]
    node["metadata"]["labels"].update({k: v for k, v in patch["labels"].items() if v is not None})
    node["metadata"]["annotations"].update(patch["annotations"])
    return node


def test_gfd_only_node_is_read_from_the_product_label(catalog: Catalog) -> None:
    view = ClusterInventory(catalog)
    view.apply_node(recorded("gfd-h100-p5"))
    assert view.models() == ("H100-SXM5-80GB",)
    assert view.capacity() == [CapacityRow("H100-SXM5-80GB", "3A090.a", 8, 8 * 15832.0)]
    node = view.node("ip-10-0-12-7.ec2.internal")
    assert node is not None
    assert node.source == "gfd"


def test_shared_suffix_is_the_same_model_and_counts_physical_gpus(catalog: Catalog) -> None:
    view = ClusterInventory(catalog)
    view.apply_node(recorded("gfd-l4-shared"))
    spec = catalog.get("L4")
    assert spec is not None
    assert view.models() == ("L4",)
    (row,) = view.capacity()
    assert row.gpus == 4  # gpu.count is physical; the 16 time-sliced replicas are not more hardware
    assert row.tpp == pytest.approx(4 * spec.tpp)


def test_unknown_product_is_listed_by_name_for_the_unknown_part_figure(catalog: Catalog) -> None:
    view = ClusterInventory(catalog)
    node = recorded("gfd-unknown-product")
    view.apply_node(node)
    (model,) = view.models()
    assert catalog.get(model) is None  # not a catalog part: workloads count the policy's unknownModelTpp
    assert model == node["metadata"]["labels"]["nvidia.com/gpu.product"]
    (row,) = view.capacity()
    assert row.model == "unknown"
    assert row.tpp == pytest.approx(4 * catalog.strongest.tpp)


def test_nodes_without_gpus_are_not_in_the_view(catalog: Catalog) -> None:
    view = ClusterInventory(catalog)
    view.apply_node(recorded("cpu-only"))
    assert view.models() == ()
    assert view.capacity() == []
    assert view.node_names() == ()


def test_agent_annotation_is_read_per_device(discover_profile: Discover, catalog: Catalog) -> None:
    view = ClusterInventory(catalog)
    view.apply_node(published_node(discover_profile("a100-mig-mixed", node="dgx-a100-1")))
    view.apply_node(published_node(discover_profile("h100-gpu-lost", node="dgx-h100-7")))
    assert view.models() == ("A100-SXM4-80GB", "H100-SXM5-80GB")
    assert view.capacity() == [
        CapacityRow("A100-SXM4-80GB", "3A090.a", 2, 2 * 4992.0),
        CapacityRow("H100-SXM5-80GB", "3A090.a", 3, 3 * 15832.0),  # the lost GPU is no capacity
    ]
    node = view.node("dgx-h100-7")
    assert node is not None
    assert node.source == "agent"


def test_the_annotation_wins_over_gfd_labels(discover_profile: Discover, catalog: Catalog) -> None:
    node = published_node(discover_profile("l4-4x", node="ip-10-0-12-7.ec2.internal"), base="gfd-h100-p5")
    view = ClusterInventory(catalog)
    view.apply_node(node)
    assert view.models() == ("L4",)


def test_estimated_device_stands_for_its_nvml_estimate(discover_profile: Discover, catalog: Catalog) -> None:
    """The issue's case: an uncatalogued Blackwell-Ultra-like part estimated above every catalog part is listed
    at its estimate, not folded onto the strongest catalog part (which would under-count it)."""
    inventory = discover_profile("unknown-future", node="x300-1")
    (device,) = inventory.devices
    assert device.estimated
    assert device.tpp > catalog.strongest.tpp
    view = ClusterInventory(catalog)
    view.apply_node(published_node(inventory))
    (model,) = view.models()
    parsed = parse_estimate_entry(model)
    assert parsed is not None
    assert parsed[0] == "nvidia-x300-sxm7"
    assert parsed[1] == pytest.approx(device.tpp, abs=0.1)
    assert [r.model for r in view.capacity()] == ["unknown"]


def test_malformed_annotation_falls_back_to_labels(catalog: Catalog) -> None:
    node = recorded("gfd-h100-p5")
    node["metadata"]["annotations"][ANNOTATION_INVENTORY] = '{"schema": 1, "devices": [{"index": "x"}]'
    view = ClusterInventory(catalog)
    view.apply_node(node)
    assert view.models() == ("H100-SXM5-80GB",)


def test_agent_labels_without_annotation(catalog: Catalog) -> None:
    node = recorded("cpu-only")
    node["metadata"]["labels"].update({"gpuquota.io/gpu-model": "RTX-4090", "gpuquota.io/gpu-count": "2"})
    view = ClusterInventory(catalog)
    view.apply_node(node)
    assert view.capacity() == [CapacityRow("RTX-4090", "3A090.a", 2, 2 * 5284.8)]  # 660.6 FP8 TOPS x 8


@pytest.mark.parametrize("count", ["0", "-1", "eight", ""])
def test_bad_or_zero_counts_fall_back_to_what_the_node_allocates(catalog: Catalog, count: str) -> None:
    node = recorded("gfd-h100-p5")
    node["metadata"]["labels"]["nvidia.com/gpu.count"] = count
    view = ClusterInventory(catalog)
    view.apply_node(node)
    assert view.capacity() == [CapacityRow("H100-SXM5-80GB", "3A090.a", 8, 8 * 15832.0)]  # allocatable: 8
    node["status"]["allocatable"]["nvidia.com/gpu"] = "0"
    node["status"]["capacity"]["nvidia.com/gpu"] = "0"
    view.apply_node(node)
    assert view.models() == ()


def test_a_node_that_loses_its_labels_is_never_ignored(catalog: Catalog) -> None:
    """GPUs its device plugin allocates stay in the view: at the model the instance type names, and with no label
    at all as the strongest GPU of the vendor, counted by gpuquota_cluster_unlabelled_gpu_nodes."""
    view = ClusterInventory(catalog)
    node = recorded("gfd-h100-p5")
    view.apply_node(node)
    stripped = copy.deepcopy(node)
    del stripped["metadata"]["labels"]["nvidia.com/gpu.product"]
    view.apply_node(stripped)
    assert view.capacity() == [CapacityRow("H100-SXM5-80GB", "3A090.a", 8, 8 * 15832.0)]  # p5.48xlarge
    assert view.unlabelled_nodes() == 0
    for label in ("node.kubernetes.io/instance-type", "nvidia.com/gpu.count"):
        del stripped["metadata"]["labels"][label]
    view.apply_node(stripped)
    strongest = strongest_of(catalog, "nvidia")
    assert view.models() == ("unknown",)  # workloads that may land there count the policy's unknown-part figure
    assert view.capacity() == [CapacityRow("unknown", strongest.gpu_class.value, 8, 8 * strongest.tpp)]
    assert view.unlabelled_nodes() == 1
    view.apply_node(node)
    assert view.unlabelled_nodes() == 0
    view.remove_node("ip-10-0-12-7.ec2.internal")
    assert view.models() == ()


def test_a_device_without_an_estimate_stands_for_its_name(
    discover_profile: Discover, catalog: Catalog, tmp_path: Path
) -> None:
    profile = profile_variant("unknown-future", tmp_path, replace={"  cores 20480\n": "  cores 0\n"})
    (device,) = discover_profile(profile).devices
    assert device.estimated  # the placeholder TPP of "no NVML-derived figure"
    assert stands_for(device, catalog) == "NVIDIA X300 SXM7"


@pytest.mark.parametrize(
    ("labels", "allocatable", "model"),
    [
        ({"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}, {"nvidia.com/gpu": "4"}, "T4"),
        ({"karpenter.k8s.aws/instance-gpu-name": "h200"}, {"nvidia.com/gpu": "8"}, "H200-SXM"),
        ({"node.kubernetes.io/instance-type": "a3-highgpu-8g"}, {"nvidia.com/gpu": "8"}, "H100-SXM5-80GB"),
        ({"node.kubernetes.io/instance-type": "Standard_ND96isr_MI300X_v5"}, {"amd.com/gpu": "8"}, "MI300X"),
        ({"node.kubernetes.io/instance-type": "p5.48xlarge"}, {"nvidia.com/mig-1g.10gb": "56"}, "H100-SXM5-80GB"),
    ],
)
def test_cloud_labels_name_the_model_of_allocated_gpus(
    catalog: Catalog, labels: dict[str, str], allocatable: dict[str, str], model: str
) -> None:
    node = recorded("cpu-only")
    node["metadata"]["labels"].update(labels)
    node["status"]["allocatable"].update(allocatable)
    view = ClusterInventory(catalog)
    view.apply_node(node)
    (row,) = view.capacity()
    assert (row.model, row.gpus) == (model, 4 if model == "T4" else 8)  # 56 MIG slices: 8 GPUs
    assert view.unlabelled_nodes() == 0


def test_unlabelled_amd_node_is_an_unknown_part(catalog: Catalog) -> None:
    node = recorded("cpu-only")
    node["status"]["allocatable"]["amd.com/gpu"] = "8"
    view = ClusterInventory(catalog)
    view.apply_node(node)
    assert view.models() == ("unknown",)
    (row,) = view.capacity()
    assert row.model == "unknown"
    assert row.tpp == pytest.approx(8 * strongest_of(catalog, "amd").tpp)  # capacity: the vendor's best
    assert view.unlabelled_nodes() == 1


# -- list + watch ---------------------------------------------------------------------------------------------


def _path(node: dict[str, Any]) -> str:
    return f"/api/v1/nodes/{node['metadata']['name']}"


@pytest.fixture
def kube() -> FakeKube:
    kube = FakeKube()
    for name in ("gfd-h100-p5", "gfd-l4-shared", "cpu-only"):
        node = recorded(name)
        kube.put(_path(node), node)
    return kube


@pytest.fixture
def watching(kube: FakeKube, catalog: Catalog) -> Iterator[ClusterInventory]:
    view = ClusterInventory(catalog)
    stop = threading.Event()
    thread = threading.Thread(
        target=run_node_watch,
        args=(kube, view, stop),
        kwargs={"resync_s": 3600, "max_backoff_s": 0.05, "idle_wait_s": 0.01},
        daemon=True,
    )
    thread.start()
    assert view.synced.wait(5)
    yield view
    stop.set()
    thread.join(5)
    assert not thread.is_alive()


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_watch_follows_additions_changes_and_deletions(watching: ClusterInventory, kube: FakeKube) -> None:
    assert watching.models() == ("H100-SXM5-80GB", "L4")
    unknown = recorded("gfd-unknown-product")
    kube.put(_path(unknown), unknown)
    eventually(lambda: "gpu-rubin-01" in watching.node_names())
    kube.delete("/api/v1/nodes/gke-pool-l4-3f9a")
    eventually(lambda: "gke-pool-l4-3f9a" not in watching.node_names())
    h100 = recorded("gfd-h100-p5")
    h100["metadata"]["labels"]["nvidia.com/gpu.count"] = "4"
    kube.put(_path(h100), h100)
    eventually(lambda: any(r.model == "H100-SXM5-80GB" and r.gpus == 4 for r in watching.capacity()))


def test_watch_relists_after_410_gone(watching: ClusterInventory, kube: FakeKube) -> None:
    kube.fail_next(KubeError(410, "too old resource version"))  # the watch's next call gets 410 Gone
    kube.delete("/api/v1/nodes/gke-pool-l4-3f9a")
    extra = recorded("gfd-unknown-product")
    kube.put(_path(extra), extra)
    kube.compact()  # the deletion event is gone from the log: only a relist can notice it
    eventually(lambda: "gke-pool-l4-3f9a" not in watching.node_names())
    assert "gpu-rubin-01" in watching.node_names()


def test_watch_survives_api_errors(watching: ClusterInventory, kube: FakeKube) -> None:
    kube.fail_next(KubeError(503, "etcd unavailable"), KubeError(0, "connection refused"), KubeError(500, "boom"))
    extra = recorded("gfd-unknown-product")
    kube.put(_path(extra), extra)
    eventually(lambda: "gpu-rubin-01" in watching.node_names())
    assert not kube.errors  # every injected failure was met and retried


def test_replace_all_marks_the_view_synced(catalog: Catalog) -> None:
    view = ClusterInventory(catalog)
    assert not view.synced.is_set()
    view.replace_all([recorded("gfd-h100-p5"), recorded("cpu-only")])
    assert view.synced.is_set()
    assert view.node_names() == ("ip-10-0-12-7.ec2.internal",)


def test_capacity_classes_come_from_the_catalog(catalog: Catalog) -> None:
    view = ClusterInventory(catalog)
    view.apply_node(recorded("gfd-l4-shared"))
    spec = catalog.get("L4")
    assert spec is not None
    assert view.capacity()[0].gpu_class == spec.gpu_class.value
    assert spec.gpu_class in set(GpuClass)


def test_events_that_change_nothing_gpu_related_are_not_reparsed(
    discover_profile: Discover, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpuquota.inventory import cluster  # noqa: PLC0415

    parsed: list[str] = []
    real = cluster.node_gpus

    def counting(node: dict[str, Any], catalog: Catalog, table: Any = None) -> Any:
        parsed.append(node["metadata"]["name"])
        return real(node, catalog, table)

    monkeypatch.setattr(cluster, "node_gpus", counting)
    view = ClusterInventory(catalog)
    node = published_node(discover_profile("h100-sxm-8x", node="dgx-h100-1"))
    view.apply_node(node)
    heartbeat = copy.deepcopy(node)
    heartbeat["metadata"]["resourceVersion"] = "99999"
    heartbeat["metadata"]["labels"]["node.kubernetes.io/exclude-from-external-load-balancers"] = "true"
    heartbeat["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-11-26T05:00:00Z"
    view.apply_node(heartbeat)
    assert parsed == ["dgx-h100-1"]
    lost = published_node(discover_profile("h100-gpu-lost", node="dgx-h100-1"))
    view.apply_node(lost)
    assert parsed == ["dgx-h100-1", "dgx-h100-1"]
    assert view.capacity()[0].gpus == 3
    view.remove_node("dgx-h100-1")
    view.apply_node(lost)  # back after a deletion: read again
    assert len(parsed) == 3


@pytest.mark.parametrize(
    ("product", "count", "gpus"),
    [
        ("NVIDIA-A100-SXM4-80GB-MIG-3g.40gb", 16, 8),  # 2 per GPU
        ("NVIDIA-A100-SXM4-80GB-MIG-1g.10gb", 56, 8),  # 7 per GPU
        ("NVIDIA-A100-SXM4-80GB-MIG-2g.20gb", 24, 8),  # 3 per GPU
        ("NVIDIA-A100-SXM4-80GB-MIG-7g.80gb", 8, 8),
        ("NVIDIA-A100-SXM4-80GB-MIG-3g.40gb", 3, 2),  # a partly filled GPU is still a GPU
        ("NVIDIA-A100-SXM4-80GB", 8, 8),
    ],
)
def test_gfd_single_mig_strategy_counts_physical_gpus(catalog: Catalog, product: str, count: int, gpus: int) -> None:
    node = recorded("gfd-h100-p5")
    node["metadata"]["labels"].update(
        {"nvidia.com/gpu.product": product, "nvidia.com/gpu.count": str(count), "nvidia.com/mig.strategy": "single"}
    )
    view = ClusterInventory(catalog)
    view.apply_node(node)
    assert view.models() == ("A100-SXM4-80GB",)
    assert view.capacity() == [CapacityRow("A100-SXM4-80GB", "3A090.a", gpus, gpus * 4992.0)]
