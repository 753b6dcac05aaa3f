"""``gpuquota inventory`` and ``gpuquota agent`` as a user runs them: a real process that finds the fake
libnvidia-ml.so.1 through LD_LIBRARY_PATH (as it would find the driver's), and for the agent a local API server
reached with the real HTTP client."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpuquota.inventory import ANNOTATION_INVENTORY, LABEL_CLASS, LABEL_COUNT, LABEL_MODEL, NodeInventory
from tests.inventory.conftest import PROFILES
from tests.inventory.test_cluster import recorded
from tests.kube.apiserver import ApiState, api_server

NODE = "gpu-node-7"


def run_cli(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from gpuquota.cli import main; main()", *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture
def env(fake_nvml_library: Path, tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("NODE_NAME", "KUBERNETES_SERVICE_HOST")}
    return {**base, "LD_LIBRARY_PATH": str(fake_nvml_library.parent), "HOME": str(tmp_path)}


def with_profile(env: dict[str, str], profile: str | Path) -> dict[str, str]:
    path = profile if isinstance(profile, Path) else PROFILES / f"{profile}.profile"
    return {**env, "FAKE_NVML_PROFILE": str(path)}


def test_inventory_json(env: dict[str, str]) -> None:
    result = run_cli(["inventory", "--output", "json", "--node-name", NODE], with_profile(env, "h100-sxm-8x"))
    assert result.returncode == 0, result.stderr
    inventory = NodeInventory.from_json(result.stdout)
    assert inventory.node == NODE
    assert inventory.gpu_count == 8
    assert json.loads(result.stdout)["total_tpp"] == 8 * 15832


def test_inventory_table_shows_mig_estimates_and_errors(env: dict[str, str]) -> None:
    mig = run_cli(["inventory"], with_profile(env, "a100-mig-mixed"))
    assert mig.returncode == 0, mig.stderr
    assert "A100-SXM4-80GB" in mig.stdout
    assert "2× 2g.20gb, 1× 3g.40gb" in mig.stdout
    assert "9,984 TPP" in mig.stdout
    unknown = run_cli(["inventory"], with_profile(env, "unknown-future"))
    assert unknown.returncode == 0, unknown.stderr
    assert "estimated" in unknown.stdout
    assert "* GPU 0: estimate: 160 SM" in unknown.stdout
    lost = run_cli(["inventory"], with_profile(env, "h100-gpu-lost"))
    assert lost.returncode == 0, lost.stderr
    assert "! GPU 2: NVML_ERROR_GPU_IS_LOST" in lost.stdout


def test_inventory_without_nvml_exits_3_with_one_line(env: dict[str, str], tmp_path: Path) -> None:
    result = run_cli(["inventory"], with_profile(env, tmp_path / "no-driver.profile"))
    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("gpuquota: NVML is not available: ")
    assert "Traceback" not in result.stderr


def test_inventory_bad_output_is_exit_2(env: dict[str, str]) -> None:
    result = run_cli(["inventory", "--output", "yaml"], with_profile(env, "l4-4x"))
    assert result.returncode == 2


# -- agent ----------------------------------------------------------------------------------------------------


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[ApiState, str, Path]]:
    state = ApiState()
    node = recorded("cpu-only")
    node["metadata"]["name"] = NODE
    state.put(f"/api/v1/nodes/{NODE}", node)
    token = tmp_path / "token"
    token.write_text(state.token)
    with api_server(state) as url:
        yield state, url, token


def published(state: ApiState) -> dict[str, Any]:
    metadata: dict[str, Any] = state.objects[f"/api/v1/nodes/{NODE}"]["metadata"]
    return metadata


def test_agent_once_publishes_through_the_real_client(env: dict[str, str], cluster: tuple[ApiState, str, Path]) -> None:
    state, url, token = cluster
    result = run_cli(
        ["agent", "--once", "--node-name", NODE, "--api-server", url, "--token-file", str(token)],
        with_profile(env, "l4-4x"),
    )
    assert result.returncode == 0, result.stderr
    assert f"published 4 GPU(s), 7,760 TPP to node {NODE}" in result.stdout
    metadata = published(state)
    assert metadata["labels"][LABEL_MODEL] == "L4"
    assert metadata["labels"][LABEL_COUNT] == "4"
    assert metadata["labels"][LABEL_CLASS] in ("3A090.a", "3A090.b", "uncontrolled")
    assert metadata["labels"]["kubernetes.io/os"] == "linux"
    assert NodeInventory.from_json(metadata["annotations"][ANNOTATION_INVENTORY]).gpu_count == 4
    patch = next(r for r in state.requests if r.method == "PATCH")
    assert patch.headers["Content-Type"] == "application/merge-patch+json"
    assert set(patch.body["metadata"]) == {"labels", "annotations"}


def test_agent_once_forbidden_exits_1_without_retrying(
    env: dict[str, str], cluster: tuple[ApiState, str, Path]
) -> None:
    state, url, token = cluster
    state.fail[f"/api/v1/nodes/{NODE}"] = (403, '{"kind":"Status","code":403,"message":"nodes is forbidden"}')
    result = run_cli(
        ["agent", "--once", "--node-name", NODE, "--api-server", url, "--token-file", str(token)],
        with_profile(env, "l4-4x"),
    )
    assert result.returncode == 1
    assert "nodes is forbidden" in result.stderr
    assert "Traceback" not in result.stderr
    assert sum(r.method == "PATCH" for r in state.requests) == 1


def test_agent_takes_the_node_name_from_the_environment(
    env: dict[str, str], cluster: tuple[ApiState, str, Path]
) -> None:
    state, url, token = cluster
    result = run_cli(
        ["agent", "--once", "--api-server", url, "--token-file", str(token)],
        {**with_profile(env, "rtx4090-workstation"), "NODE_NAME": NODE},
    )
    assert result.returncode == 0, result.stderr
    assert published(state)["labels"][LABEL_MODEL] == "RTX-4090"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["agent", "--once"], "no node name"),
        (["agent", "--once", "--node-name", NODE], "KUBERNETES_SERVICE_HOST is unset"),
        (["agent", "--once", "--node-name", NODE, "--interval", "0"], "must be positive"),
        (["agent", "--once", "--node-name", NODE, "--api-server", "ftp://x"], "http(s) URL"),
    ],
)
def test_agent_configuration_errors_exit_2(env: dict[str, str], args: list[str], message: str) -> None:
    result = run_cli(args, with_profile(env, "l4-4x"))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_agent_without_nvml_exits_3(env: dict[str, str], cluster: tuple[ApiState, str, Path], tmp_path: Path) -> None:
    _, url, token = cluster
    result = run_cli(
        ["agent", "--node-name", NODE, "--api-server", url, "--token-file", str(token)],
        with_profile(env, tmp_path / "none.profile"),
    )
    assert result.returncode == 3
    assert "NVML is not available" in result.stderr
    assert "Traceback" not in result.stderr


def test_agent_serves_until_sigterm(env: dict[str, str], cluster: tuple[ApiState, str, Path]) -> None:
    state, url, token = cluster
    process = subprocess.Popen(
        [sys.executable, "-c", "from gpuquota.cli import main; main()", "agent", "--node-name", NODE,
         "--api-server", url, "--token-file", str(token), "--host", "127.0.0.1", "--port", "0", "--poll", "0.2"],
        env=with_profile(env, "a100-mig-mixed"), stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            found = re.search(r"serving /metrics and /healthz on 127\.0\.0\.1:(\d+)", line)
            port = int(found.group(1)) if found else None
        assert port is not None, "the agent did not report its port"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            health = json.load(response)
        assert health["status"] == "ok"
        assert health["gpus"] == 2
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert 'gpuquota_node_mig_slices{index="0",node="gpu-node-7",profile="2g.20gb"} 2.0' in metrics
        assert published(state)["labels"][LABEL_MODEL] == "A100-SXM4-80GB"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
