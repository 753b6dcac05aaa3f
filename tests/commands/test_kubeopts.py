"""The shared Kubernetes options: client construction, log levels, the pod's namespace and identity."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gpuquota.commands.kubeopts import KubeOptions, log_level_name, pod_identity, pod_namespace, setup_logging
from gpuquota.errors import UserError
from gpuquota.kube import KubeConfigError


def test_explicit_api_server_builds_a_client_for_it(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("abc\n")
    options = KubeOptions("https://10.0.0.1:6443/", token)
    assert not options.in_cluster
    with options.connect() as client:
        assert client.api_server == "https://10.0.0.1:6443"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (KubeOptions("10.0.0.1:6443"), "must be an http(s) URL"),
        (KubeOptions(None, Path("/t")), "--token-file needs --api-server"),
        (KubeOptions("https://x", Path("/nonexistent/token")), "cannot read the API token"),
    ],
)
def test_unusable_options_are_user_errors(options: KubeOptions, message: str) -> None:
    with pytest.raises(KubeConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        options.connect()


def test_in_cluster_without_a_service_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert KubeOptions().in_cluster
    with pytest.raises(KubeConfigError, match="not running in a Kubernetes pod"):
        KubeOptions().connect()


def test_log_levels() -> None:
    setup_logging("WARNING")
    with pytest.raises(UserError, match="--log-level must be"):
        setup_logging("verbose")
    with pytest.raises(UserError, match="--log-level must be"):
        setup_logging("critical")  # a logging level, but not one the commands offer


def test_log_level_name_is_lower_case_and_checked() -> None:
    assert log_level_name("Debug") == "debug"
    with pytest.raises(UserError, match="not 'trace'"):
        log_level_name("trace")


def test_pod_namespace_prefers_the_downward_api_then_the_service_account_file(tmp_path: Path) -> None:
    sa_file = tmp_path / "namespace"
    assert pod_namespace({}, sa_file) is None
    sa_file.write_text("gpuquota-system\n")
    assert pod_namespace({}, sa_file) == "gpuquota-system"
    assert pod_namespace({"POD_NAMESPACE": "from-env"}, sa_file) == "from-env"


def test_pod_identity_is_the_pod_name_else_the_host_name() -> None:
    assert pod_identity({"POD_NAME": "gq-reconciler-7d9f-abcde"}) == "gq-reconciler-7d9f-abcde"
    assert pod_identity({}) == socket.gethostname()
