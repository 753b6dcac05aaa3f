"""Discovery through the real pynvml bindings against the fake libnvidia-ml, one profile per real machine type."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pynvml
import pytest

from gpuquota.catalog import Catalog, classify, estimate_tpp
from gpuquota.domain import GpuClass
from gpuquota.inventory import NodeInventory, NvmlUnavailable, discover
from tests.inventory.conftest import ALL_PROFILES, profile_variant

Discover = Callable[..., NodeInventory]


def test_eight_h100_sxm(discover_profile: Discover, catalog: Catalog) -> None:
    inventory = discover_profile("h100-sxm-8x")
    spec = catalog.get("H100-SXM5-80GB")
    assert spec is not None
    assert inventory.driver_version == "550.54.15"
    assert inventory.nvml_version == "12.550.54.15"
    assert inventory.cuda_driver_version == 12040
    assert [d.index for d in inventory.devices] == list(range(8))
    assert len({d.uuid for d in inventory.devices}) == 8
    for device in inventory.devices:
        assert device.catalog_key == "H100-SXM5-80GB"
        assert device.tpp == spec.tpp == 15832
        assert device.gpu_class is GpuClass.A090_A
        assert device.h100e == pytest.approx(1.0)
        assert device.pci_device_id == 0x233010DE
        assert device.name == "NVIDIA H100 80GB HBM3"
        assert device.brand == "NVIDIA"
        assert device.memory_bytes == 81559 * 2**20
        assert device.compute_capability == "9.0"
        assert device.max_sm_clock_mhz == 1980
        assert device.power_limit_w == 700.0
        assert device.mig_mode is False
        assert not device.estimated
        assert device.error is None
        assert device.sm_count == 132
    assert inventory.gpu_count == 8
    assert inventory.total_tpp == 8 * 15832


def test_a100_in_mig_mixed_mode(discover_profile: Discover, catalog: Catalog) -> None:
    inventory = discover_profile("a100-mig-mixed")
    mig_gpu, plain_gpu = inventory.devices
    spec = catalog.get("A100-SXM4-80GB")
    assert spec is not None
    assert spec.sm_count == 108
    assert mig_gpu.mig_mode is True
    assert plain_gpu.mig_mode is False
    assert plain_gpu.mig == ()
    assert mig_gpu.tpp == plain_gpu.tpp == spec.tpp  # MIG partitions a GPU; the hardware is the same
    assert mig_gpu.mig_profiles == {"3g.40gb": 1, "2g.20gb": 2}
    by_profile = {m.profile: m for m in mig_gpu.mig}
    big, small = by_profile["3g.40gb"], by_profile["2g.20gb"]
    assert (big.sm_count, big.slice_count, big.memory_bytes) == (42, 3, 40192 * 2**20)
    assert (small.sm_count, small.slice_count, small.memory_bytes) == (28, 2, 19968 * 2**20)
    assert big.tpp == pytest.approx(spec.tpp * 42 / 108, abs=0.1)
    assert small.tpp == pytest.approx(spec.tpp * 28 / 108, abs=0.1)
    assert big.tpp == pytest.approx(spec.mig_tpp("3g.40gb"), abs=0.1)  # SMs from NVML agree with the catalog's
    assert sum(m.tpp for m in mig_gpu.mig) < mig_gpu.tpp
    assert [m.gpu_instance_id for m in mig_gpu.mig] == [2, 3, 5]
    assert all(m.uuid and m.uuid.startswith("MIG-") for m in mig_gpu.mig)
    assert all(m.error is None for m in mig_gpu.mig)


def test_l4_node_has_no_mig(discover_profile: Discover, catalog: Catalog) -> None:
    inventory = discover_profile("l4-4x")
    spec = catalog.get("L4")
    assert spec is not None
    assert inventory.gpu_count == 4
    assert {d.catalog_key for d in inventory.devices} == {"L4"}
    assert all(d.mig_mode is None and d.error is None for d in inventory.devices)  # Not Supported is no error
    assert inventory.total_tpp == pytest.approx(4 * spec.tpp)
    assert inventory.devices[0].gpu_class is spec.gpu_class


def test_rtx_4090_workstation(discover_profile: Discover) -> None:
    inventory = discover_profile("rtx4090-workstation")
    (device,) = inventory.devices
    assert device.catalog_key == "RTX-4090"
    assert device.brand == "GeForce"
    assert device.tpp == pytest.approx(5284.8)  # 660.6 FP8 TOPS x 8
    assert device.gpu_class is GpuClass.A090_A
    assert inventory.driver_version == "560.35.03"


def test_h20_uses_the_catalog_not_the_sm_formula(discover_profile: Discover, catalog: Catalog) -> None:
    inventory = discover_profile("h20-8x")
    spec = catalog.get("H20")
    assert spec is not None
    formula = estimate_tpp(9, 0, 78, 1980)
    assert formula is not None
    for device in inventory.devices:
        assert device.catalog_key == "H20"
        assert device.tpp == spec.tpp
        assert not device.estimated
        assert device.tpp < formula.tpp / 4  # the cut-down part the formula would overstate
    assert inventory.total_tpp == pytest.approx(8 * spec.tpp)


def test_unknown_future_device_is_estimated_and_says_so(discover_profile: Discover) -> None:
    inventory = discover_profile("unknown-future")
    (device,) = inventory.devices
    expected = estimate_tpp(10, 3, 160, 2032)  # 20480 cores / 128 per SM
    assert expected is not None
    assert device.catalog_key is None
    assert device.estimated
    assert device.tpp == pytest.approx(expected.tpp, abs=0.1)
    assert device.estimate_basis is not None
    assert "estimate" in device.estimate_basis
    assert "160 SM" in device.estimate_basis
    assert device.gpu_class is classify(expected.tpp, None)
    assert device.sm_count == 160


def test_a_lost_gpu_does_not_hide_the_others(discover_profile: Discover) -> None:
    inventory = discover_profile("h100-gpu-lost")
    assert len(inventory.devices) == 4
    lost = inventory.devices[2]
    assert lost.error is not None
    assert "NVML_ERROR_GPU_IS_LOST" in lost.error
    assert "GPU is lost" in lost.error
    assert lost.tpp == 0
    assert not lost.identified
    others = [d for d in inventory.devices if d.index != 2]
    assert all(d.catalog_key == "H100-SXM5-80GB" and d.error is None for d in others)
    assert inventory.gpu_count == 3
    assert inventory.total_tpp == 3 * 15832


def test_queries_failing_on_one_device_leave_the_rest_of_it(discover_profile: Discover, tmp_path: Path) -> None:
    profile = profile_variant(
        "l4-4x",
        tmp_path,
        replace={
            "  max_mig 0\n": "  max_mig 0\n  fail nvmlDeviceGetPowerManagementLimit 4\n  fail nvmlDeviceGetName 999\n"
        },
    )
    inventory = discover_profile(profile)
    first, second = inventory.devices[0], inventory.devices[1]
    assert first.power_limit_w is None
    assert first.name is None
    assert first.catalog_key == "L4"  # the PCI id still identifies it
    assert first.error is not None
    assert "NVML_ERROR_NO_PERMISSION: Insufficient Permissions (nvmlDeviceGetPowerManagementLimit)" in first.error
    assert "NVML_ERROR_UNKNOWN: Unknown Error (nvmlDeviceGetName)" in first.error
    assert second.error is None
    assert second.power_limit_w == 72.0


def test_not_supported_queries_are_not_errors(discover_profile: Discover, tmp_path: Path) -> None:
    profile = profile_variant("rtx4090-workstation", tmp_path, replace={"  cores 16384\n": "  cores 0\n"})
    (device,) = discover_profile(profile).devices
    assert device.error is None
    assert device.catalog_key == "RTX-4090"


def test_unknown_pci_id_falls_back_to_the_name(discover_profile: Discover, tmp_path: Path) -> None:
    profile = profile_variant("l4-4x", tmp_path, replace={"pci 0x27B810DE": "pci 0xFFF010DE"})
    device = discover_profile(profile).devices[0]
    assert device.catalog_key == "L4"
    assert device.pci_device_id == 0xFFF010DE


def test_unknown_device_without_core_count_counts_as_the_strongest(
    discover_profile: Discover, tmp_path: Path, catalog: Catalog
) -> None:
    profile = profile_variant("unknown-future", tmp_path, replace={"  cores 20480\n": "  cores 0\n"})
    (device,) = discover_profile(profile).devices
    assert device.estimated
    assert device.tpp == catalog.strongest.tpp
    assert device.estimate_basis is not None
    assert catalog.strongest.key in device.estimate_basis


def test_a_failing_mig_device_is_listed_with_its_error(discover_profile: Discover, tmp_path: Path) -> None:
    profile = profile_variant("a100-mig-mixed", tmp_path, replace={"    sms 28\n": "    sms 28\n    error 999\n"})
    mig = discover_profile(profile).devices[0].mig
    assert len(mig) == 3
    failed = [m for m in mig if m.error]
    assert len(failed) == 1
    assert "NVML_ERROR_UNKNOWN" in (failed[0].error or "")
    assert failed[0].tpp > 0  # never counted as nothing


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_inventory_json_round_trips(discover_profile: Discover, profile: str) -> None:
    inventory = discover_profile(profile)
    assert NodeInventory.from_json(inventory.to_json()) == inventory
    assert NodeInventory.from_json(inventory.to_json(indent=2)) == inventory


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_shutdown_after_every_read(discover_profile: Discover, profile: str) -> None:
    discover_profile(profile)
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetCount()  # discovery shut NVML down again


# -- NVML unavailable -----------------------------------------------------------------------------------------


def _one_line(exc: NvmlUnavailable) -> str:
    message = str(exc)
    assert "\n" not in message
    assert message.startswith("NVML is not available: ")
    assert exc.exit_code == 3
    return message


def test_no_library_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fake cannot un-exist itself: make the library load fail as it does on a machine without a driver.
    def no_library(name: str) -> None:
        raise OSError(f"{name}: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(pynvml, "nvmlLib", None)
    monkeypatch.setattr(pynvml, "CDLL", no_library)
    with pytest.raises(NvmlUnavailable) as info:
        discover(node_name="n")
    message = _one_line(info.value)
    assert "libnvidia-ml.so.1 not found" in message
    assert "NVML_ERROR_LIBRARY_NOT_FOUND" in message


@pytest.mark.parametrize(
    ("init_error", "expected"),
    [
        (9, "kernel driver is not loaded"),
        (4, "no permission to open the GPU device files"),
        (18, "differ in version"),
        (999, "nvmlInit failed: NVML_ERROR_UNKNOWN"),
    ],
)
def test_init_errors_are_one_line_errors(
    fake_nvml: Callable[[str | Path], None], tmp_path: Path, init_error: int, expected: str
) -> None:
    fake_nvml(profile_variant("l4-4x", tmp_path, append=f"\ninit_error {init_error}\n"))
    with pytest.raises(NvmlUnavailable) as info:
        discover(node_name="n")
    assert expected in _one_line(info.value)


def test_missing_profile_reads_as_no_driver(fake_nvml: Callable[[str | Path], None], tmp_path: Path) -> None:
    fake_nvml(tmp_path / "absent.profile")
    with pytest.raises(NvmlUnavailable, match="driver is not loaded"):
        discover(node_name="n")


def test_device_count_failure_is_unavailable(fake_nvml: Callable[[str | Path], None], tmp_path: Path) -> None:
    fake_nvml(profile_variant("l4-4x", tmp_path, replace={"cuda 12040\n": "cuda 12040\ncount_error 999\n"}))
    with pytest.raises(NvmlUnavailable, match="nvmlDeviceGetCount failed"):
        discover(node_name="n")


def test_node_name_defaults_to_node_name_env(
    fake_nvml: Callable[[str | Path], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_nvml("l4-4x")
    monkeypatch.setenv("NODE_NAME", "gpu-node-from-env")
    assert discover().node == "gpu-node-from-env"
