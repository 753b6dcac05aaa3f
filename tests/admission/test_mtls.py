"""Mutual TLS on the webhook port (--client-ca): a client without a certificate from the configured CA — any pod that
reaches the Service with a forged AdmissionReview — is refused during the handshake; the API server's client
certificate is accepted; the metrics port (probes, Prometheus) asks for none. The CA bundle is reloaded when it
changes, in both directions: a CA added is trusted, a CA rotated out is refused, a broken bundle changes nothing."""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

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


def _accepted(server: Server, cert: tuple[str, str]) -> bool:
    try:
        with _client(server, cert) as client:
            return server.review(review(gpu_pod("r", "acme", 1), dry_run=True), client)["allowed"] is True
    except httpx.TransportError:
        return False


def _replace(path: Path, text: str) -> None:
    """As a Secret volume changes: the new file appears whole (written aside, then renamed over the old one)."""
    aside = path.with_suffix(".new")
    aside.write_text(text)
    os.replace(aside, path)


def _reload_failures(port: int, setup: Setup) -> float:
    with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=verifier(setup.ca.ca_file)) as client:
        text = client.get("/metrics").text
    match = re.search(r'^gpuquota_errors_total{type="reload_failed"} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_the_client_ca_bundle_is_reloaded_both_ways(setup: Setup) -> None:
    """The API server's client CA rotated as a Secret would be: the new CA added beside the old (both trusted),
    then the old one removed (refused from the next handshake, no restart). A bundle with no certificate is
    rejected with a count and a log line, and the last good one stays."""
    pki = setup.root / "rotation-pki"
    old_ca, new_ca = make_ca(pki, "old-clients"), make_ca(pki, "new-clients")
    old_cert, old_key = old_ca.issue(pki, "apiserver-old")
    new_cert, new_key = new_ca.issue(pki, "apiserver-new")
    old, new = (str(old_cert), str(old_key)), (str(new_cert), str(new_key))
    bundle = pki / "client-ca.crt"
    bundle.write_text(old_ca.ca_file.read_text())
    port = free_port()
    server = start_server(setup.root / "mtls-rotation", policy=setup.policy, tenants=setup.tenants, tls=setup.tls,
                          ca_file=setup.ca.ca_file, wait_ready=False,
                          extra=("--client-ca", str(bundle), "--metrics-port", str(port)))
    try:
        assert wait_for(lambda: _healthy(port, setup), timeout_s=30), server.log()
        assert _accepted(server, old)
        assert not _accepted(server, new)

        _replace(bundle, old_ca.ca_file.read_text() + new_ca.ca_file.read_text())
        assert wait_for(lambda: _accepted(server, new), timeout_s=10), server.log()
        assert _accepted(server, old)

        _replace(bundle, new_ca.ca_file.read_text())
        assert wait_for(lambda: not _accepted(server, old), timeout_s=10), server.log()
        assert _accepted(server, new)

        _replace(bundle, "not a certificate\n")
        assert wait_for(lambda: _reload_failures(port, setup) >= 1, timeout_s=10), server.log()
        assert "rejected the new client CA bundle" in server.log()
        assert _accepted(server, new)
        assert not _accepted(server, old)
        assert server.alive()
    finally:
        server.stop()
