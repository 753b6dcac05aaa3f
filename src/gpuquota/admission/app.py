"""The HTTP surface: a FastAPI app for health, readiness and metrics, with ``POST /validate`` answered by a raw
ASGI handler in front of it.

Why the split: FastAPI's request machinery (routing, dependency resolution, pydantic) costs more than deciding an
admission does, and ``/validate`` is the path under load. The raw handler reads the body itself, so it can refuse
an oversized body while it streams in (the ``Content-Length`` header is checked first; chunked bodies are counted
as they arrive) and never buffers more than the limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Receive, Scope, Send

from gpuquota.admission.handler import Admission, Pending, Reply, bad_request

MAX_BODY_BYTES: Final = 3 * 1024 * 1024
VALIDATE_PATH: Final = "/validate"

# Runs the ledger part of a review: inline (SQLite) or in a thread pool (PostgreSQL).
LedgerRunner = Callable[[Callable[[], Reply]], Awaitable[Reply]]

_JSON_HEADERS: Final = [(b"content-type", b"application/json")]
_CLOSE_HEADERS: Final = [(b"content-type", b"application/json"), (b"connection", b"close")]


async def run_inline(work: Callable[[], Reply]) -> Reply:
    return work()


def thread_pool_runner(loop_executor: Any) -> LedgerRunner:
    async def run(work: Callable[[], Reply]) -> Reply:
        return await asyncio.get_running_loop().run_in_executor(loop_executor, work)

    return run


class Readiness:
    """What ``/readyz`` reports: set by the server's background checks, read by the probe (no I/O per probe)."""

    def __init__(self) -> None:
        self.ledger_ok = False
        self.ledger_error = "not checked yet"
        self.policy_loaded = False
        self.namespaces_synced: Callable[[], bool] = lambda: True
        self.kube_problems: Callable[[], dict[str, str]] = dict  # watch → why it fails (``WatchHealth.problems``)

    def problems(self) -> list[str]:
        out = []
        if not self.policy_loaded:
            out.append("policy not loaded")
        if not self.ledger_ok:
            out.append(f"ledger unreachable: {self.ledger_error}")
        if not self.namespaces_synced():
            out.append("namespace cache not synced yet")
        out.extend(f"watch {name} failing: {why}" for name, why in self.kube_problems().items())
        return out


_PLAIN: Final = b"text/plain; charset=utf-8"
_JSON: Final = b"application/json"
_encode: Final = msgspec.json.Encoder().encode


def probe(path: str, readiness: Readiness) -> tuple[int, bytes, bytes] | None:
    """(status, body, content type) of a probe path, ``None`` for any other path: the same answers on the webhook
    port and on the metrics port. Neither reads anything but ``readiness`` (no I/O per probe)."""
    if path == "/healthz":
        return 200, b"ok\n", _PLAIN
    if path == "/readyz":
        problems = readiness.problems()
        if problems:
            return 503, _encode({"ready": False, "problems": problems}), _JSON
        return 200, b'{"ready":true}', _JSON
    return None


async def settle(result: Reply | Pending, run_ledger: LedgerRunner) -> Reply:
    """The answer to a review: at once, or after its ledger part (and, for a /scale request, its API call, which
    never runs on the event loop)."""
    if not isinstance(result, Pending):
        return result
    if result.blocking:
        return await asyncio.to_thread(result.run)
    return await run_ledger(result.run)


def create_app(admission: Admission, readiness: Readiness, run_ledger: LedgerRunner = run_inline,
               max_body_bytes: int = MAX_BODY_BYTES, *, serve_metrics: bool = True) -> ASGIApp:
    """``serve_metrics`` False: ``/metrics`` lives on its own port (``metrics_listener``) and is 404 here."""
    api = FastAPI(title="gpuquota webhook", docs_url=None, redoc_url=None, openapi_url=None)

    def probed(path: str) -> Response:
        answered = probe(path, readiness)
        assert answered is not None
        return Response(answered[1], status_code=answered[0], media_type=answered[2].decode())

    @api.get("/healthz")
    def healthz() -> Response:
        return probed("/healthz")

    @api.get("/readyz")
    def readyz() -> Response:
        return probed("/readyz")

    if serve_metrics:
        @api.get("/metrics")
        def metrics() -> Response:
            return Response(generate_latest(admission.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @api.post(VALIDATE_PATH)
    def _documented() -> None:  # pragma: no cover - shadowed by the raw handler; kept so routes list it
        raise AssertionError("served by the raw ASGI handler")

    async def respond(send: Send, reply: Reply, close: bool = False) -> None:
        headers = _CLOSE_HEADERS if close else _JSON_HEADERS
        await send({"type": "http.response.start", "status": reply.status,
                    "headers": [*headers, (b"content-length", str(len(reply.body)).encode())]})
        await send({"type": "http.response.body", "body": reply.body})

    async def validate(scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        if scope["method"] != "POST":
            await respond(send, Reply(405, b'{"error":"method_not_allowed","message":"POST an AdmissionReview"}'))
            return
        too_big = bad_request(f"request body larger than the {max_body_bytes // (1024 * 1024)} MiB limit")
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await respond(send, bad_request("invalid Content-Length header"), close=True)
                    return
                if declared > max_body_bytes:
                    admission.metrics.errors.labels("bad_request").inc()
                    await respond(send, too_big, close=True)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_body_bytes:
                admission.metrics.errors.labels("bad_request").inc()
                await respond(send, too_big, close=True)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        result = admission.begin(body, started)
        reply = await settle(result, run_ledger)
        await respond(send, reply)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == VALIDATE_PATH:
            await validate(scope, receive, send)
        else:
            await api(scope, receive, send)

    return app
