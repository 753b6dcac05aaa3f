"""Rating raw NVML readings: catalog match order, estimates, MIG proration — pure, with property tests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuquota.catalog import Catalog, GpuSpec, load_catalog
from gpuquota.domain import GpuClass
from gpuquota.inventory.rating import (
    RawDevice,
    RawMig,
    match_catalog,
    mig_profile,
    rate_device,
    sm_count_from_cores,
)

CATALOG = load_catalog()
H100_PCI = 0x233010DE


def test_pci_id_wins_over_the_name(catalog: Catalog) -> None:
    spec = match_catalog(RawDevice(index=0, name="NVIDIA L4", pci_device_id=H100_PCI), catalog)
    assert spec is not None
    assert spec.key == "H100-SXM5-80GB"


def test_another_vendors_pci_id_is_not_looked_up(catalog: Catalog) -> None:
    # 0x2330 under AMD's vendor id 0x1002 is not an H100.
    assert match_catalog(RawDevice(index=0, pci_device_id=0x23301002), catalog) is None


def test_name_is_used_when_the_pci_id_is_unknown(catalog: Catalog) -> None:
    spec = match_catalog(RawDevice(index=0, name="NVIDIA H100 80GB HBM3", pci_device_id=0x999910DE), catalog)
    assert spec is not None
    assert spec.key == "H100-SXM5-80GB"


def test_unknown_architecture_counts_as_the_strongest(catalog: Catalog) -> None:
    raw = RawDevice(
        index=0,
        name="NVIDIA Future",
        pci_device_id=0x400010DE,
        cc_major=14,
        cc_minor=0,
        cuda_cores=30000,
        max_sm_clock_mhz=2500,
    )
    device = rate_device(raw, catalog)
    assert device.estimated
    assert device.tpp == catalog.strongest.tpp
    assert device.gpu_class is catalog.strongest.gpu_class
    assert device.estimate_basis is not None
    assert "compute capability 14.0" in device.estimate_basis


def test_unidentifiable_device_is_zero_with_its_error(catalog: Catalog) -> None:
    device = rate_device(RawDevice(index=5, error="NVML_ERROR_GPU_IS_LOST: GPU is lost"), catalog)
    assert device.tpp == 0
    assert not device.identified
    assert device.error == "NVML_ERROR_GPU_IS_LOST: GPU is lost"
    assert device.gpu_class is GpuClass.UNCONTROLLED


@pytest.mark.parametrize(
    ("mig", "expected"),
    [
        (RawMig(index=0, name="NVIDIA H100 80GB HBM3 MIG 1g.10gb"), "1g.10gb"),
        (RawMig(index=0, name="NVIDIA A100-SXM4-80GB MIG 1c.3g.40gb"), "1c.3g.40gb"),
        (RawMig(index=0, name="NVIDIA H100 MIG 1g.10gb+me"), "1g.10gb+me"),
        (RawMig(index=0, slice_count=3, memory_mb=40192), "3g.40gb"),  # 39.25 GiB: NVIDIA rounds up
        (RawMig(index=0, slice_count=2, memory_mb=19968), "2g.20gb"),
        (RawMig(index=0, slice_count=1, memory_mb=4864), "1g.5gb"),  # A100 40GB
        (RawMig(index=0, slice_count=3, compute_slice_count=1, memory_mb=40192), "1c.3g.40gb"),
        (RawMig(index=0), None),
    ],
)
def test_mig_profile_names(mig: RawMig, expected: str | None) -> None:
    assert mig_profile(mig) == expected


def test_mig_without_sms_uses_the_catalog_profile(catalog: Catalog) -> None:
    raw = RawDevice(
        index=0,
        pci_device_id=0x20B210DE,
        mig_mode=True,
        migs=(RawMig(index=0, name="NVIDIA A100-SXM4-80GB MIG 1c.3g.40gb", slice_count=3),),
    )
    device = rate_device(raw, catalog)
    spec = catalog.get("A100-SXM4-80GB")
    assert spec is not None
    assert device.mig[0].tpp == pytest.approx(spec.mig_tpp("3g.40gb"), abs=0.1)


def test_mig_with_nothing_to_prorate_by_counts_the_whole_parent(catalog: Catalog) -> None:
    raw = RawDevice(index=0, pci_device_id=H100_PCI, mig_mode=True, migs=(RawMig(index=0, error="lost"),))
    assert rate_device(raw, catalog).mig[0].tpp == 15832


def test_sm_count_from_cores() -> None:
    assert sm_count_from_cores(RawDevice(index=0, cuda_cores=16896, cc_major=9, cc_minor=0)) == 132
    assert sm_count_from_cores(RawDevice(index=0, cuda_cores=6912, cc_major=8, cc_minor=0)) == 108
    assert sm_count_from_cores(RawDevice(index=0, cuda_cores=20480, cc_major=10, cc_minor=3)) == 160
    assert sm_count_from_cores(RawDevice(index=0, cuda_cores=None, cc_major=9, cc_minor=0)) is None


# -- properties -----------------------------------------------------------------------------------------------

known_specs = [s for s in CATALOG if s.pci_device_ids and s.vendor == "nvidia"]  # NVML sees NVIDIA parts only


@given(
    spec=st.sampled_from(known_specs),
    clock=st.integers(min_value=0, max_value=4000),
    cores=st.integers(min_value=0, max_value=40000),
    name=st.text(max_size=30),
)
def test_a_catalogued_pci_id_always_gives_the_catalog_figure(spec: GpuSpec, clock: int, cores: int, name: str) -> None:
    raw = RawDevice(
        index=0,
        name=name,
        pci_device_id=spec.pci_device_ids[0] << 16 | 0x10DE,
        cc_major=9,
        cc_minor=0,
        cuda_cores=cores,
        max_sm_clock_mhz=clock,
    )
    device = rate_device(raw, CATALOG)
    assert device.catalog_key == spec.key
    assert device.tpp == pytest.approx(spec.tpp, abs=0.1)
    assert not device.estimated
    assert device.gpu_class is spec.gpu_class


@given(
    cc=st.sampled_from([(7, 0), (7, 5), (8, 0), (8, 6), (8, 9), (9, 0), (10, 0), (10, 3), (12, 0), (13, 1)]),
    sms=st.integers(min_value=1, max_value=400),
    clock=st.integers(min_value=1, max_value=5000),
)
def test_an_unknown_device_is_never_counted_as_nothing(cc: tuple[int, int], sms: int, clock: int) -> None:
    per_sm = 64 if cc[0] == 7 or cc == (8, 0) else 128
    raw = RawDevice(
        index=0,
        name="NVIDIA Prototype",
        pci_device_id=0xFFFE10DE,
        cc_major=cc[0],
        cc_minor=cc[1],
        cuda_cores=sms * per_sm,
        max_sm_clock_mhz=clock,
    )
    device = rate_device(raw, CATALOG)
    assert device.estimated
    assert device.tpp > 0
    assert device.catalog_key is None
    assert device.estimate_basis


@given(
    spec=st.sampled_from([s for s in CATALOG if s.mig and s.sm_count and s.pci_device_ids]),
    data=st.data(),
)
def test_mig_slices_are_prorated_by_sms_and_never_exceed_the_parent(spec: GpuSpec, data: st.DataObject) -> None:
    assert spec.sm_count is not None
    profiles = data.draw(st.lists(st.sampled_from(sorted(spec.mig)), min_size=1, max_size=7))
    migs = tuple(
        RawMig(index=i, name=f"{spec.names[0]} MIG {p}", sm_count=spec.mig[p], slice_count=int(p[0]))
        for i, p in enumerate(profiles)
    )
    raw = RawDevice(index=0, pci_device_id=spec.pci_device_ids[0] << 16 | 0x10DE, mig_mode=True, migs=migs)
    device = rate_device(raw, CATALOG)
    for instance, profile in zip(device.mig, profiles, strict=True):
        assert 0 < instance.tpp <= device.tpp
        assert instance.profile == profile
        assert instance.tpp == pytest.approx(spec.tpp * spec.mig[profile] / spec.sm_count, abs=0.1)
    by_sms = sorted(device.mig, key=lambda m: m.sm_count or 0)
    assert [m.tpp for m in by_sms] == sorted(m.tpp for m in by_sms)  # more SMs, never less TPP
