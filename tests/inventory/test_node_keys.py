"""The agent's node labels and annotation: valid values, only its own keys, conservative headline model."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from gpuquota.domain import GpuClass
from gpuquota.inventory import ANNOTATION_INVENTORY, LABEL_CLASS, LABEL_COUNT, LABEL_MODEL, NodeInventory, node_patch
from gpuquota.inventory.node_keys import expected, label_value, node_labels, published
from gpuquota.testing import FakeKube
from tests.inventory.conftest import ALL_PROFILES
from tests.inventory.test_cluster import recorded

Discover = Callable[..., NodeInventory]
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def test_labels_of_every_profile_are_valid(discover_profile: Discover) -> None:
    for profile in ALL_PROFILES:
        labels = node_labels(discover_profile(profile))
        for value in labels.values():
            assert value is not None
            assert len(value) <= 63
            assert LABEL_VALUE.match(value), value


def test_h100_node_labels(discover_profile: Discover) -> None:
    assert node_labels(discover_profile("h100-sxm-8x")) == {
        LABEL_MODEL: "H100-SXM5-80GB",
        LABEL_COUNT: "8",
        LABEL_CLASS: "3A090.a",
    }


def test_unknown_device_is_labelled_unknown(discover_profile: Discover) -> None:
    labels = node_labels(discover_profile("unknown-future"))
    assert labels[LABEL_MODEL] == "unknown"
    assert labels[LABEL_COUNT] == "1"


def test_mixed_node_is_named_after_its_most_powerful_gpu(discover_profile: Discover) -> None:
    l4 = discover_profile("l4-4x")
    h100 = discover_profile("h100-sxm-8x").devices[0]
    mixed = replace(l4, devices=(*l4.devices, replace(h100, index=4)))
    assert node_labels(mixed)[LABEL_MODEL] == "H100-SXM5-80GB"
    assert node_labels(mixed)[LABEL_COUNT] == "5"


def test_highest_class_is_labelled(discover_profile: Discover) -> None:
    h20 = discover_profile("h20-8x")
    l4 = discover_profile("l4-4x").devices[0]
    mixed = replace(h20, devices=(*h20.devices, replace(l4, index=8)))
    classes = {d.gpu_class for d in mixed.devices}
    rank = [GpuClass.UNCONTROLLED, GpuClass.A090_B, GpuClass.A090_A]
    assert node_labels(mixed)[LABEL_CLASS] == max(classes, key=rank.index).value


def test_a_node_whose_gpus_vanished_drops_model_and_class(discover_profile: Discover) -> None:
    lost = discover_profile("h100-gpu-lost")
    only_lost = replace(lost, devices=(lost.devices[2],))
    assert node_labels(only_lost) == {LABEL_MODEL: None, LABEL_CLASS: None, LABEL_COUNT: "0"}


def test_patch_touches_only_the_agents_keys(discover_profile: Discover) -> None:
    kube = FakeKube()
    node = recorded("gfd-h100-p5")
    path = f"/api/v1/nodes/{node['metadata']['name']}"
    node["metadata"]["labels"][LABEL_MODEL] = "stale"
    kube.put(path, node)
    inventory = discover_profile("h100-sxm-8x", node=node["metadata"]["name"])
    after = kube.patch(path, node_patch(inventory))
    before_labels = {k: v for k, v in node["metadata"]["labels"].items() if not k.startswith("gpuquota.io/")}
    after_labels = {k: v for k, v in after["metadata"]["labels"].items() if not k.startswith("gpuquota.io/")}
    assert after_labels == before_labels
    assert after["metadata"]["annotations"]["node.alpha.kubernetes.io/ttl"] == "0"
    assert after["spec"] == node["spec"]
    assert after["status"] == node["status"]
    assert published(after) == expected(inventory)
    assert NodeInventory.from_json(after["metadata"]["annotations"][ANNOTATION_INVENTORY]) == inventory
    assert set(node_patch(inventory)) == {"metadata"}
    assert set(node_patch(inventory)["metadata"]) == {"labels", "annotations"}


@given(st.text(max_size=100))
def test_label_value_is_always_valid(text: str) -> None:
    value = label_value(text)
    assert len(value) <= 63
    assert LABEL_VALUE.match(value)
    assert value  # never empty: an empty value would read as "no model"


def test_label_value_keeps_catalog_keys() -> None:
    assert label_value("H100-SXM5-80GB") == "H100-SXM5-80GB"
    assert label_value("3A090.a") == "3A090.a"
    assert label_value("RTX 6000 Ada") == "RTX-6000-Ada"
