"""Clients that try to hold the webhook: slow headers, slow bodies, silent TLS handshakes, more connections than
the cap. Each is closed by the server, counted in its metrics, and a normal review still gets its answer."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest

from tests.admission.conftest import Setup
from tests.admission.reviews import gpu_pod, review
from tests.admission.serverproc import Server, start_server, wait_for

READ_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 6


@pytest.fixture(scope="module")
def guarded(setup: Setup) -> Iterator[Server]:
    server = start_server(setup.root / "guarded", policy=setup.policy, tenants=setup.tenants, tls=setup.tls,
                          ca_file=setup.ca.ca_file,
                          extra=("--read-timeout", str(READ_TIMEOUT_S), "--max-connections", str(MAX_CONNECTIONS)))
    try:
        yield server
    finally:
        server.stop()


def _port(server: Server) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


def _tls(server: Server) -> ssl.SSLSocket:
    assert server.ca_file is not None
    context = ssl.create_default_context(cafile=str(server.ca_file))
    raw = socket.create_connection(("127.0.0.1", _port(server)), timeout=10)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _closed_by_server(sock: socket.socket) -> bool:
    """Blocks until the server closes the connection (EOF or reset) or 10 s pass (then False)."""
    sock.settimeout(10)
    try:
        while True:
            if not sock.recv(4096):
                return True
    except (ConnectionResetError, ssl.SSLError, ssl.SSLEOFError):
        return True
    except TimeoutError:
        return False


def _metric(server: Server, name: str, **labels: str) -> float:
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    with server.client() as client:  # closed at once: the cap counts every open connection
        text = client.get("/metrics").text
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0


def _still_serving(server: Server) -> None:
    with server.client() as client:
        assert server.review(review(gpu_pod("normal", "acme", 1), dry_run=True), client)["allowed"] is True


def test_unfinished_headers_are_closed_after_the_read_timeout(guarded: Server) -> None:
    before = _metric(guarded, "gpuquota_http_read_timeouts_total", listener="webhook", phase="headers")
    with _tls(guarded) as sock:
        sock.sendall(b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: app")  # and never the rest
        _still_serving(guarded)
        assert _closed_by_server(sock)
    assert _metric(guarded, "gpuquota_http_read_timeouts_total", listener="webhook", phase="headers") == before + 1


def test_a_connection_that_sends_nothing_is_closed(guarded: Server) -> None:
    with _tls(guarded) as sock:
        assert _closed_by_server(sock)


def test_an_unfinished_body_is_closed_after_the_read_timeout(guarded: Server) -> None:
    before = _metric(guarded, "gpuquota_http_read_timeouts_total", listener="webhook", phase="body")
    with _tls(guarded) as sock:
        sock.sendall(b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n{\"apiVersion\":")
        _still_serving(guarded)
        assert _closed_by_server(sock)
    assert _metric(guarded, "gpuquota_http_read_timeouts_total", listener="webhook", phase="body") == before + 1


def test_a_silent_tls_handshake_is_closed(guarded: Server) -> None:
    with socket.create_connection(("127.0.0.1", _port(guarded)), timeout=10) as raw:
        _still_serving(guarded)
        assert _closed_by_server(raw)


def test_connections_beyond_the_cap_are_closed_at_once(guarded: Server) -> None:
    before = _metric(guarded, "gpuquota_http_connections_refused_total", listener="webhook")
    held = [_tls(guarded) for _ in range(MAX_CONNECTIONS)]
    try:
        with _tls(guarded) as extra:  # the handshake completes; the HTTP layer then closes it unserved
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _closed_by_server(extra)
    finally:
        for sock in held:
            sock.close()
    assert wait_for(lambda: _metric(guarded, "gpuquota_http_connections_refused_total", listener="webhook")
                    == before + 1)
    _still_serving(guarded)


def test_caches_and_connections_are_exported(guarded: Server) -> None:
    _still_serving(guarded)
    with guarded.client() as client:
        text = client.get("/metrics").text
    for cache in ("model_resolution", "owners", "lws_statefulsets"):
        for series in (f'gpuquota_cache_requests_total{{cache="{cache}",result="hit"}}',
                       f'gpuquota_cache_evictions_total{{cache="{cache}"}}', f'gpuquota_cache_bytes{{cache="{cache}"}}',
                       f'gpuquota_cache_entries{{cache="{cache}"}}'):
            assert series in text, series
    assert _metric(guarded, "gpuquota_cache_entries", cache="model_resolution") >= 1
    assert _metric(guarded, "gpuquota_http_connections", listener="webhook") >= 1
