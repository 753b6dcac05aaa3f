"""The GPU catalog against the export-control reference table, lookups by every spelling, MIG proration,
3A090 classification at its thresholds and the NVML-derived estimate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuquota.catalog import (
    CatalogError,
    GpuSpec,
    classify,
    estimate_tpp,
    h100_equivalents,
    load_catalog,
    load_local_catalog,
    normalise_name,
    parse_catalog,
    performance_density,
)
from gpuquota.domain import GpuClass

A, B, U = GpuClass.A090_A, GpuClass.A090_B, GpuClass.UNCONTROLLED

# (catalog key, TPP, PD or None when no die area is published, class) — rows of
# ../shared/reference/export-controls.md, "Accelerator figures". The catalog derives TPP from its own per-precision
# figures; it may land a rounding step above the reference (H100 NVL: 835.5 x 16 = 13,368 against 13,364), never
# below it.
REFERENCE = [
    ("H100-SXM5-80GB", 15832, 19.45, A),
    ("H100-PCIe", 12104, 14.87, A),
    ("H100-NVL", 13364, 16.4, A),
    ("H200-NVL", 13364, 16.4, A),
    ("H200-SXM", 15832, 19.45, A),
    ("H800-SXM", 15832, 19.45, A),
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
    ("GB300", 60000, None, A),
    ("MI300X", 20919, None, A),
    ("MI325X", 20919, None, A),
    ("Gaudi3", 29360, None, A),
]

BITS = {"fp4": 4, "int4": 4, "fp6": 6, "fp8": 8, "int8": 8, "fp16": 16, "bf16": 16, "tf32": 32, "fp32": 32, "fp64": 64}


@pytest.mark.parametrize(("key", "tpp", "pd", "gpu_class"), REFERENCE)
def test_reference_rows(key: str, tpp: float, pd: float | None, gpu_class: GpuClass) -> None:
    spec = load_catalog().get(key)
    assert spec is not None, key
    assert tpp * 0.9999 <= spec.tpp <= tpp * 1.002  # a datasheet rounding step above, never below
    if pd is not None:
        assert spec.performance_density == pytest.approx(pd, abs=0.05)
    assert spec.gpu_class is gpu_class
    assert spec.source
    assert spec.confidence in "PSCU"


@pytest.mark.parametrize("spec", list(load_catalog()), ids=lambda s: s.key)
def test_every_row_recomputes_from_its_figures(spec: GpuSpec) -> None:
    """TPP is the maximum over the row's dense figures of TOPS x bit length, PD is TPP over the die area, and
    the class follows from both: recomputed here without the catalog's own code."""
    catalog = load_catalog()
    by_precision = {p: f.tflops * BITS[p] for p, f in spec.dense.items()}
    assert spec.tpp == pytest.approx(max(by_precision.values()))
    assert by_precision[spec.tpp_precision] == pytest.approx(spec.tpp)
    assert spec.confidence == spec.dense[spec.tpp_precision].confidence
    if spec.die_area_mm2 is None:
        assert spec.performance_density is None
    else:
        assert spec.performance_density == pytest.approx(spec.tpp / spec.die_area_mm2)
    assert spec.gpu_class is classify(spec.tpp, spec.performance_density)
    for precision, figure in spec.dense.items():
        assert figure.source in catalog.sources, (precision, figure.source)
        assert figure.confidence in ("P", "S", "C", "U")
        assert figure.tflops > 0
    for profile, sms in spec.mig.items():
        assert spec.sm_count is not None, profile
        assert 0 < sms <= spec.sm_count, profile
    assert not spec.local
    assert spec.origin == "bundled"


def test_every_source_is_cited() -> None:
    catalog = load_catalog()
    cited = {f.source for spec in catalog for f in spec.dense.values()}
    mig_only = {"nvidia-mig-user-guide", "nvidia-mig-parted", "secondary-press"}  # cited in row notes
    assert set(catalog.sources) - cited <= mig_only


def test_blackwell_ultra_is_counted_by_fp4_not_fp16() -> None:
    """The issue's case: 15 PF dense FP4 x 4 = 60,000 against 2.5 PF FP16 x 16 = 40,000."""
    catalog = load_catalog()
    gb300, b300, gb200 = catalog.get("NVIDIA-GB300"), catalog.get("NVIDIA B300 SXM6 AC"), catalog.get("GB200")
    assert gb300 is not None
    assert b300 is not None
    assert gb200 is not None
    assert gb300.tpp_precision == "fp4"
    assert gb300.tpp == pytest.approx(60_000)
    assert gb300.tpp_of("fp16") == pytest.approx(40_000)
    assert b300.tpp_precision == "fp4"
    assert 52_000 <= b300.tpp <= 56_000  # sources disagree: the highest published dense FP4 is taken
    assert b300.dense["fp4"].confidence == "U"
    assert gb300.tpp > gb200.tpp * 1.4


def test_fp6_sets_the_tpp_when_it_runs_at_the_fp4_rate() -> None:
    mi355x = load_catalog().get("AMD Instinct MI355X")
    assert mi355x is not None
    assert mi355x.tpp_precision == "fp6"
    assert mi355x.tpp == pytest.approx(10066.3 * 6)
    assert mi355x.tpp > mi355x.tpp_of("fp16") * 1.4


def test_h800_sxm_is_not_folded_onto_the_pcie_row() -> None:
    catalog = load_catalog()
    sxm = catalog.get("NVIDIA H800")
    assert sxm is not None
    assert (sxm.key, sxm.tpp) == ("H800-SXM", 15832)
    assert catalog.get("NVIDIA-H800-PCIe") is catalog.get("H800-PCIe")
    assert catalog.by_pci_device_id(0x232410DE) is sxm
    pcie = catalog.by_pci_device_id(0x2322)
    assert pcie is not None
    assert pcie.tpp == 12104


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("NVIDIA GH200 480GB", "GH200"),
        ("NVIDIA-GH200-480GB", "GH200"),
        ("NVIDIA-GH200-144G-HBM3e", "GH200-144GB"),
        ("NVIDIA-GB300", "GB300"),
        ("NVIDIA-B300-SXM6-AC", "B300"),
        ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "RTX-PRO-6000-Blackwell"),
        ("NVIDIA-RTX-PRO-6000-Blackwell-Max-Q-Workstation-Edition", "RTX-PRO-6000-Blackwell"),
        ("NVIDIA-GeForce-RTX-5090", "RTX-5090"),
        ("AMD_Instinct_MI300X_OAM", "MI300X"),
        ("AMD Instinct MI325X", "MI325X"),
        ("AMD-Instinct-MI355X", "MI355X"),
        ("HL-325L", "Gaudi3"),
        ("NVIDIA-B200-MIG-1g.23gb", "B200"),
    ],
)
def test_newest_parts_by_nvml_and_gfd_spellings(name: str, key: str) -> None:
    spec = load_catalog().get(name)
    assert spec is not None, name
    assert spec.key == key


@pytest.mark.parametrize(
    ("key", "profile", "share"),
    [
        ("H100-NVL", "1g.12gb", 16 / 132),
        ("H100-NVL", "7g.94gb", 1.0),
        ("H200-SXM", "3g.71gb", 60 / 132),
        ("H200-NVL", "1g.18gb", 16 / 132),
        ("GH200", "1g.12gb", 16 / 132),
        ("GH200-144GB", "4g.72gb", 64 / 132),
        ("B200", "1g.23gb", 22 / 148),
        ("B200", "7g.180gb", 1.0),
        ("GB200", "1g.24gb", 22 / 148),
        ("GB200", "3g.93gb", 68 / 148),
        ("B300", "1g.34gb", 23 / 160),
        ("RTX-PRO-6000-Blackwell", "1g.24gb", 0.25),
    ],
)
def test_mig_tables_of_the_newer_parts(key: str, profile: str, share: float) -> None:
    spec = load_catalog().get(key)
    assert spec is not None
    fraction = spec.mig_fraction(profile)
    assert fraction is not None
    assert fraction == pytest.approx(share)
    assert fraction >= min(1.0, int(profile.split("g.", maxsplit=1)[0]) / 7) * 0.84  # never far under k/7 of the part


def test_pci_ids_are_per_vendor() -> None:
    catalog = load_catalog()
    mi300x = catalog.by_pci_device_id(0x74A1, vendor_id=0x1002)
    assert mi300x is not None
    assert mi300x.key == "MI300X"
    assert catalog.by_pci_device_id((0x74A1 << 16) | 0x1002) is mi300x
    assert catalog.by_pci_device_id(0x74A1) is None  # the same device id under NVIDIA's vendor id is not it


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
    assert catalog.strongest.key == "MI355X"  # FP6 x 6 bits, just above GB300
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
        "vendor": "nvidia",
        "names": ["Acme X1"],
        "dense": {"fp16": {"tflops": 100, "source": "acme", "confidence": "U"}},
        "source": "test",
    }
    row.update(changes)
    return row


def _doc(*rows: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"schema": 2, "sources": [{"id": "acme", "title": "Acme X1 datasheet"}], "gpus": list(rows), **top}


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (_doc(_row(tpp=2000)), "tpp: Extra inputs are not permitted"),  # TPP is derived, never written
        (_doc(_row(dense={"fp12": {"tflops": 1, "source": "acme", "confidence": "U"}})), "unknown precision"),
        (_doc(_row(dense={"fp16": {"tflops": -1, "source": "acme", "confidence": "U"}})), "greater than 0"),
        (_doc(_row(dense={})), "needs at least one dense figure"),
        (_doc(_row(dense={"fp16": {"tflops": 1, "source": "acme", "confidence": "maybe"}})), "confidence"),
        (_doc(_row(dense={"fp16": {"tflops": 1, "source": "nowhere", "confidence": "P"}})), "source 'nowhere'"),
        (_doc(_row(dense={"fp16": {"tflops": 1, "source": "acme"}})), "dense.fp16.confidence: Field required"),
        (_doc(_row(vendor="acme")), "Input should be 'nvidia', 'amd' or 'intel'"),
        (_doc(_row(sm_count=10, mig={"1g.5gb": 11})), "more SMs than the part's sm_count 10"),
        (_doc(_row(), _row(key="X2")), "name 'Acme X1' is used by both X1 and X2"),
        (_doc(_row(), _row(names=["Acme X1b"])), "key 'X1' is used by two rows"),
        (
            _doc(_row(pci_device_ids=[1]), _row(key="X2", names=["Acme X2"], pci_device_ids=[1])),
            "PCI device id 0x0001",
        ),
        (_doc(_row(colour="red")), "colour"),
        (_doc(_row(), schema=1), "schema: 1 is not supported"),
        (_doc(_row(), extra=1), "unknown top-level key(s) ['extra']"),
        ({"schema": 2, "sources": [{"id": "Bad Id", "title": "x"}], "gpus": [_row()]}, "sources[0]: id"),
        ({"schema": 2, "sources": [{"id": "acme", "title": "x"}] * 2, "gpus": [_row()]}, "already defined"),
    ],
)
def test_catalog_errors_name_the_file_row_and_field(doc: dict[str, Any], expected: str) -> None:
    with pytest.raises(CatalogError) as info:
        parse_catalog(doc, "mine.yaml")
    assert str(info.value).startswith("mine.yaml")
    assert expected in str(info.value)


def test_empty_or_shapeless_catalog() -> None:
    with pytest.raises(CatalogError, match="holds no GPU"):
        parse_catalog(_doc(), "mine.yaml")
    with pytest.raises(CatalogError, match="expected a mapping with a 'gpus' list"):
        parse_catalog(["x"], "mine.yaml")


def test_catalog_is_parsed_once() -> None:
    assert load_catalog() is load_catalog()
    assert len(load_catalog()) >= len(REFERENCE)


figures = st.dictionaries(
    st.sampled_from(sorted(BITS)),
    st.floats(min_value=0.001, max_value=1e6, allow_nan=False, allow_infinity=False),
    min_size=1,
)


@given(figures)
def test_tpp_is_the_maximum_over_precisions(values: dict[str, float]) -> None:
    dense = {p: {"tflops": v, "source": "acme", "confidence": "S"} for p, v in values.items()}
    spec = next(iter(parse_catalog(_doc(_row(dense=dense)), "prop.yaml")))
    assert spec.tpp == pytest.approx(max(v * BITS[p] for p, v in values.items()))
    assert all(spec.tpp >= v * BITS[p] * (1 - 1e-9) for p, v in values.items())
    assert spec.tpp_precision in values


LOCAL = """\
schema: 2
sources:
  - {id: acme-x1-datasheet, title: "Acme X1 accelerator datasheet, rev. 3"}
gpus:
  - key: Acme-X1
    vendor: nvidia
    names: ["NVIDIA Acme X1"]
    labels: ["NVIDIA-Acme-X1"]
    dense:
      fp8: {tflops: 9000, source: acme-x1-datasheet, confidence: P}
    source: "the operator's row"
  - key: H20
    vendor: nvidia
    names: ["NVIDIA H20"]
    labels: ["NVIDIA-H20"]
    dense:
      fp16: {tflops: 150, source: gpuquota-reference, confidence: S, note: "an operator's re-rating"}
    source: "the operator's correction of a bundled row"
"""


def test_a_local_catalog_file_adds_and_replaces_rows_marked_local(tmp_path: Path) -> None:
    path = tmp_path / "local.yaml"
    path.write_text(LOCAL)
    merged = load_local_catalog(path)
    bundled = load_catalog()
    x1, h20 = merged.get("NVIDIA-Acme-X1"), merged.get("NVIDIA H20")
    assert x1 is not None
    assert h20 is not None
    assert (x1.tpp, x1.local, x1.origin) == (72_000, True, str(path))
    assert (h20.tpp, h20.local) == (2400, True)  # replaced by key; it may cite a bundled source
    assert len(merged) == len(bundled) + 1
    assert merged.strongest is x1
    assert "acme-x1-datasheet" in merged.sources
    assert bundled.get("NVIDIA-Acme-X1") is None  # the bundled catalog itself is untouched
    h100 = merged.get("H100-SXM5-80GB")
    assert h100 is not None
    assert not h100.local


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (LOCAL.replace("tflops: 9000", "tflops: -1"), "gpus[0] (Acme-X1): dense.fp8.tflops"),
        (LOCAL.replace('names: ["NVIDIA Acme X1"]', 'names: ["NVIDIA H100 80GB HBM3"]'),
         "name 'NVIDIA H100 80GB HBM3' is used by both H100-SXM5-80GB and Acme-X1"),
        (LOCAL.replace("id: acme-x1-datasheet", "id: nvidia-h100-datasheet"), "id 'nvidia-h100-datasheet' is already"),
        (LOCAL.replace("schema: 2", "schema: 1"), "schema: 1 is not supported"),
        ("gpus: [", "while parsing"),
    ],
)
def test_a_broken_local_catalog_is_refused_with_file_row_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "local.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError) as info:
        load_local_catalog(path)
    assert str(info.value).startswith(str(path))
    assert expected in str(info.value)
