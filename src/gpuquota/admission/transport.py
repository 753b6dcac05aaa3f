"""The connection layer: one write per response, read deadlines, a connection cap, a TLS handshake deadline.

One write per response on the wire.

uvicorn hands a response to the transport in two writes (the status line and headers, then the body). Over TLS
each write becomes its own record and its own system call, which for a 200-byte AdmissionReview answer costs more
than building it. Writes made within one event-loop step are therefore gathered and written once, at the end of
the step; nothing waits longer than that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """Delegates to the real transport; ``write`` calls in the same loop step leave as one ``write``."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._pending.append(bytes(data))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()  # a response written just before a close must still leave
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a ``CoalescingTransport``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one client may hold of the server. The API server sends a review's headers and body at once over a
    handful of kept-alive connections; anything slower or more numerous is refused instead of held."""

    header_timeout_s: float = 10.0  # from the connection (or the first byte of a request) to its last header
    body_timeout_s: float = 10.0  # from the last header to the last byte of the body
    handshake_timeout_s: float = 5.0  # the TLS handshake, before the HTTP layer sees the connection
    max_connections: int = 512  # open connections; a new one beyond this is closed at once


@dataclass(slots=True)
class TransportStats:
    """Counters the transport keeps for the metrics endpoint (read at scrape time, never locked: one loop)."""

    refused: int = 0
    header_timeouts: int = 0
    body_timeouts: int = 0
    connections: set[Any] = field(default_factory=set)  # uvicorn's set of open connections, once one is made

    @property
    def open(self) -> int:
        return len(self.connections)


class GuardedHttpToolsProtocol(CoalescingHttpToolsProtocol):
    """The coalescing protocol with read deadlines and a connection cap (``limits``, ``stats``: set per server by
    ``guarded_protocol``). uvicorn itself only times out idle kept-alive connections: a client that never finishes
    its headers (slowloris) or its body would hold a connection, and its memory, forever."""

    limits: ConnectionLimits = ConnectionLimits()
    stats: TransportStats = TransportStats()
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.stats.connections = self.connections
        if len(self.connections) > self.limits.max_connections:
            self.stats.refused += 1
            self.transport.abort()
            return
        self._arm(self.limits.header_timeout_s, "headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm(self.limits.header_timeout_s, "headers")

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        self._arm(self.limits.body_timeout_s, "body")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm(self, delay: float, phase: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(delay, self._expired, phase)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, phase: str) -> None:
        self._deadline = None
        if phase == "headers":
            self.stats.header_timeouts += 1
        else:
            self.stats.body_timeouts += 1
        if not self.transport.is_closing():
            self.transport.abort()


def guarded_protocol(limits: ConnectionLimits, stats: TransportStats) -> type[GuardedHttpToolsProtocol]:
    """A protocol class bound to one server's limits and counters (uvicorn instantiates it per connection)."""
    return type("BoundGuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits, "stats": stats})


class GuardedLoop(uvloop.Loop):
    """uvloop with a TLS handshake deadline on every server it creates: uvicorn offers no setting for it, and
    asyncio's default of 60 s lets a client that never finishes its handshake hold a socket that long."""

    handshake_timeout_s: float = 5.0

    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_handshake_timeout", self.handshake_timeout_s)
        server: asyncio.Server = await super().create_server(*args, **kwargs)  # type: ignore[assignment]
        return server


def guarded_loop_factory(limits: ConnectionLimits) -> Callable[[], asyncio.AbstractEventLoop]:
    def new_loop() -> asyncio.AbstractEventLoop:
        loop = GuardedLoop()
        loop.handshake_timeout_s = limits.handshake_timeout_s
        return loop

    return new_loop
