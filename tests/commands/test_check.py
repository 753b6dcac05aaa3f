"""`gpuquota check`: exit codes 0/1/2, the JSON shape, stdin, usage files, tenants and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from gpuquota.catalog import load_catalog
from gpuquota.cli import app

HERE = Path(__file__).parent / "manifests"
BIG = str(HERE / "pytorchjob-2048-h100.yaml")
SMALL = str(HERE / "job-64-h100.yaml")
SWEEP = str(HERE / "job-1000-h100.json")
NEGATIVE = str(HERE / "job-negative.yaml")
NEAR_CAP = str(HERE / "usage-globex-near-cap.yaml")
TENANTS = str(Path(__file__).resolve().parents[2] / "examples" / "tenants.yaml")
NOW = ["--now", "2026-11-26T12:00:00Z"]


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, ["check", *NOW, *args], input=stdin)


def rows(result: Result) -> list[dict[str, Any]]:
    data = json.loads(result.stdout)
    assert isinstance(data, list)
    return data


def test_all_allowed_exits_0_with_the_json_shape() -> None:
    result = run("-j", "JP", "-o", "json", SMALL, BIG)
    assert result.exit_code == 0, result.stderr
    data = rows(result)
    assert [(r["kind"], r["name"], r["decision"]) for r in data] == [
        ("Job", "finetune-llama", "allowed"),
        ("Pod", "tokenizer", "no-gpu"),
        ("Deployment", "notebook", "skipped"),
        ("PyTorchJob", "llm-pretrain", "allowed"),
    ]
    job = data[0]
    for key in (
        "kind",
        "name",
        "allowed",
        "gpus",
        "tpp",
        "message",
        "h100e",
        "model",
        "operations",
        "warnings",
        "rules",
    ):
        assert key in job
    assert job["allowed"] is True
    assert job["gpus"] == 64
    assert job["tpp"] == 64 * 15832
    assert job["h100e"] == 64
    assert job["model"] == "H100-SXM5-80GB"
    assert job["operations"] == pytest.approx(64 * 15832 / 16 * 1e12 * 43200)
    assert job["tier"] == "tier-1"
    assert "its pod templates ask for 1 GPU(s); the webhook checks its pods one by one" in data[2]["message"]
    assert (data[2]["allowed"], data[2]["gpus"]) == (True, 1.0)  # reported, not judged


def test_a_denial_exits_1_and_says_what_fits() -> None:
    result = run("-j", "BR", "-o", "json", SMALL, BIG)
    assert result.exit_code == 1
    data = rows(result)
    big = data[-1]
    assert big["allowed"] is False
    assert big["decision"] == "denied"
    assert big["gpus"] == 2048
    assert "32.4M TPP" in big["message"]
    assert "26.9M TPP tenant cap" in big["message"]
    assert "up to 1,635" in big["message"]  # 1,699 less the 64 the admitted Job before it holds
    lpp = next(r for r in big["rules"] if r["id"] == "tier2-tenant-lpp")
    assert lpp["exceeded"] is True
    assert lpp["cap"] == 26_900_000
    assert lpp["used"] == 64 * 15832
    assert lpp["fits_gpus"] == 1635
    assert lpp["scope"] == "tenant"
    assert data[0]["allowed"] is True


def test_table_output() -> None:
    result = run("-j", "BR", BIG)
    assert result.exit_code == 1
    assert "PyTorchJob globex-ml/llm-pretrain" in result.stdout
    assert "denied" in result.stdout
    assert "tier2-tenant-lpp" in result.stdout
    assert "up to 1,699 × H100-SXM5-80GB fit" in result.stdout


def test_stdin_and_json_input() -> None:
    text = Path(SWEEP).read_text()
    result = run("-j", "US", "-o", "json", "-", stdin=text)
    assert result.exit_code == 0, result.stderr
    (row,) = rows(result)
    assert (row["kind"], row["name"], row["gpus"]) == ("Job", "sweep", 1000)


def test_kind_list_is_unpacked() -> None:
    items = [json.loads(Path(SWEEP).read_text()), json.loads(Path(SWEEP).read_text())]
    items[1]["metadata"]["name"] = "sweep-2"
    listing = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    result = run("-j", "US", "-o", "json", "-", stdin=listing)
    assert result.exit_code == 0, result.stderr
    assert [r["name"] for r in rows(result)] == ["sweep", "sweep-2"]


def test_admitted_workloads_accumulate() -> None:
    # 1,000 H100 fit under the 26.9M TPP tenant cap; a second 1,000 does not
    result = run("-j", "BR", "-o", "json", SWEEP, SWEEP)
    assert result.exit_code == 1
    first, second = rows(result)
    assert first["allowed"] is True
    assert second["allowed"] is False
    assert "up to 699" in second["message"]


def test_tenants_file_resolves_each_manifest_namespace() -> None:
    result = run("--tenants", TENANTS, "-o", "json", BIG)
    assert result.exit_code == 1
    (row,) = rows(result)
    assert (row["tenant"], row["jurisdiction"], row["tier"]) == ("globex", "BR", "tier-2")
    veu = run("--tenants", TENANTS, "--namespace", "initech", "-o", "json", BIG)
    assert veu.exit_code == 0, veu.stdout  # initech's VEU lifts the Tier 2 caps
    (lifted,) = rows(veu)
    assert lifted["tenant"] == "initech"
    assert all(r["cap"] is None for r in lifted["rules"] if r["id"].startswith("tier2"))


def test_namespace_no_tenant_owns_is_an_unknown_jurisdiction() -> None:
    result = run("--tenants", TENANTS, "--namespace", "stray", "-o", "json", SMALL)
    assert result.exit_code == 1
    assert "gpuquota.io/jurisdiction" in rows(result)[0]["message"]


def test_usage_file_counts() -> None:
    assert run("-j", "BR", SMALL).exit_code == 0
    result = run("-j", "BR", "--usage", NEAR_CAP, "--tenants", TENANTS)
    assert result.exit_code == 2  # --jurisdiction and --tenants together
    near = run("--tenants", TENANTS, "--usage", NEAR_CAP, "-o", "json", SMALL)
    assert near.exit_code == 1
    assert "up to 25 × H100-SXM5-80GB fit" in rows(near)[0]["message"]


def test_other_profiles_and_inventory() -> None:
    assert run("-j", "CN", "--policy", "unrestricted", BIG).exit_code == 0
    assert run("-j", "CN", BIG).exit_code == 1
    result = run("-j", "US", "--inventory", "A100-SXM4-80GB,L40S", "-o", "json", "-", stdin=_no_selector_pod())
    assert result.exit_code == 0, result.stderr
    assert rows(result)[0]["model"] == "L40S"  # the most powerful model the cluster holds


def _no_selector_pod() -> str:
    return """
apiVersion: v1
kind: Pod
metadata: {name: any-gpu, namespace: team}
spec:
  containers:
    - name: c
      image: busybox
      resources: {limits: {nvidia.com/gpu: 1}}
"""


def test_unknown_gpu_product_is_counted_at_the_profiles_unknown_part_figure_with_a_warning() -> None:
    pod = _no_selector_pod().replace(
        "spec:\n", "spec:\n  nodeSelector: {nvidia.com/gpu.product: NVIDIA-Mystery-9000}\n"
    )
    result = run("-j", "US", "-o", "json", "-", stdin=pod)
    assert result.exit_code == 0, result.stderr
    (row,) = rows(result)
    assert row["decision"] == "warned"
    assert row["model"] == "unknown"  # not the strongest catalog part: no bound on a newer one
    assert row["tpp"] == 120_000  # ai-diffusion-2025's unknownModelTpp
    assert any("Mystery-9000" in w for w in row["warnings"])
    table = run("-j", "US", "-", stdin=pod)
    assert "warning Pod any-gpu:" in table.stdout
    assert "Mystery-9000" in table.stdout


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        (["-j", "XX", SMALL], None, "'XX' is not an ISO 3166-1 alpha-2 country code"),
        (["-j", "BR", NEGATIVE], None, "Job globex-ml/broken: spec.parallelism"),
        (["-j", "BR", "-"], "kind: Job\nmetadata: {name: x\n", "<stdin>: not valid YAML or JSON"),
        (["-j", "BR", "-"], "- 1\n- 2\n", "expected a Kubernetes object"),
        (["-j", "BR", "missing.yaml"], None, "missing.yaml: cannot read"),
        (["-j", "BR", "--policy", "no-such-profile", SMALL], None, "not a bundled profile"),
        (["--tenants", "missing-tenants.yaml", SMALL], None, "cannot read the tenants file"),
        ([SMALL], None, "who is asking?"),
        (["-j", "BR", "--usage", SWEEP, SMALL], None, "expected a mapping with a 'usage' list"),
        (["-j", "BR", "--now", "tomorrow", SMALL], None, "--now: 'tomorrow' is not an ISO 8601"),
        (["-j", "BR", "--inventory", "Voodoo-5", SMALL], None, "--inventory: 'Voodoo-5' is not in the GPU catalog"),
    ],
)
def test_bad_input_exits_2_with_a_message(args: list[str], stdin: str | None, expected: str) -> None:
    result = run(*args, stdin=stdin)
    assert result.exit_code == 2
    assert expected in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_the_installed_command_never_prints_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata: [oops\n")
    proc = subprocess.run(
        [sys.executable, "-c", "from gpuquota.cli import main; main()", "check", "-j", "BR", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("gpuquota: ")
    assert "Traceback" not in proc.stderr


LOCAL_CATALOG = """\
schema: 2
sources: [{id: acme-x1-datasheet, title: "Acme X1 accelerator datasheet, rev. 3"}]
gpus:
  - key: Acme-X1
    vendor: nvidia
    names: ["NVIDIA Acme X1"]
    labels: ["NVIDIA-Acme-X1"]
    dense: {fp8: {tflops: 9000, source: acme-x1-datasheet, confidence: P}}
    source: "the operator's row"
"""


def test_a_local_catalog_row_counts_and_says_it_is_local(tmp_path: Path) -> None:
    catalog = tmp_path / "local.yaml"
    catalog.write_text(LOCAL_CATALOG)
    pod = _no_selector_pod().replace("spec:\n", "spec:\n  nodeSelector: {nvidia.com/gpu.product: NVIDIA-Acme-X1}\n")
    result = run("-j", "US", "-o", "json", "--catalog", str(catalog), "-", stdin=pod)
    assert result.exit_code == 0, result.stderr
    (row,) = rows(result)
    assert (row["model"], row["tpp"]) == ("Acme-X1", 72_000)
    assert any("local catalog row (local.yaml)" in w for w in row["warnings"])
    without = run("-j", "US", "-o", "json", "-", stdin=pod)  # the bundled catalog alone: an unknown part
    (row,) = rows(without)
    assert row["model"] == "unknown"


def test_a_broken_local_catalog_is_exit_2_with_the_file_and_row(tmp_path: Path) -> None:
    catalog = tmp_path / "local.yaml"
    catalog.write_text(LOCAL_CATALOG.replace("tflops: 9000", "tflops: 0"))
    result = run("-j", "US", "--catalog", str(catalog), "-", stdin=_no_selector_pod())
    assert result.exit_code == 2
    assert f"{catalog}: gpus[0] (Acme-X1): dense.fp8.tflops" in result.stderr


@pytest.mark.parametrize(
    ("product", "model", "tpp"),
    [
        ("NVIDIA-GB300", "GB300", 60_000),  # FP4 x 4, not FP16 x 16 (40,000)
        ("NVIDIA-B300-SXM6-AC", "B300", 56_000),
        ("NVIDIA-H800", "H800-SXM", 15_832),  # no longer the PCIe row's 12,104
        ("NVIDIA-H800-PCIe", "H800-PCIe", 12_104),
    ],
)
def test_decisions_for_the_newest_parts(product: str, model: str, tpp: float) -> None:
    pod = _no_selector_pod().replace("spec:\n", f"spec:\n  nodeSelector: {{nvidia.com/gpu.product: {product}}}\n")
    result = run("-j", "US", "-o", "json", "-", stdin=pod.replace("nvidia.com/gpu: 1", "nvidia.com/gpu: 8"))
    assert result.exit_code == 0, result.stderr
    (row,) = rows(result)
    assert (row["model"], row["model_source"]) == (model, "selector")
    assert row["tpp"] == pytest.approx(8 * tpp)


REQUESTS = Path(__file__).resolve().parents[1] / "workloads" / "requests"


def test_dra_claims_are_read_from_the_same_manifests() -> None:
    """A ResourceClaimTemplate and the pods using it in one stream: the pods carry the template's GPUs; the claim
    objects are reported, not skipped as unknown kinds; without the template the pod counts as a full node."""
    result = run("-j", "JP", "-o", "json", str(REQUESTS / "dra-kueue-job.yaml"))
    assert result.exit_code == 0, result.stderr
    data = rows(result)
    assert [(r["kind"], r["decision"], r["gpus"]) for r in data] == [
        ("ResourceClaimTemplate", "no-gpu", 0.0),
        ("Job", "allowed", 6.0),
    ]
    assert "counted with the pods" in data[0]["message"]
    pod_only = (REQUESTS / "dra-gpu-test1.yaml").read_text().split("---", 1)[1]
    alone = rows(run("-j", "JP", "-o", "json", "-", stdin=pod_only))
    strongest = load_catalog().strongest.key
    assert [(r["name"], r["gpus"], r["model"]) for r in alone] == [("pod1", 8.0, strongest), ("pod2", 8.0, strongest)]
    assert any("could not be read" in w for w in alone[0]["warnings"])


def test_gpu_resource_flags_reach_check() -> None:
    text = (REQUESTS / "other-vendors.yaml").read_text()
    plain = {r["name"]: r for r in rows(run("-j", "JP", "-o", "json", "-", stdin=text))}
    assert plain["renamed"]["gpus"] == 0
    assert plain["amd-cpx"]["gpus"] == 0.5
    configured = run("-j", "JP", "-o", "json", "--gpu-resource", "nvidia.com/a100=nvidia,model=A100-SXM4-80GB", "-",
                     stdin=text)
    renamed = {r["name"]: r for r in rows(configured)}["renamed"]
    assert (renamed["gpus"], renamed["model"]) == (1.0, "A100-SXM4-80GB")
    bad = run("-j", "JP", "--gpu-resource", "nvidia.com/a100=ibm", "-", stdin=text)
    assert bad.exit_code == 2
    assert "--gpu-resource" in bad.stderr


SKIPPED_KINDS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: vllm, namespace: team-a}
spec:
  replicas: 3
  selector: {matchLabels: {app: vllm}}
  template:
    metadata: {labels: {app: vllm}}
    spec:
      containers:
        - name: vllm
          image: vllm/vllm-openai:v0.8.0
          resources: {limits: {nvidia.com/gpu: 2}}
---
apiVersion: example.com/v1
kind: TrainingThing
metadata: {name: custom, namespace: team-a}
spec:
  workers:
    - name: big
      replicas: 4
      template:
        spec:
          nodeSelector: {cloud.google.com/gke-accelerator: nvidia-l4}
          containers: [{name: w, image: img, resources: {limits: {nvidia.com/gpu: 1}}}]
"""


def test_skipped_kinds_report_the_gpus_of_their_pod_templates() -> None:
    result = run("-j", "JP", "-o", "json", "-", stdin=SKIPPED_KINDS)
    assert result.exit_code == 0, result.stderr
    found = {r["name"]: r for r in rows(result)}
    assert [(r["decision"], r["allowed"], r["gpus"]) for r in found.values()] == [
        ("skipped", True, 6.0), ("skipped", True, 4.0)]
    assert "its pod templates ask for 6 GPU(s)" in found["vllm"]["message"]
    assert found["custom"]["model"] == "L4"
