"""``/metrics`` plus JSON health endpoints on a small threaded HTTP server, for the processes that are not the
webhook (the node agent, the reconciler). prometheus_client's own exposition server answers every path with the
metrics and cannot route, and a framework is too much for a handful of GET paths; this is the one such server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

# A probe: whether the process passes it, and a JSON body saying why (served with 200 or 503).
Check = Callable[[], tuple[bool, dict[str, Any]]]


class ProbeServer:
    """Serves ``registry`` on ``/metrics`` and each of ``checks`` on its path; anything else is a 404.

    ``port`` 0 picks a free port (see ``.port``). Requests are handled in daemon threads, so a slow check (a ledger
    ping) never blocks a scrape; ``stop`` closes the socket."""

    def __init__(
        self, registry: CollectorRegistry, checks: Mapping[str, Check], host: str, port: int, *, name: str = "probes"
    ) -> None:
        self.registry = registry
        self.checks = dict(checks)
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"{name}-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        registry, checks = self.registry, self.checks

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: no access log
                pass

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path in checks:
                    ok, body = checks[path]()
                    self._send(200 if ok else 503, json.dumps(body).encode(), "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain")

        return Handler

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
