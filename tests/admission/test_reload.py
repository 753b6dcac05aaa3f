"""Live changes under a running server: policy and tenants files reloaded (a broken one rejected, the last good
one kept), the TLS certificate rotated in place, and a ledger that is down (fail closed for GPU workloads only)."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.admission.conftest import Setup
from tests.admission.pki import make_ca
from tests.admission.reviews import cpu_pod, gpu_pod, review
from tests.admission.serverproc import TEST_POLICY, Server, free_port, start_server, tenants_yaml, wait_for


@pytest.fixture
def own_server(setup: Setup, tmp_path: Path) -> Iterator[tuple[Server, Path, Path]]:
    """A server of its own with copies of the policy and tenants files the test may rewrite."""
    policy = tmp_path / "policy.yaml"
    tenants = tmp_path / "tenants.yaml"
    shutil.copy(setup.policy, policy)
    shutil.copy(setup.tenants, tenants)
    server = start_server(tmp_path / "srv", policy=policy, tenants=tenants, tls=setup.tls, ca_file=setup.ca.ca_file)
    try:
        yield server, policy, tenants
    finally:
        server.stop()


def _counter(text: str, name: str, labels: str) -> float:
    match = re.search(rf"^{re.escape(name)}{{{re.escape(labels)}}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_broken_policy_is_rejected_and_the_last_good_one_stays(own_server: tuple[Server, Path, Path]) -> None:
    server, policy, _ = own_server
    assert server.review(review(gpu_pod("p", "reload", 17)))["allowed"] is False  # cap 16
    policy.write_text(TEST_POLICY.replace("amount: 253312", "amount: -5"))
    assert wait_for(lambda: _counter(server.metrics(), "gpuquota_errors_total", 'type="reload_failed"') >= 1)
    assert "rejected the new policy file" in server.log()
    assert "amount" in server.log()  # the log line says what is wrong
    answer = server.review(review(gpu_pod("p", "reload", 17)))
    assert answer["allowed"] is False
    assert "tenant-cap" in answer["status"]["message"]
    assert server.client().get("/readyz").status_code == 200
    # a good new version takes over
    policy.write_text(TEST_POLICY.replace("amount: 253312", "amount: 506624").replace('version: "1"', 'version: "2"'))
    assert wait_for(lambda: 'gpuquota_policy_info{profile="webhook-test",version="2"} 1.0' in server.metrics())
    assert 'version="1"' not in server.metrics().split("gpuquota_policy_info", 1)[1].split("\n# ", 1)[0]
    assert server.review(review(gpu_pod("p", "reload", 17)))["allowed"] is True


def test_tenants_file_is_reloaded_and_a_broken_one_rejected(own_server: tuple[Server, Path, Path]) -> None:
    server, _, tenants = own_server
    assert server.review(review(gpu_pod("p", "newcomer", 1), dry_run=True))["allowed"] is False  # no jurisdiction
    tenants.write_text("tenants:\n  - name: newcomer\n    jurisdiction: UK\n    namespaces: [newcomer]\n")  # not ISO
    assert wait_for(lambda: "rejected the new tenants file" in server.log())
    assert server.review(review(gpu_pod("p", "acme", 1), dry_run=True))["allowed"] is True  # old file in force
    tenants.write_text(tenants_yaml(["newcomer:FR"]))
    assert wait_for(lambda: server.review(review(gpu_pod("p", "newcomer", 1), dry_run=True))["allowed"])


def _served_cert_issuer(url: str) -> str:
    host, port = url.removeprefix("https://").split(":")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, int(port))) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    from cryptography import x509  # noqa: PLC0415 - only this test parses certificates

    return x509.load_der_x509_certificate(der).issuer.rfc4514_string()


def test_tls_certificate_is_reloaded_when_the_files_change(setup: Setup, tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    first_ca = make_ca(pki, "first")
    second_ca = make_ca(pki, "second")
    cert, key = first_ca.issue(pki, "live")
    server = start_server(tmp_path / "srv", policy=setup.policy, tenants=setup.tenants, tls=(cert, key),
                          ca_file=first_ca.ca_file)
    try:
        assert "first" in _served_cert_issuer(server.base_url)
        keep_alive = server.client()
        assert keep_alive.get("/healthz").status_code == 200
        # a half-done rotation (new certificate, old key) is rejected and the old chain keeps serving
        new_cert, new_key = second_ca.issue(pki, "next")
        cert.write_bytes(new_cert.read_bytes())
        assert wait_for(lambda: "rejected the new TLS certificate" in server.log())
        assert "first" in _served_cert_issuer(server.base_url)
        # the key lands: the new chain is served to new connections, without a restart
        key.write_bytes(new_key.read_bytes())
        assert wait_for(lambda: "second" in _served_cert_issuer(server.base_url))
        with httpx.Client(base_url=server.base_url, verify=ssl.create_default_context(cafile=str(second_ca.ca_file))) \
                as client:
            assert client.get("/healthz").status_code == 200
        with pytest.raises(httpx.ConnectError), httpx.Client(
                base_url=server.base_url, verify=ssl.create_default_context(cafile=str(first_ca.ca_file))) as old:
            old.get("/healthz")
        assert server.alive()
    finally:
        server.stop()


def test_unreachable_ledger_fails_closed_for_gpu_workloads_only(setup: Setup, tmp_path: Path) -> None:
    dead = f"postgresql://gpuquota@127.0.0.1:{free_port()}/gpuquota?connect_timeout=1"
    server = start_server(tmp_path / "srv", ledger_url=dead, policy=setup.policy, tenants=setup.tenants,
                          tls=setup.tls, ca_file=setup.ca.ca_file)
    try:
        assert server.client().get("/healthz").status_code == 200
        ready = server.client().get("/readyz")
        assert ready.status_code == 503
        assert "ledger" in ready.json()["problems"][0]
        answer = server.review(review(gpu_pod("g", "ledgerdown", 1)))
        assert answer["allowed"] is False
        assert answer["status"]["code"] == 503
        assert "ledger" in answer["status"]["message"]
        assert "fail closed" in answer["status"]["message"]
        assert server.review(review(cpu_pod("web", "ledgerdown")))["allowed"] is True
        text = server.metrics()
        assert "gpuquota_ledger_up 0.0" in text
        assert _counter(text, "gpuquota_errors_total", 'type="ledger_unavailable"') >= 1
        assert server.alive()
    finally:
        server.stop()


def test_self_signed_certificate_is_generated_on_first_start_and_reused(setup: Setup, tmp_path: Path) -> None:
    workdir = tmp_path / "srv"
    cert = workdir / "state" / "tls" / "tls.crt"
    server = start_server(workdir, policy=setup.policy, tenants=setup.tenants, self_signed=True)
    try:
        assert cert.is_file()
        assert (workdir / "state" / "tls" / "tls.key").stat().st_mode & 0o077 == 0  # key readable by owner only
        assert server.client().get("/healthz").status_code == 200  # verified against the generated certificate
    finally:
        server.stop()
    first = cert.read_bytes()
    again = start_server(workdir, policy=setup.policy, tenants=setup.tenants, self_signed=True)
    try:
        assert cert.read_bytes() == first
        assert again.review(review(gpu_pod("p", "tls", 1)))["allowed"] is True
    finally:
        again.stop()


def test_a_local_catalog_file_is_reloaded_and_a_broken_one_rejected(setup: Setup, tmp_path: Path) -> None:
    from gpuquota.admission.live import LiveConfig  # noqa: PLC0415 - only this test builds one directly

    catalog = tmp_path / "catalog.yaml"
    row = ("schema: 2\nsources: [{id: acme, title: Acme datasheet}]\ngpus:\n"
           "  - {key: Acme-X1, vendor: nvidia, names: [NVIDIA Acme X1], source: mine,\n"
           "     dense: {fp8: {tflops: TFLOPS, source: acme, confidence: P}}}\n")
    catalog.write_text(row.replace("TFLOPS", "9000"))
    rejected: list[str] = []
    live = LiveConfig(str(setup.policy), None, on_reload_failed=lambda what, _msg: rejected.append(what),
                      catalog_path=catalog)
    first = live.current.catalog.get("Acme-X1")
    assert first is not None
    assert (first.tpp, first.local) == (72_000, True)
    catalog.write_text(row.replace("TFLOPS", "10000") + "\n")
    assert live.check() == ["catalog"]
    second = live.current.catalog.get("Acme-X1")
    assert second is not None
    assert second.tpp == 80_000
    catalog.write_text(row.replace("TFLOPS", "-1"))
    assert live.check() == []
    assert rejected == ["catalog"]
    assert live.current.catalog.get("Acme-X1") is second  # the last good catalog stays in force
