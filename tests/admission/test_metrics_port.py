"""Metrics on their own port: gone from the webhook port, plain for local use, and in a cluster readable only with a
token the API server authenticates (TokenReview) and authorises for get /metrics (SubjectAccessReview); the probes
on that port are never authenticated and stay reachable while the webhook port is full."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.admission.conftest import Setup
from tests.admission.serverproc import Server, free_port, start_server, verifier, wait_for
from tests.kube.apiserver import ApiState, api_server, with_kube_system

READER: dict[str, Any] = {"username": "system:serviceaccount:monitoring:prometheus", "uid": "u-1",
                          "groups": ["system:authenticated"]}
NOSY: dict[str, Any] = {"username": "system:serviceaccount:acme:notebook", "uid": "u-2",
                        "groups": ["system:authenticated"]}


def _metrics_client(server: Server, port: int) -> httpx.Client:
    return httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=verifier(server.ca_file), timeout=10)


@pytest.fixture(scope="module")
def plain(setup: Setup) -> Iterator[tuple[Server, int]]:
    port = free_port()
    server = start_server(setup.root / "plain-metrics", policy=setup.policy, tenants=setup.tenants, tls=setup.tls,
                          ca_file=setup.ca.ca_file, extra=("--metrics-port", str(port), "--max-connections", "4"))
    try:
        yield server, port
    finally:
        server.stop()


def test_metrics_leave_the_webhook_port(plain: tuple[Server, int]) -> None:
    server, port = plain
    with server.client() as client:
        assert client.get("/metrics").status_code == 404
        assert client.get("/healthz").status_code == 200
    with _metrics_client(server, port) as client:
        response = client.get("/metrics")
        assert response.status_code == 200
        assert "gpuquota_admission_requests_total" in response.text
        assert 'gpuquota_http_connections{listener="metrics"}' in response.text
        assert client.get("/healthz").text == "ok\n"
        assert client.get("/readyz").json() == {"ready": True}


def test_probes_answer_while_the_webhook_port_is_full(plain: tuple[Server, int]) -> None:
    server, port = plain
    assert server.ca_file is not None
    context = ssl.create_default_context(cafile=str(server.ca_file))
    webhook_port = int(server.base_url.rsplit(":", 1)[1])
    held = [context.wrap_socket(socket.create_connection(("127.0.0.1", webhook_port), timeout=10),
                                server_hostname="127.0.0.1") for _ in range(5)]
    try:
        with _metrics_client(server, port) as client:
            assert client.get("/healthz").status_code == 200
            assert client.get("/readyz").status_code == 200
    finally:
        for sock in held:
            sock.close()


@pytest.fixture(scope="module")
def secured(setup: Setup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int, ApiState]]:
    state = with_kube_system(ApiState(users={"prom-token": READER, "nosy-token": NOSY}))
    state.allowed.add((READER["username"], "get", "/metrics"))
    directory: Path = tmp_path_factory.mktemp("secured-metrics")
    (directory / "token").write_text(state.token)
    port = free_port()
    with api_server(state) as url:
        server = start_server(directory / "srv", policy=setup.policy, tenants=setup.tenants, tls=setup.tls,
                              ca_file=setup.ca.ca_file,
                              extra=("--kube", "in-cluster", "--api-server", url, "--token-file",
                                     str(directory / "token"), "--metrics-port", str(port),
                                     "--metrics-auth", "kubernetes"))
        try:
            yield server, port, state
        finally:
            server.stop()


def _scrape(server: Server, port: int, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    with _metrics_client(server, port) as client:
        return client.get("/metrics", headers=headers)


def test_metrics_need_an_authenticated_and_authorised_token(secured: tuple[Server, int, ApiState]) -> None:
    server, port, _ = secured
    refused = _scrape(server, port, None)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert _scrape(server, port, "forged-token").status_code == 401
    forbidden = _scrape(server, port, "nosy-token")
    assert forbidden.status_code == 403
    assert "notebook may not get /metrics" in forbidden.text
    allowed = _scrape(server, port, "prom-token")
    assert allowed.status_code == 200
    assert "gpuquota_cap" in allowed.text
    with _metrics_client(server, port) as client:
        assert client.get("/healthz").status_code == 200  # probes: no token
        assert client.get("/readyz").status_code in (200, 503)


def test_repeated_scrapes_review_the_token_once(secured: tuple[Server, int, ApiState]) -> None:
    server, port, state = secured
    assert _scrape(server, port, "prom-token").status_code == 200

    def token_reviews() -> int:
        return sum(1 for r in state.requests if r.path.endswith("/tokenreviews") and r.body["spec"]["token"] ==
                   "prom-token")

    before = token_reviews()
    for _ in range(5):
        assert _scrape(server, port, "prom-token").status_code == 200
    assert token_reviews() == before
    reviews = [r for r in state.requests if r.path.endswith("/subjectaccessreviews")]
    assert reviews[-1].body["spec"]["nonResourceAttributes"] == {"path": "/metrics", "verb": "get"}
    assert reviews[-1].body["spec"]["user"] == READER["username"]


def test_metrics_auth_needs_cluster_access(setup: Setup) -> None:
    server = start_server(setup.root / "no-kube", policy=setup.policy, tenants=setup.tenants, tls=setup.tls,
                          ca_file=setup.ca.ca_file, wait_ready=False,
                          extra=("--metrics-port", str(free_port()), "--metrics-auth", "kubernetes"))
    try:
        assert wait_for(lambda: not server.alive())
        assert server.proc.returncode == 2
        assert "--metrics-auth kubernetes" in server.log()
    finally:
        server.stop()
