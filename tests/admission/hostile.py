"""Hostile clients beside a normal one, for the bounded load test (tests/admission/test_hostile_load.py) and the
benchmark (bench/bench_hostile.py): what an attacker inside the cluster would send, each in its own thread until
told to stop, and a normal client whose review latencies are what the test and the benchmark look at.

- ``slowloris``: connections that send half a request's headers and then nothing (re-opened when closed);
- ``deep_json``: reviews nested 100,000 levels deep (a 400 each);
- ``large_selector``: server-side dry runs whose GPU product selector is ~1 MB of stacked ``-SHARED`` suffixes
  (a tenant can send these through the API server, so they carry its client certificate);
- ``forged``: AdmissionReviews from a pod without the API server's client certificate (refused in the handshake
  when mutual TLS is on).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.admission.reviews import gpu_pod, review


@dataclass
class Target:
    host: str
    port: int
    ca_file: str
    client_cert: tuple[str, str] | None = None  # the API server's, when the webhook asks for one

    def context(self, with_cert: bool = True) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if with_cert and self.client_cert is not None:
            context.load_cert_chain(*self.client_cert)
        return context

    def connection(self, with_cert: bool = True, timeout: float = 30.0) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.context(with_cert), timeout=timeout)


@dataclass
class Tally:
    sent: int = 0
    refused: int = 0  # closed, reset or refused in the handshake: what the server should do to these
    answered: dict[int, int] = field(default_factory=dict)  # HTTP status -> count
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int | None) -> None:
        with self.lock:
            self.sent += 1
            if status is None:
                self.refused += 1
            else:
                self.answered[status] = self.answered.get(status, 0) + 1


def normal_body(index: int) -> bytes:
    return json.dumps(review(gpu_pod(f"normal-{index}", "acme", 1), dry_run=True)).encode()


def _post(conn: http.client.HTTPSConnection, body: bytes) -> tuple[int, bytes]:
    conn.request("POST", "/validate", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, response.read()


def _loop(stop: threading.Event, tally: Tally, send: Callable[[], int | None]) -> None:
    while not stop.is_set():
        try:
            status = send()
        except (OSError, http.client.HTTPException):
            status = None
            time.sleep(0.01)
        tally.add(status)


def slowloris(target: Target, stop: threading.Event, tally: Tally, sockets: int = 20) -> None:
    held: list[socket.socket] = []
    while not stop.is_set():
        while len(held) < sockets and not stop.is_set():
            try:
                raw = socket.create_connection((target.host, target.port), timeout=5)
                sock: socket.socket = target.context(with_cert=False).wrap_socket(raw, server_hostname=target.host)
                sock.sendall(b"POST /validate HTTP/1.1\r\nHost: webhook\r\nContent-Type: appl")
                sock.setblocking(False)
                held.append(sock)
                tally.add(0)
            except (OSError, ssl.SSLError):
                tally.add(None)
                time.sleep(0.05)
        alive: list[socket.socket] = []
        for open_sock in held:
            try:
                if open_sock.recv(1) == b"":
                    open_sock.close()  # closed by the server: the attacker opens another
                    continue
            except (BlockingIOError, ssl.SSLWantReadError):
                pass
            except (OSError, ssl.SSLError):
                open_sock.close()
                continue
            alive.append(open_sock)
        held = alive
        time.sleep(0.05)
    for open_sock in held:
        open_sock.close()


def deep_json(target: Target, stop: threading.Event, tally: Tally) -> None:
    body = (b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":' + b"[" * 100_000
            + b"]" * 100_000 + b"}")
    conn = target.connection()

    def send() -> int:
        return _post(conn, body)[0]

    _loop(stop, tally, send)
    conn.close()


def large_selector(target: Target, stop: threading.Event, tally: Tally) -> None:
    conn = target.connection()

    def send() -> int:
        pod: dict[str, Any] = gpu_pod(f"big-{uuid.uuid4().hex[:8]}", "acme", 1)
        pod["spec"]["nodeSelector"] = {"nvidia.com/gpu.product": "NVIDIA-H100" + "-SHARED" * 140_000 + uuid.uuid4().hex}
        return _post(conn, json.dumps(review(pod, dry_run=True)).encode())[0]

    _loop(stop, tally, send)
    conn.close()


def forged(target: Target, stop: threading.Event, tally: Tally) -> None:
    body = json.dumps(review(gpu_pod("phantom", "deny", 8))).encode()

    def send() -> int:
        conn = target.connection(with_cert=False, timeout=5)
        try:
            return _post(conn, body)[0]
        finally:
            conn.close()

    _loop(stop, tally, send)


ATTACKS: dict[str, Callable[[Target, threading.Event, Tally], None]] = {
    "slowloris": slowloris, "deep_json": deep_json, "large_selector": large_selector, "forged": forged,
}


def start_attacks(target: Target, names: list[str]) -> tuple[threading.Event, dict[str, Tally], list[threading.Thread]]:
    stop = threading.Event()
    tallies = {name: Tally() for name in names}
    threads = [threading.Thread(target=ATTACKS[name], args=(target, stop, tallies[name]), daemon=True, name=name)
               for name in names]
    for thread in threads:
        thread.start()
    return stop, tallies, threads


def normal_reviews(target: Target, count: int | None = None, seconds: float | None = None) -> list[float]:
    """Sequential dry-run reviews over one kept-alive connection; the latency of each, in seconds. Each answer is
    checked: an allowed AdmissionReview for its uid."""
    latencies: list[float] = []
    conn = target.connection()
    deadline = None if seconds is None else time.monotonic() + seconds
    index = 0
    try:
        while (count is None or index < count) and (deadline is None or time.monotonic() < deadline):
            body = normal_body(index)
            started = time.perf_counter()
            status, data = _post(conn, body)
            latencies.append(time.perf_counter() - started)
            assert status == 200, data[:300]
            answer = json.loads(data)["response"]
            assert answer["allowed"] is True, answer
            assert answer["uid"] == json.loads(body)["request"]["uid"]
            index += 1
    finally:
        conn.close()
    return latencies


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
