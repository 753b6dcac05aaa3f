"""`gpuquota policy list|validate|show` and `gpuquota gpus`."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner, Result

from gpuquota.catalog import load_catalog
from gpuquota.cli import app
from gpuquota.policy import load_policy, parse_policy


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_policy_list() -> None:
    result = run("policy", "list")
    assert result.exit_code == 0
    assert "ai-diffusion-2025\t2025.6\teffective 2025-01-13" in result.stdout
    assert "unrestricted" in result.stdout


def test_validate_a_good_profile(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(load_policy("ai-diffusion-2025").spec.model_dump(mode="json", by_alias=True)))
    result = run("policy", "validate", str(path))
    assert result.exit_code == 0, result.stderr
    assert "valid — ai-diffusion-2025 2025.6" in result.stdout
    assert "4 rules" in result.stdout


def test_validate_a_bad_profile_exits_2_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\nversion: '1'\neffective: 2026-01-01\ndefaultTier: rest\n"
        "tiers: [{name: rest, jurisdictions: [ZZ]}]\n"
        "rules: [{id: cap, scope: planet, cap: {kind: concurrent-tpp, amount: -1}}]\n"
    )
    result = run("policy", "validate", str(path))
    assert result.exit_code == 2
    assert result.stdout == ""
    err = result.stderr
    assert err.startswith(f"gpuquota: {path}: ")
    assert "tiers[0] (rest).jurisdictions[0]: 'ZZ' is not an ISO 3166-1 alpha-2 country code" in err
    assert "rules[0] (cap).scope" in err
    assert "rules[0] (cap).cap.amount" in err


def test_show_table_lists_tiers_and_rules() -> None:
    result = run("policy", "show", "ai-diffusion-2025")
    assert result.exit_code == 0
    for text in (
        "tier2-tenant-lpp",
        "26.9M TPP concurrent",
        "790M TPP concurrent",
        "1e26 operations per workload",
        "tier-3",
        "CN",
        "(and every other country)",
        "unknown jurisdiction: deny",
    ):
        assert text in result.stdout, text


def test_show_yaml_round_trips() -> None:
    result = run("policy", "show", "ai-diffusion-2025", "--output", "yaml")
    assert result.exit_code == 0
    again = parse_policy(yaml.safe_load(result.stdout), "shown.yaml")
    original = load_policy("ai-diffusion-2025")
    assert again.rules == original.rules
    assert again.tiers == original.tiers
    assert again.spec == original.spec


def test_show_unknown_profile_exits_2() -> None:
    result = run("policy", "show", "no-such-profile")
    assert result.exit_code == 2
    assert "not a bundled profile" in result.stderr


def test_gpus_table() -> None:
    result = run("gpus")
    assert result.exit_code == 0
    assert "H100-SXM5-80GB" in result.stdout
    assert "15,832" in result.stdout
    assert "3A090.a" in result.stdout
    assert "n/p" in result.stdout  # B200 has no published die area


def test_gpus_json() -> None:
    result = run("gpus", "--output", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert len(data) == len(load_catalog())
    h100 = next(g for g in data if g["key"] == "H100-SXM5-80GB")
    assert h100["tpp"] == 15832
    assert h100["performance_density"] == 19.45
    assert h100["class"] == "3A090.a"
    assert h100["h100e"] == 1.0
    assert h100["confidence"] == "P"
    assert h100["pci_device_ids"] == ["0x2330"]
    assert "3g.40gb" in h100["mig_profiles"]
    assert h100["origin"] == "bundled"


def test_gpus_one_part_shows_every_figure_and_its_source() -> None:
    result = run("gpus", "NVIDIA-GB300", "-o", "json")
    assert result.exit_code == 0, result.stderr
    part = json.loads(result.stdout)
    assert (part["key"], part["tpp"], part["tpp_precision"]) == ("GB300", 60_000, "fp4")
    figures = {f["precision"]: f for f in part["figures"]}
    assert figures["fp4"]["sets_tpp"]
    assert not figures["fp16"]["sets_tpp"]
    assert figures["fp16"]["tpp"] == 40_000
    assert all(f["source_title"] and f["confidence"] in "PSCU" for f in part["figures"])
    assert part["figures"][0]["precision"] == "fp4"  # highest TPP first
    table = run("gpus", "NVIDIA H100 80GB HBM3")
    assert table.exit_code == 0
    shown = ("H100-SXM5-80GB", "set by fp16", "nvidia-h100-datasheet", "MIG: 1g.10gb 16/132 SMs")
    assert [text for text in shown if text not in table.stdout] == []


def test_gpus_unknown_part_is_a_clear_error() -> None:
    result = run("gpus", "Voodoo-5-6000")
    assert result.exit_code == 2
    assert "not in the GPU catalog" in result.stderr


def test_gpus_marks_the_rows_of_a_local_catalog(tmp_path: Path) -> None:
    row = {"key": "Acme-X1", "vendor": "nvidia", "names": ["NVIDIA Acme X1"], "source": "mine",
           "dense": {"fp8": {"tflops": 9000, "source": "acme", "confidence": "P"}}}
    local = tmp_path / "local.yaml"
    local.write_text(yaml.safe_dump({"schema": 2, "sources": [{"id": "acme", "title": "Acme X1"}], "gpus": [row]}))
    table = run("gpus", "--catalog", str(local))
    assert table.exit_code == 0, table.stderr
    assert "Acme-X1 (local)" in table.stdout
    one = run("gpus", "Acme-X1", "--catalog", str(local), "-o", "json")
    assert json.loads(one.stdout)["origin"] == str(local)
    local.write_text("schema: 2\ngpus: [{key: Acme-X1}]\n")
    broken = run("gpus", "--catalog", str(local))
    assert broken.exit_code == 2
    assert "gpus[0] (Acme-X1)" in broken.stderr
