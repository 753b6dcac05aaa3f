"""The metrics and probe port (``--metrics-port``): ``/metrics``, authenticated when asked, and ``/healthz`` /
``/readyz``, never authenticated (the kubelet probes them).

A listener of its own so that neither can be reached through the webhook port (which any pod that reaches the
Service could call), and so that the probes stay fast while the webhook port is under attack: its connection cap,
read deadlines and event-loop turns are shared, but its connection slots are not.
"""

from __future__ import annotations

import asyncio
from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.types import ASGIApp, Receive, Scope, Send

from gpuquota.admission.app import Readiness, probe
from gpuquota.admission.metrics_auth import KubernetesMetricsAuth

_TEXT: Final = b"text/plain; charset=utf-8"


async def _answer(send: Send, status: int, body: bytes, content_type: bytes = _TEXT,
                  extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_metrics_app(registry: CollectorRegistry, readiness: Readiness,
                       auth: KubernetesMetricsAuth | None = None) -> ASGIApp:
    """``auth`` None: plain metrics (local use); else every ``/metrics`` request needs an authorised bearer token."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        answered = probe(path, readiness)
        if answered is not None:
            await _answer(send, answered[0], answered[1], answered[2])
            return
        if path != "/metrics":
            await _answer(send, 404, b"not found\n")
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _answer(send, 405, b"GET /metrics\n")
            return
        if auth is not None:
            header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
            verdict = await asyncio.to_thread(auth.check, header)
            if not verdict.allowed:
                extra = [(b"www-authenticate", b'Bearer realm="gpuquota metrics"')] if verdict.status == 401 else []
                await _answer(send, verdict.status, verdict.reason.encode() + b"\n", extra=extra)
                return
        await _answer(send, 200, generate_latest(registry), CONTENT_TYPE_LATEST.encode())

    return app
