"""`gpuquota serve` refuses bad configuration before listening: a one-line message, exit status 2, no traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.admission.serverproc import GPUQUOTA, free_port


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(GPUQUOTA), "serve", "--port", str(free_port()), "--host", "127.0.0.1",
                           "--state-dir", str(tmp_path / "state"), "--kube", "none", *args],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--policy", "no-such-profile", "--insecure"), "no-such-profile"),
        (("--tenants", "/nonexistent/tenants.yaml", "--insecure"), "tenants"),
        (("--ledger", "mysql://db/gpuquota", "--insecure"), "unsupported ledger URL"),
        (("--tls-cert", "/etc/hostname"), "go together"),
        (("--tls-cert", "/etc/hostname", "--tls-key", "/etc/hostname"), "cannot load the TLS certificate"),
        (("--tls-cert", "/nonexistent.crt", "--tls-key", "/nonexistent.key"), "does not exist"),
        (("--insecure", "--tls-cert", "/etc/hostname", "--tls-key", "/etc/hostname"), "exclude each other"),
        (("--ledger-threads", "-1", "--insecure"), "--ledger-threads"),
        (("--trusted-controller", " ", "--insecure"), "--trusted-controller"),
        (("--gpu-resource", "nvidia.com/a100", "--insecure"), "--gpu-resource"),
        (("--gpu-resource", "nvidia.com/a100=ibm", "--insecure"), "vendor must be one of"),
        (("--gpu-device-class", "gpu.example.com=nvidia,fraction=2", "--insecure"), "fraction must be in"),
        (("--dra-all-devices", "0", "--insecure"), "--dra-all-devices"),
    ],
)
def test_bad_configuration_exits_2_with_a_message(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    result = _serve(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_broken_policy_file_at_start_names_the_field(tmp_path: Path) -> None:
    policy = tmp_path / "broken.yaml"
    policy.write_text("schema: 1\nname: broken\nversion: '1'\nrules: [{id: x, cap: {amount: -1}}]\n")
    result = _serve(tmp_path, "--policy", str(policy), "--insecure")
    assert result.returncode == 2
    assert str(policy) in result.stderr
    assert "Traceback" not in result.stderr
