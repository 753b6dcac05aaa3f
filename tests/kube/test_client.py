"""The real HTTP client against a local API server that speaks the Kubernetes wire format."""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpuquota.kube import AccessDeniedError, KubeClient, KubeConfigError, KubeError, TransportError, UnauthorizedError
from tests.admission.pki import make_ca
from tests.kube.apiserver import ApiState, api_server


def _node(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "status": {"capacity": {"nvidia.com/gpu": "8"}},
    }


@pytest.fixture
def state() -> ApiState:
    state = ApiState()
    for name in ("gpu-a", "gpu-b", "gpu-c"):
        state.put(f"/api/v1/nodes/{name}", _node(name, {"pool": "h100" if name != "gpu-c" else "l4"}))
    return state


@pytest.fixture
def token_file(tmp_path: Path, state: ApiState) -> Path:
    path = tmp_path / "token"
    path.write_text(state.token + "\n")
    return path


@pytest.fixture
def client(state: ApiState, token_file: Path) -> Iterator[KubeClient]:
    with api_server(state) as url, KubeClient.connect(url, token_file=token_file) as kube:
        yield kube


def test_get_returns_the_object_and_sends_the_bearer_token(client: KubeClient, state: ApiState) -> None:
    node = client.get("/api/v1/nodes/gpu-a")
    assert node is not None
    assert node["metadata"]["name"] == "gpu-a"
    assert state.requests[-1].headers["Authorization"] == "Bearer t0ken"


def test_get_of_a_missing_object_is_none(client: KubeClient) -> None:
    assert client.get("/api/v1/nodes/nope") is None


def test_list_follows_continue_tokens_and_passes_the_selector(client: KubeClient, state: ApiState) -> None:
    state.page_size = 1
    result = client.list("/api/v1/nodes", label_selector="pool=h100")
    assert [n["metadata"]["name"] for n in result.items] == ["gpu-a", "gpu-b", "gpu-c"]  # server ignores selector
    assert result.resource_version == str(state.version)
    lists = [r for r in state.requests if r.method == "GET"]
    assert [r.query.get("continue") for r in lists] == [None, "1", "2"]
    assert all(r.query["labelSelector"] == "pool=h100" for r in lists)


def test_watch_streams_events_after_the_version(client: KubeClient, state: ApiState) -> None:
    since = state.version
    state.put("/api/v1/nodes/gpu-d", _node("gpu-d"))
    state.put("/api/v1/nodes/gpu-a", _node("gpu-a", {"extra": "1"}))
    events = list(client.watch("/api/v1/nodes", str(since), timeout_s=5))
    assert [(e.type, e.object["metadata"]["name"]) for e in events if e.type != "BOOKMARK"] == [
        ("ADDED", "gpu-d"),
        ("MODIFIED", "gpu-a"),
    ]
    assert events[-1].type == "BOOKMARK"
    query = state.requests[-1].query
    assert query["watch"] == "1"
    assert query["resourceVersion"] == str(since)
    assert query["timeoutSeconds"] == "5"


def test_watch_from_an_expired_version_raises_410(client: KubeClient, state: ApiState) -> None:
    state.oldest_version = state.version
    with pytest.raises(KubeError) as info:
        list(client.watch("/api/v1/nodes", "1"))
    assert info.value.status == 410
    assert "too old resource version" in info.value.message


def test_merge_patch_sends_the_merge_content_type(client: KubeClient, state: ApiState) -> None:
    patched = client.patch(
        "/api/v1/nodes/gpu-a", {"metadata": {"labels": {"gpuquota.io/gpu-count": "8", "pool": None}}}
    )
    assert patched["metadata"]["labels"]["gpuquota.io/gpu-count"] == "8"
    assert "pool" not in patched["metadata"]["labels"]
    assert state.requests[-1].headers["Content-Type"] == "application/merge-patch+json"


def test_json_patch_sends_the_operations_list(client: KubeClient, state: ApiState) -> None:
    ops = [{"op": "add", "path": "/metadata/labels/x", "value": "y"}]
    patched = client.patch("/api/v1/nodes/gpu-b", {"ops": ops}, patch_type="json")
    assert patched["metadata"]["labels"]["x"] == "y"
    assert state.requests[-1].body == ops
    assert state.requests[-1].headers["Content-Type"] == "application/json-patch+json"


def test_patch_of_a_missing_object_is_a_404_error(client: KubeClient) -> None:
    with pytest.raises(KubeError) as info:
        client.patch("/api/v1/nodes/nope", {"metadata": {}})
    assert info.value.status == 404
    assert not info.value.retriable


@pytest.mark.parametrize(
    "case",
    [
        (403, '{"kind":"Status","code":403,"message":"nodes is forbidden: User cannot list"}', "forbidden", False),
        (500, '{"kind":"Status","code":500,"message":"etcdserver: request timed out"}', "etcdserver", True),
        (429, "Too many requests, please try again later.", "Too many requests", True),
        (503, "", "Service Unavailable", True),
    ],
)
def test_http_errors_carry_status_and_the_servers_message(
    client: KubeClient, state: ApiState, case: tuple[int, str, str, bool]
) -> None:
    status, body, message, retriable = case
    state.fail["/api/v1/nodes"] = (status, body)
    with pytest.raises(KubeError) as info:
        client.list("/api/v1/nodes")
    assert info.value.status == status
    assert message in info.value.message
    assert info.value.retriable is retriable


def test_a_body_that_is_not_json_is_an_error(client: KubeClient, state: ApiState) -> None:
    state.fail["/api/v1/nodes/gpu-a"] = (200, "<html>proxy</html>")
    with pytest.raises(KubeError, match="not JSON"):
        client.get("/api/v1/nodes/gpu-a")


def test_a_wrong_token_is_401(state: ApiState, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("wrong")
    with (api_server(state) as url, KubeClient.connect(url, token_file=bad) as kube,
          pytest.raises(UnauthorizedError) as info):
        kube.get("/api/v1/nodes/gpu-a")
    assert info.value.status == 401
    assert isinstance(info.value, AccessDeniedError)


def test_a_rotated_token_file_is_picked_up(client: KubeClient, state: ApiState, token_file: Path) -> None:
    assert client.get("/api/v1/nodes/gpu-a") is not None
    state.token = "r0tated"
    token_file.write_text("r0tated")
    later = time.time() + 5  # mtime resolution can be coarse: make the change visible
    os.utime(token_file, (later, later))
    assert client.get("/api/v1/nodes/gpu-a") is not None
    assert state.requests[-1].headers["Authorization"] == "Bearer r0tated"


def test_an_unreachable_server_is_a_retriable_status_0() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with KubeClient.connect(f"http://127.0.0.1:{port}") as kube, pytest.raises(TransportError) as info:
        kube.get("/api/v1/nodes/a")
    assert info.value.status == 0
    assert info.value.retriable


def test_in_cluster_reads_the_service_account(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "ca.crt").write_bytes(make_ca(tmp_path / "pki", "cluster").ca_file.read_bytes())
    kube = KubeClient.in_cluster(tmp_path, {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"})
    assert kube.api_server == "https://10.96.0.1:443"
    ipv6 = KubeClient.in_cluster(tmp_path, {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"})
    assert ipv6.api_server == "https://[fd00::1]:443"


def test_configuration_errors_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match="KUBERNETES_SERVICE_HOST"):
        KubeClient.in_cluster(tmp_path, {})
    with pytest.raises(KubeConfigError, match="token file does not exist"):
        KubeClient.in_cluster(tmp_path, {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"})
    with pytest.raises(KubeConfigError, match="http"):
        KubeClient.connect("10.0.0.1:6443", token_file=tmp_path / "t")
    with pytest.raises(KubeConfigError, match="needs --api-server"):
        KubeClient.connect(None, token_file=tmp_path / "t")
    (tmp_path / "bad-ca.crt").write_text("not a certificate")
    with pytest.raises(KubeConfigError, match=r"bad-ca\.crt"):
        KubeClient.connect("https://10.0.0.1", ca_file=tmp_path / "bad-ca.crt")


def test_tls_is_verified_against_the_ca_file(state: ApiState, token_file: Path, tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "pki", "apiserver")
    cert, key = ca.issue(tmp_path / "pki", "apiserver")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with api_server(state, tls) as url:
        assert url.startswith("https://")
        with KubeClient.connect(url, token_file, ca_file=ca.ca_file) as kube:
            assert kube.get("/api/v1/nodes/gpu-a") is not None
        with KubeClient.connect(url, token_file) as kube, pytest.raises(KubeError) as info:
            kube.get("/api/v1/nodes/gpu-a")  # the system trust store does not know the test CA
        assert info.value.status == 0
        assert "CERTIFICATE_VERIFY_FAILED" in info.value.message
        with KubeClient.connect(url, token_file, insecure=True) as kube:
            assert kube.get("/api/v1/nodes/gpu-a") is not None
