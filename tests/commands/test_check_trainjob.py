"""`gpuquota check` and TrainJobs: the runtime is read from the manifests given with it; without it a TrainJob that
states its nodes and GPUs is counted from those with a warning, and one that does not is refused (exit 1), saying
to pass the runtime's manifest too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner, Result

from gpuquota.cli import app
from tests.workloads.test_trainjob_runtime import runtime, trainjob

NOW = ["--now", "2026-11-26T12:00:00Z"]


def run(*args: str) -> Result:
    return CliRunner().invoke(app, ["check", *NOW, "-j", "JP", *args])


def write(path: Path, *objects: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump_all(objects))
    return str(path)


def test_the_runtime_among_the_manifests_decides(tmp_path: Path) -> None:
    job = write(tmp_path / "trainjob.yaml", trainjob(per_node=8))
    rt = write(tmp_path / "runtime.yaml", runtime(num_nodes=16))
    result = run("-o", "json", job, rt)
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["kind"], r["decision"], r["gpus"]) for r in rows] == [
        ("TrainJob", "allowed", 128.0), ("ClusterTrainingRuntime", "no-gpu", 0.0)]
    assert rows[1]["message"] == "counted with the workloads that name it"


def test_without_the_runtime_a_stated_trainjob_is_counted_with_a_warning(tmp_path: Path) -> None:
    result = run(write(tmp_path / "trainjob.yaml", trainjob(num_nodes=2, per_node=8)))
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert ("warning TrainJob sft: ClusterTrainingRuntime torch-distributed is not among the manifests given: counted "
            "as spec.trainer.numNodes × resourcesPerNode only") in text


def test_without_the_runtime_an_unstated_trainjob_is_refused(tmp_path: Path) -> None:
    result = run("-o", "json", write(tmp_path / "trainjob.yaml", trainjob(per_node=8)))
    assert result.exit_code == 1, result.stderr
    (row,) = json.loads(result.stdout)
    assert (row["decision"], row["allowed"]) == ("denied", False)
    assert row["message"].startswith(
        "cannot be counted offline: ClusterTrainingRuntime torch-distributed (named by spec.runtimeRef) is not among "
        "the manifests given; its spec.mlPolicy.numNodes and pod templates decide what this TrainJob runs: pass its "
        "manifest too")
