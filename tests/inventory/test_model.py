"""The inventory document (the ``gpuquota.io/inventory`` annotation): round trip and rejection of bad input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuquota.domain import GpuClass
from gpuquota.inventory import DeviceInfo, InventoryFormatError, MigInstance, NodeInventory

small_int = st.none() | st.integers(min_value=0, max_value=2**40)
text = st.none() | st.text(max_size=40)
finite = st.floats(min_value=0, max_value=1e6, allow_nan=False)

migs = st.builds(
    MigInstance,
    index=st.integers(min_value=0, max_value=6),
    uuid=text,
    profile=st.none() | st.sampled_from(["1g.10gb", "2g.20gb", "3g.40gb", "1c.3g.40gb"]),
    gpu_instance_id=small_int,
    compute_instance_id=small_int,
    slice_count=small_int,
    sm_count=small_int,
    memory_bytes=small_int,
    tpp=finite,
    error=text,
)
devices = st.builds(
    DeviceInfo,
    index=st.integers(min_value=0, max_value=15),
    uuid=text,
    name=text,
    pci_device_id=st.none() | st.integers(min_value=0, max_value=2**32 - 1),
    brand=text,
    memory_bytes=small_int,
    compute_capability=st.none() | st.sampled_from(["8.0", "9.0", "10.3"]),
    max_sm_clock_mhz=small_int,
    power_limit_w=st.none() | finite,
    mig_mode=st.none() | st.booleans(),
    catalog_key=text,
    tpp=finite,
    gpu_class=st.sampled_from(list(GpuClass)),
    h100e=finite,
    estimated=st.booleans(),
    estimate_basis=text,
    mig=st.lists(migs, max_size=3).map(tuple),
    error=text,
    sm_count=small_int,
)
inventories = st.builds(
    NodeInventory,
    node=st.text(min_size=1, max_size=30),
    driver_version=text,
    nvml_version=text,
    cuda_driver_version=small_int,
    devices=st.lists(devices, max_size=4).map(tuple),
)


@given(inventories)
def test_json_round_trip(inventory: NodeInventory) -> None:
    assert NodeInventory.from_json(inventory.to_json()) == inventory


@given(inventories)
def test_totals_are_in_the_document(inventory: NodeInventory) -> None:
    document = json.loads(inventory.to_json())
    assert document["schema"] == 1
    assert document["gpu_count"] == sum(1 for d in inventory.devices if d.tpp > 0)
    assert document["total_tpp"] == pytest.approx(inventory.total_tpp, abs=0.06)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("not json", "not JSON"),
        ("[]", "JSON object"),
        ('{"schema": 2, "node": "n", "devices": []}', "schema 2"),
        ('{"schema": 1, "devices": []}', "malformed"),
        ('{"schema": 1, "node": "n", "devices": [{"index": 0}]}', "malformed"),
        ('{"schema": 1, "node": "n", "devices": ["x"]}', "malformed"),
        (
            '{"schema": 1, "node": "n", "devices": [{"index": 0, "tpp": -1, "gpu_class": "3A090.a", "h100e": 0}]}',
            "negative",
        ),
        (
            '{"schema": 1, "node": "n", "devices": [{"index": 0, "tpp": 1, "gpu_class": "3A090.z", "h100e": 0}]}',
            "malformed",
        ),
        (
            '{"schema": 1, "node": "n", "devices": [{"index": 0, "tpp": 1, "gpu_class": "3A090.a", "h100e": 0,'
            ' "memory_bytes": "lots"}]}',
            "malformed",
        ),
        (
            '{"schema": 1, "node": "n", "devices": [{"index": 0, "tpp": 1, "gpu_class": "3A090.a", "h100e": 0,'
            ' "mig_mode": "yes"}]}',
            "malformed",
        ),
    ],
)
def test_bad_documents_are_rejected_with_a_reason(document: str, problem: str) -> None:
    with pytest.raises(InventoryFormatError, match=problem):
        NodeInventory.from_json(document)


def test_mig_layout_changes_with_profiles_only() -> None:
    def device(profiles: tuple[str, ...]) -> DeviceInfo:
        return DeviceInfo(
            index=0, uuid="GPU-1", name="NVIDIA A100-SXM4-80GB", pci_device_id=0x20B210DE, brand="NVIDIA",
            memory_bytes=85899345920, compute_capability="8.0", max_sm_clock_mhz=1410, power_limit_w=400.0,
            mig_mode=True, catalog_key="A100-SXM4-80GB", tpp=4992.0, gpu_class=GpuClass.A090_A, h100e=0.3,
            mig=tuple(MigInstance(i, None, p, None, None, None, None, None, 1.0) for i, p in enumerate(profiles)),
        )  # fmt: skip

    before = NodeInventory("n", None, None, None, (device(("3g.40gb", "2g.20gb", "2g.20gb")),))
    after = NodeInventory("n", None, None, None, (device(("7g.80gb",)),))
    assert before.mig_layout() != after.mig_layout()
    assert before.devices[0].mig_profiles == {"3g.40gb": 1, "2g.20gb": 2}
