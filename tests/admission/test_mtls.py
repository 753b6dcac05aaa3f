"""Mutual TLS on the webhook port (--client-ca): a client without a certificate from the configured CA — any pod that
reaches the Service with a forged AdmissionReview — is refused during the handshake; the API server's client
certificate is accepted; the metrics port (probes, Prometheus) asks for none."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import httpx
import pytest

from tests.admission.conftest import Setup
from tests.admission.pki import make_ca
from tests.admission.reviews import gpu_pod, review
from tests.admission.serverproc import Server, free_port, start_server, verifier, wait_for


@pytest.fixture(scope="module")
def mutual(setup: Setup) -> Iterator[tuple[Server, tuple[str, str], tuple[str, str], int]]:
    clients = make_ca(setup.root / "client-pki", "clients")
    apiserver = clients.issue(setup.root / "client-pki", "kube-apiserver")
    rogue_ca = make_ca(setup.root / "rogue-pki", "rogue")
    rogue = rogue_ca.issue(setup.root / "rogue-pki", "rogue-client")
    port = free_port()
    server = start_server(setup.root / "mtls", policy=setup.policy, tenants=setup.tenants, tls=setup.tls,
                          ca_file=setup.ca.ca_file, wait_ready=False,
                          extra=("--client-ca", str(clients.ca_file), "--metrics-port", str(port)))
    try:
        assert wait_for(lambda: _healthy(port, setup), timeout_s=30), server.log()
        yield server, (str(apiserver[0]), str(apiserver[1])), (str(rogue[0]), str(rogue[1])), port
    finally:
        server.stop()


def _healthy(port: int, setup: Setup) -> bool:
    try:
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=verifier(setup.ca.ca_file)) as probe:
            return probe.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


def _client(server: Server, cert: tuple[str, str] | None) -> httpx.Client:
    assert server.ca_file is not None
    context = ssl.create_default_context(cafile=str(server.ca_file))
    if cert is not None:
        context.load_cert_chain(*cert)
    return httpx.Client(base_url=server.base_url, verify=context, timeout=10)


def test_the_api_servers_certificate_is_accepted(mutual: tuple[Server, tuple[str, str], tuple[str, str], int]) -> None:
    server, apiserver, _, _ = mutual
    with _client(server, apiserver) as client:
        assert server.review(review(gpu_pod("m", "acme", 1), dry_run=True), client)["allowed"] is True


@pytest.mark.parametrize("who", ["no certificate", "another CA"])
def test_forged_reviews_without_the_right_certificate_are_refused_in_the_handshake(
    mutual: tuple[Server, tuple[str, str], tuple[str, str], int], who: str
) -> None:
    server, _, rogue, _ = mutual
    with _client(server, rogue if who == "another CA" else None) as client, pytest.raises(httpx.TransportError):
        server.post(review(gpu_pod("forged", "acme", 8)), client)
    assert server.alive()


def test_probes_need_no_client_certificate_on_the_metrics_port(
    mutual: tuple[Server, tuple[str, str], tuple[str, str], int]
) -> None:
    server, _, _, port = mutual
    with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=verifier(server.ca_file)) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200
