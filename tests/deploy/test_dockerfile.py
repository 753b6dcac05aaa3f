"""The Dockerfile: hadolint passes; the final stage is a pinned slim Python 3.11, runs as the chart's numeric
non-root user, writes only under the state volume, carries no build tools, and starts `gpuquota serve` by default;
the builder's wheel holds the package data the image needs; and every command and flag the chart passes to the
image exists in the CLI. (No Docker engine runs here, so the image itself is not built in CI: see docs/deploy.md.)"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests.deploy.chart import CASE_NAMES, pod_specs, render
from tests.deploy.tools import CHART, REPO, run, tool

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def _parse() -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            stages.append(Stage(parts[0], parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else None))
        elif keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append((keyword, rest.strip()))
    return args, stages


def _expand(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), value)


def test_hadolint_passes() -> None:
    result = run([tool("hadolint"), str(DOCKERFILE)])
    assert result.returncode == 0, result.output
    assert result.output.strip() == ""


def test_hadolint_catches_a_careless_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\nRUN pip install gpuquota\n")
    result = run([tool("hadolint"), "--format", "json", str(bad)])
    assert result.returncode != 0
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert {"DL3007", "DL3008", "DL3013"} <= codes  # latest tag, unpinned apt and pip packages


def test_final_stage_is_small_pinned_and_unprivileged() -> None:
    args, stages = _parse()
    assert len(stages) >= 2  # multi-stage
    builder, final = stages[0], stages[-1]
    assert builder.name == "builder"
    stage_args = {a.partition("=")[0]: a.partition("=")[2] for a in final.all("ARG")}
    base = _expand(final.base, args)
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base
    assert _expand(builder.base, args) == base  # the venv is built against the same interpreter
    user = _expand(final.all("USER")[-1], args | stage_args)
    uid, _, gid = user.partition(":")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert uid.isdigit()
    assert int(uid) > 0
    assert int(uid) == values["runAsUser"]
    assert int(gid) == values["runAsGroup"]
    assert json.loads(final.all("ENTRYPOINT")[-1]) == ["gpuquota"]
    assert json.loads(final.all("CMD")[-1]) == ["serve"]
    env = " ".join(final.all("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "/opt/gpuquota/bin" in env
    assert json.loads(final.all("VOLUME")[-1]) == ["/var/lib/gpuquota"]
    final_runs = " ".join(final.all("RUN"))
    for tool_name in ("apt-get install", "gcc", "build-essential", "pip install", "python -m build"):
        assert tool_name not in final_runs, f"{tool_name} in the final stage"
    copies = final.all("COPY")
    assert copies == ["--from=builder /opt/gpuquota /opt/gpuquota"]  # only the virtual environment
    assert "python -m venv /opt/gpuquota" in " ".join(builder.all("RUN"))  # same path: venvs do not relocate


def test_state_directory_matches_the_chart() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["ledger"]["sqlite"]["path"].startswith("/var/lib/gpuquota/")
    webhook = next(pod for name, pod in pod_specs(render("defaults")) if name.endswith("-webhook"))
    mounts = {m["name"]: m["mountPath"] for m in webhook["containers"][0]["volumeMounts"]}
    assert mounts["state"] == "/var/lib/gpuquota"
    assert "--state-dir=/var/lib/gpuquota" in webhook["containers"][0]["args"]


def test_dockerignore_lets_in_exactly_what_the_builder_copies() -> None:
    _, stages = _parse()
    sources = {src.rstrip("/") for copy in stages[0].all("COPY") for src in shlex.split(copy)[:-1]
               if not src.startswith("--")}
    assert sources == {"pyproject.toml", "README.md", "src"}
    lines = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*"  # an allow-list: nothing else (.venv, .git, tests, var/ with keys) reaches the daemon
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert allowed == sources


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel the builder stage builds, built the same way (hatchling), offline."""
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(REPO)], capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    wheels = list(out.glob("gpuquota-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_carries_the_package_data_and_the_entry_point(wheel: Path) -> None:
    tracked = subprocess.run(["git", "ls-files", "src/gpuquota"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    data = {p.removeprefix("src/") for p in tracked if not p.endswith(".py")}
    assert "gpuquota/catalog/gpus.yaml" in data
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert data <= names, f"missing from the wheel: {data - names}"
    assert re.search(r"^gpuquota = gpuquota\.cli:main$", entry_points, flags=re.MULTILINE)


@cache
def _help(command: str) -> str:
    result = run([tool("gpuquota"), command, "--help"], timeout=60)
    assert result.returncode == 0, f"gpuquota {command} --help failed: {result.output}"
    return result.stdout


@pytest.mark.parametrize("name", CASE_NAMES)
def test_every_command_and_flag_the_chart_passes_exists(name: str) -> None:
    """One image, four commands: what the chart runs must be what the CLI accepts."""
    for workload, pod in pod_specs(render(name)):
        for container in pod["containers"]:
            assert "command" not in container  # the image's ENTRYPOINT (gpuquota) is used
            command, *flags = container["args"]
            assert command in ("serve", "agent", "reconcile", "kueue-check"), (workload, command)
            usage = _help(command)
            for flag in flags:
                option = flag.partition("=")[0]
                assert option.startswith("--"), flag
                assert re.search(rf"{re.escape(option)}\b", usage), f"{workload}: gpuquota {command} has no {option}"
