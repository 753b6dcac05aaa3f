"""Configuration and credentials read by the official ``kubernetes`` package, used for real against the local test
API server: kubeconfig contexts and ``KUBECONFIG``, client certificates, exec plugins (re-run on a 401), token files
and the in-cluster layout (re-read when rotated), ``proxy-url``."""

from __future__ import annotations

import json
import os
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import pytest
import yaml

from gpuquota.kube import KubeClient, KubeConfigError, KubeSource, UnauthorizedError
from gpuquota.kube.config import load_credentials
from tests.admission import pki
from tests.kube.apiserver import ApiState, api_server

NODE = "/api/v1/nodes/gpu-a"


@pytest.fixture
def state() -> ApiState:
    state = ApiState()
    state.put(NODE, {"kind": "Node", "metadata": {"name": "gpu-a"}})
    return state


@pytest.fixture
def ca(tmp_path: Path) -> pki.TestCA:
    return pki.make_ca(tmp_path / "pki", "cluster")


@pytest.fixture
def tls_url(state: ApiState, ca: pki.TestCA, tmp_path: Path) -> Iterator[str]:
    """The API server over TLS, asking for (not requiring) client certificates signed by the cluster CA."""
    cert, key = ca.issue(tmp_path / "pki", "apiserver")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.load_verify_locations(ca.ca_file)
    context.verify_mode = ssl.CERT_OPTIONAL
    with api_server(state, context) as url:
        yield url


def kubeconfig(path: Path, clusters: dict[str, dict[str, Any]], users: dict[str, dict[str, Any]],
               contexts: dict[str, tuple[str, str]], current: str | None = None) -> Path:
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": c} for n, c in clusters.items()],
        "users": [{"name": n, "user": u} for n, u in users.items()],
        "contexts": [{"name": n, "context": {"cluster": c, "user": u}} for n, (c, u) in contexts.items()],
    }
    if current:
        config["current-context"] = current
    path.write_text(yaml.safe_dump(config))
    return path


def test_contexts_pick_the_cluster_and_user(state: ApiState, tmp_path: Path) -> None:
    with api_server(state) as url, api_server(ApiState(token="other")) as other_url:
        config = kubeconfig(
            tmp_path / "config",
            {"main": {"server": url}, "other": {"server": other_url}},
            {"admin": {"token": state.token}, "nobody": {"token": "wrong"}},
            {"main": ("main", "admin"), "second": ("other", "nobody"), "bad-user": ("main", "nobody")},
            current="main",
        )
        with KubeClient.connect(kubeconfig=config) as kube:
            assert kube.api_server == url
            assert kube.get(NODE) is not None
        with KubeClient.connect(kubeconfig=config, context="second") as kube:
            assert kube.api_server == other_url
        with KubeClient.connect(kubeconfig=config, context="bad-user") as kube, pytest.raises(UnauthorizedError):
            kube.get(NODE)
        with pytest.raises(KubeConfigError, match="Expected object with name nope"):
            KubeClient.connect(kubeconfig=config, context="nope")


def test_kubeconfig_env_merges_several_files_and_the_flag_wins(state: ApiState, tmp_path: Path) -> None:
    with api_server(state) as url:
        first = kubeconfig(tmp_path / "a", {"c": {"server": "http://127.0.0.1:9"}}, {"u": {"token": "x"}},
                           {"first": ("c", "u")}, current="second")
        second = kubeconfig(tmp_path / "b", {"real": {"server": url}}, {"admin": {"token": state.token}},
                            {"second": ("real", "admin")})
        environ = {"KUBECONFIG": f"{first}{os.pathsep}{second}", "KUBERNETES_SERVICE_HOST": "10.0.0.1"}
        credentials = load_credentials(KubeSource(), environ=environ)  # KUBECONFIG beats the pod's account
        assert credentials.endpoint.host == url
        with KubeClient(credentials) as kube:
            assert kube.get(NODE) is not None
        assert load_credentials(KubeSource(kubeconfig=first, context="first"), environ=environ).endpoint.host == (
            "http://127.0.0.1:9")


def test_no_credentials_anywhere_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match="not running in a Kubernetes pod"):
        load_credentials(KubeSource(), environ={"KUBECONFIG": str(tmp_path / "absent")})
    with pytest.raises(KubeConfigError, match="--api-server excludes"):
        load_credentials(KubeSource(kubeconfig=tmp_path / "k", api_server="https://x"))
    broken = tmp_path / "broken"
    broken.write_text("clusters: []\ncontexts: []\nusers: []\n")
    with pytest.raises(KubeConfigError, match=str(broken)):
        load_credentials(KubeSource(kubeconfig=broken))


def test_client_certificates_authenticate(state: ApiState, ca: pki.TestCA, tls_url: str, tmp_path: Path) -> None:
    cert, key = ca.issue(tmp_path / "pki", "admin")
    state.cert_users = {"gpuquota-webhook-admin"}
    inline = kubeconfig(
        tmp_path / "inline",
        {"c": {"server": tls_url, "certificate-authority-data": _b64(ca.ca_file)}},
        {"admin": {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}},
        {"x": ("c", "admin")}, current="x",
    )
    files = kubeconfig(
        tmp_path / "files",
        {"c": {"server": tls_url, "certificate-authority": str(ca.ca_file)}},
        {"admin": {"client-certificate": str(cert), "client-key": str(key)}},
        {"x": ("c", "admin")}, current="x",
    )
    for config in (inline, files):
        with KubeClient.connect(kubeconfig=config) as kube:
            assert kube.get(NODE) is not None
            assert "Authorization" not in state.requests[-1].headers
    state.cert_users = set()
    with KubeClient.connect(kubeconfig=files) as kube, pytest.raises(UnauthorizedError):
        kube.get(NODE)


def _b64(path: Path) -> str:
    import base64  # noqa: PLC0415

    return base64.b64encode(path.read_bytes()).decode()


def exec_plugin(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A credential plugin: prints an ExecCredential with the token in ``token``; appends to ``runs`` per run."""
    script, token, runs = tmp_path / "plugin.py", tmp_path / "plugin-token", tmp_path / "runs"
    script.write_text(
        "import json, os, sys\n"
        f"info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        f"open({str(runs)!r}, 'a').write(info['kind'] + '\\n')\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential',\n"
        f"                  'status': {{'token': open({str(token)!r}).read().strip()}}}}))\n"
    )
    return script, token, runs


def test_an_exec_plugin_supplies_the_token_and_runs_again_after_a_401(state: ApiState, tmp_path: Path) -> None:
    script, token, runs = exec_plugin(tmp_path)
    token.write_text(state.token)
    with api_server(state) as url:
        config = kubeconfig(
            tmp_path / "config", {"c": {"server": url}},
            {"eks": {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
                              "args": [str(script)], "interactiveMode": "Never"}}},
            {"x": ("c", "eks")}, current="x",
        )
        with KubeClient.connect(kubeconfig=config) as kube:
            assert kube.get(NODE) is not None
            assert runs.read_text().splitlines() == ["ExecCredential"]
            state.token = "rotated-by-the-provider"  # the old token is refused from now on
            token.write_text(state.token)
            assert kube.get(NODE) is not None  # 401 → the plugin runs again → the retry passes
            assert len(runs.read_text().splitlines()) == 2
            assert state.requests[-1].headers["Authorization"] == "Bearer rotated-by-the-provider"
            state.token = "revoked"
            with pytest.raises(UnauthorizedError):  # renewal gives the same refused token: the 401 stands
                kube.get(NODE)


def test_in_cluster_layout_from_a_directory_and_its_token_rotation(
    state: ApiState, ca: pki.TestCA, tls_url: str, tmp_path: Path
) -> None:
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(state.token)
    (sa / "ca.crt").write_bytes(ca.ca_file.read_bytes())
    port = tls_url.rsplit(":", 1)[1]
    environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port}
    with KubeClient.in_cluster(sa, environ) as kube:
        assert kube.api_server == tls_url
        assert kube.get(NODE) is not None
        state.token = "projected-2"  # the kubelet rotates the projected token; the old one stops working
        (sa / "token").write_text(state.token)
        assert kube.get(NODE) is not None
        assert state.requests[-1].headers["Authorization"] == "Bearer projected-2"


class _Proxy(BaseHTTPRequestHandler):
    """A forward proxy for plain-HTTP targets: the request line carries the absolute URL."""

    protocol_version = "HTTP/1.1"
    seen: list[str] = []  # noqa: RUF012 - one test's record

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        request = Request(self.path, headers={k: v for k, v in self.headers.items() if k.lower() != "host"})  # noqa: S310
        try:
            with urlopen(request, timeout=5) as upstream:  # noqa: S310 - the loopback test server
                status, body = upstream.status, upstream.read()
        except OSError as exc:
            status, body = getattr(exc, "code", 502), b"{}"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_proxy_url_routes_the_requests(state: ApiState, tmp_path: Path) -> None:
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        with api_server(state) as url:
            config = kubeconfig(
                tmp_path / "config",
                {"c": {"server": url, "proxy-url": f"http://127.0.0.1:{proxy.server_address[1]}"}},
                {"u": {"token": state.token}}, {"x": ("c", "u")}, current="x",
            )
            with KubeClient.connect(kubeconfig=config) as kube:
                assert kube.get(NODE) is not None
            assert _Proxy.seen == [f"{url}{NODE}"]
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_a_kubeconfig_token_file_is_read_again_when_it_changes(state: ApiState, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(state.token)
    with api_server(state) as url:
        config = kubeconfig(tmp_path / "config", {"c": {"server": url}}, {"u": {"tokenFile": str(token)}},
                            {"x": ("c", "u")}, current="x")
        credentials = load_credentials(KubeSource(kubeconfig=config))
        assert credentials.authorization() == f"Bearer {state.token}"
        token.write_text("next")
        later = time.time() + 5
        os.utime(token, (later, later))
        credentials._checked_at = float("-inf")  # the next call looks at the file now, not after the check period
        assert credentials.authorization() == "Bearer next"


def test_explicit_flags_build_a_kubeconfig_for_the_package(state: ApiState, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(json.dumps("ignored") and state.token)
    with api_server(state) as url, KubeClient.connect(url, token) as kube:
        assert kube.get(NODE) is not None
        assert kube.credentials.description == f"--api-server {url}"
