"""The GPU catalog against the export-control reference table, lookups by every spelling, MIG proration,
3A090 classification at its thresholds and the NVML-derived estimate."""

from __future__ import annotations

from typing import Any

import pytest

from gpuquota.catalog import (
    CatalogError,
    classify,
    estimate_tpp,
    h100_equivalents,
    load_catalog,
    normalise_name,
    parse_catalog,
    performance_density,
)
from gpuquota.domain import GpuClass

A, B, U = GpuClass.A090_A, GpuClass.A090_B, GpuClass.UNCONTROLLED

# (catalog key, TPP, PD or None when no die area is published, class) — rows of
# ../shared/reference/export-controls.md, "Accelerator figures".
REFERENCE = [
    ("H100-SXM5-80GB", 15832, 19.45, A),
    ("H100-PCIe", 12104, 14.87, A),
    ("H100-NVL", 13364, 16.4, A),
    ("H200-NVL", 13364, 16.4, A),
    ("H200-SXM", 15832, 19.45, A),
    ("H800-PCIe", 12104, None, A),
    ("H20", 2368, 2.91, U),
    ("A100-SXM4-80GB", 4992, 6.04, A),
    ("A100-PCIe-40GB", 4992, 6.04, A),
    ("A800", 4992, 6.04, A),
    ("L40S", 5864, 9.64, A),
    ("L40", 2896, 4.76, B),
    ("L4", 1940, 6.59, A),
    ("L20", 1912, 3.14, U),
    ("A10", 2000, 3.18, U),
    ("A30", 2640, 3.20, B),
    ("T4", 1040, 1.91, U),
    ("V100-SXM2", 2000, 2.45, U),
    ("RTX-4090", 5285, 8.68, A),
    ("RTX-4090-D", 4707, 7.7, A),
    ("RTX-6000-Ada", 5828, 9.58, A),
    ("B100", 28000, None, A),
    ("B200", 36000, None, A),
    ("GB200", 40000, None, A),
    ("MI300X", 20919, None, A),
    ("Gaudi3", 29360, None, A),
]


@pytest.mark.parametrize(("key", "tpp", "pd", "gpu_class"), REFERENCE)
def test_reference_rows(key: str, tpp: float, pd: float | None, gpu_class: GpuClass) -> None:
    spec = load_catalog().get(key)
    assert spec is not None, key
    assert spec.tpp == tpp
    if pd is not None:
        assert spec.performance_density == pytest.approx(pd, abs=0.05)
    assert spec.gpu_class is gpu_class
    assert spec.source
    assert spec.confidence[0] in "PSCU"


@pytest.mark.parametrize(
    ("pci", "key"),
    [
        (0x2330, "H100-SXM5-80GB"),
        (0x2331, "H100-PCIe"),
        (0x2322, "H800-PCIe"),
        (0x20B2, "A100-SXM4-80GB"),
        (0x20B5, "A100-PCIe-80GB"),
        (0x26B9, "L40S"),
        (0x2684, "RTX-4090"),
        (0x2685, "RTX-4090-D"),
        (0x2920, "B100"),
        (0x2901, "B200"),
        (0x233010DE, "H100-SXM5-80GB"),
    ],
)
def test_pci_device_ids(pci: int, key: str) -> None:
    spec = load_catalog().by_pci_device_id(pci)
    assert spec is not None
    assert spec.key == key


def test_unknown_pci_device_id() -> None:
    assert load_catalog().by_pci_device_id(0xFFFF) is None


@pytest.mark.parametrize(
    "name",
    [
        "NVIDIA H100 80GB HBM3",
        "NVIDIA-H100-80GB-HBM3",
        "nvidia-h100-80gb-hbm3",
        "H100-SXM5-80GB",
        "NVIDIA-H100-80GB-HBM3-SHARED",
        "NVIDIA-H100-80GB-HBM3-MIG-3g.40gb",
        "  NVIDIA_H100_80GB_HBM3 ",
    ],
)
def test_every_spelling_finds_the_h100(name: str) -> None:
    spec = load_catalog().get(name)
    assert spec is not None
    assert spec.key == "H100-SXM5-80GB"
    assert spec.product_label == "NVIDIA-H100-80GB-HBM3"


def test_unknown_name() -> None:
    assert load_catalog().get("Voodoo 5 6000") is None


def test_normalise_name_strips_stacked_suffixes() -> None:
    assert normalise_name("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb-SHARED") == "nvidia-a100-sxm4-40gb"
    assert normalise_name("NVIDIA-A100-SXM4-80GB-MIG-1g.10gb+me") == "nvidia-a100-sxm4-80gb"


def test_mig_slices_are_prorated_by_sms() -> None:
    h100 = load_catalog().get("H100-SXM5-80GB")
    assert h100 is not None
    assert h100.mig_tpp("3g.40gb") == pytest.approx(15832 * 60 / 132)
    assert h100.mig_tpp("7g.80gb") == pytest.approx(15832)
    assert h100.mig_fraction("1g.10gb") == pytest.approx(16 / 132)
    assert h100.mig_tpp("9g.90gb") is None
    l40s = load_catalog().get("L40S")
    assert l40s is not None
    assert l40s.mig_tpp("1g.10gb") is None  # no MIG on Ada


def test_mig_parent_is_the_most_powerful_part_offering_the_profile() -> None:
    catalog = load_catalog()
    parent = catalog.mig_parent("3g.40gb")
    assert parent is not None
    spec, tpp = parent
    assert spec.tpp == 15832
    assert tpp == pytest.approx(15832 * 60 / 132)
    a100_only = catalog.mig_parent("1g.5gb")
    assert a100_only is not None
    assert a100_only[0].key.startswith("A100")
    assert catalog.mig_parent("5g.50gb") is None


def test_most_powerful_is_the_conservative_default() -> None:
    catalog = load_catalog()
    assert catalog.strongest.key == "GB200"
    assert catalog.most_powerful().tpp == max(s.tpp for s in catalog)
    a100 = catalog.get("A100-SXM4-80GB")
    h100 = catalog.get("H100-PCIe")
    assert a100 is not None
    assert h100 is not None
    assert catalog.most_powerful([a100, h100]) is h100


def test_h100_equivalents() -> None:
    assert h100_equivalents(15832) == 1
    assert h100_equivalents(26_900_000) == pytest.approx(1699.1, abs=0.05)
    spec = load_catalog().get("B200")
    assert spec is not None
    assert spec.h100e == pytest.approx(36000 / 15832)


@pytest.mark.parametrize(
    ("tpp", "pd", "expected"),
    [
        (4800, 1.0, A),  # TPP ≥ 4800
        (4799, 5.92, A),  # TPP ≥ 1600 and PD ≥ 5.92
        (1600, 5.92, A),
        (1599, 100.0, U),
        (4799, 5.91, B),  # 2400 ≤ TPP < 4800 with 1.6 ≤ PD < 5.92
        (2400, 1.6, B),
        (2399, 1.6, U),
        (2400, 1.59, U),
        (1600, 3.2, B),  # TPP ≥ 1600 with 3.2 ≤ PD < 5.92
        (1600, 3.19, U),
        (2000, None, A),  # unknown die area counts as dense: conservative
        (1000, None, U),
    ],
)
def test_3a090_thresholds(tpp: float, pd: float | None, expected: GpuClass) -> None:
    assert classify(tpp, pd) is expected


def test_performance_density_needs_a_die_area() -> None:
    assert performance_density(15832, 814) == pytest.approx(19.45, abs=0.01)
    assert performance_density(15832, None) is None
    assert performance_density(15832, 0) is None


def test_estimate_reproduces_full_parts() -> None:
    h100 = estimate_tpp(9, 0, 132, 1830)
    assert h100 is not None
    assert h100.tpp == pytest.approx(15832, rel=0.001)
    assert h100.basis.startswith("estimate:")
    a100 = estimate_tpp(8, 0, 108, 1410)
    assert a100 is not None
    assert a100.tpp == pytest.approx(4992, rel=0.001)


def test_estimate_unknown_architecture_or_nonsense() -> None:
    assert estimate_tpp(6, 0, 56, 1480) is None  # Pascal: not in the table
    assert estimate_tpp(9, 0, 0, 1830) is None
    assert estimate_tpp(9, 0, 132, 0) is None
    newer_minor = estimate_tpp(9, 2, 132, 1830)  # an unknown minor revision uses its major's highest figure
    assert newer_minor is not None
    assert newer_minor.tpp == pytest.approx(15832, rel=0.001)


def _row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "key": "X1",
        "vendor": "acme",
        "names": ["Acme X1"],
        "tflops": {"fp16": 100},
        "tpp": 1600,
        "confidence": "U",
        "source": "test",
    }
    row.update(changes)
    return row


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([_row(tpp=2000)], "tpp 2000 disagrees with its per-precision figures (1600)"),
        ([_row(tflops={"fp12": 1})], "unknown precision"),
        ([_row(tflops={"fp16": -1})], "positive dense figure"),
        ([_row(confidence="maybe")], "confidence"),
        ([_row(), _row(key="X2")], "name 'Acme X1' is used by both X1 and X2"),
        ([_row(pci_device_ids=[1]), _row(key="X2", names=["Acme X2"], pci_device_ids=[1])], "PCI device id 0x0001"),
        ([_row(colour="red")], "colour"),
    ],
)
def test_catalog_errors_name_the_row(rows: list[dict[str, Any]], expected: str) -> None:
    with pytest.raises(CatalogError) as info:
        parse_catalog({"gpus": rows}, "mine.yaml")
    assert str(info.value).startswith("mine.yaml")
    assert expected in str(info.value)


def test_empty_or_shapeless_catalog() -> None:
    with pytest.raises(CatalogError, match="holds no GPU"):
        parse_catalog({"gpus": []}, "mine.yaml")
    with pytest.raises(CatalogError, match="expected a mapping with a 'gpus' list"):
        parse_catalog(["x"], "mine.yaml")


def test_catalog_is_parsed_once() -> None:
    assert load_catalog() is load_catalog()
    assert len(load_catalog()) >= len(REFERENCE)
