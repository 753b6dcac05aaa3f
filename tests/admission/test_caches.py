"""The webhook's in-memory helpers: namespaces followed through list+watch, owners of controller-made objects, and
the transport that writes each response once."""

from __future__ import annotations

import asyncio
import threading
import time

from gpuquota.admission.namespaces import NamespaceCache
from gpuquota.admission.owners import OwnerCache, OwnerRef
from gpuquota.admission.transport import CoalescingTransport
from gpuquota.kube import KubeError
from gpuquota.testing import FakeKube


def _ns(name: str, **labels: str) -> dict[str, object]:
    return {"metadata": {"name": name, "labels": labels}}


def test_namespace_cache_lists_watches_and_keeps_only_gpuquota_labels() -> None:
    kube = FakeKube()
    kube.put("/api/v1/namespaces/a", _ns("a", **{"gpuquota.io/jurisdiction": "JP", "team": "x"}))
    kube.put("/api/v1/namespaces/b", _ns("b"))
    cache = NamespaceCache()
    stop = threading.Event()
    thread = threading.Thread(target=cache.run, args=(kube, stop), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not cache.synced and time.monotonic() < deadline:
            time.sleep(0.01)
        assert dict(cache.labels("a") or {}) == {"gpuquota.io/jurisdiction": "JP"}
        assert dict(cache.labels("b") or {}) == {}
        assert cache.labels("nope") is None
        kube.put("/api/v1/namespaces/b", _ns("b", **{"gpuquota.io/tenant": "acme"}))
        kube.delete("/api/v1/namespaces/a")
        while (cache.labels("a") is not None or not cache.labels("b")) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cache.labels("a") is None
        assert dict(cache.labels("b") or {}) == {"gpuquota.io/tenant": "acme"}
    finally:
        stop.set()
        thread.join(5)


def test_namespace_cache_relists_after_410_and_survives_api_errors() -> None:
    kube = FakeKube()
    kube.put("/api/v1/namespaces/a", _ns("a", **{"gpuquota.io/jurisdiction": "FR"}))
    kube.fail_next(KubeError(503, "apiserver restarting"))
    cache = NamespaceCache()
    stop = threading.Event()
    thread = threading.Thread(target=cache.run, args=(kube, stop), kwargs={"backoff_s": 0.01}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not cache.synced and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cache.synced
        kube.put("/api/v1/namespaces/c", _ns("c", **{"gpuquota.io/jurisdiction": "DE"}))
        kube.compact()  # the next watch from an old version gets 410 Gone: the cache lists again
        kube.put("/api/v1/namespaces/d", _ns("d", **{"gpuquota.io/jurisdiction": "IT"}))
        while cache.labels("d") is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert dict(cache.labels("c") or {}) == {"gpuquota.io/jurisdiction": "DE"}
        assert dict(cache.labels("d") or {}) == {"gpuquota.io/jurisdiction": "IT"}
    finally:
        stop.set()
        thread.join(5)


def test_owner_cache_expires_and_forgets() -> None:
    cache = OwnerCache(ttl_s=0.2, negative_ttl_s=0.05)
    ref = OwnerRef("batch", "Job", "j")
    assert cache.get("ns", ref) is None
    cache.put("ns", ref, True)
    cache.put("ns", OwnerRef("batch", "Job", "forged"), False)
    assert cache.get("ns", ref) is True
    assert cache.get("other-ns", ref) is None
    assert cache.get("ns", OwnerRef("batch", "Job", "forged")) is False
    time.sleep(0.06)
    assert cache.get("ns", OwnerRef("batch", "Job", "forged")) is None
    cache.forget("ns", "Job", "j")
    assert cache.get("ns", ref) is None
    cache.put("ns", ref, True)
    time.sleep(0.21)
    assert cache.get("ns", ref) is None


class _RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_writes_of_one_loop_step_leave_as_one_write() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes], bool, list[bytes]]:
        loop = asyncio.get_running_loop()
        raw = _RecordingTransport()
        transport = CoalescingTransport(raw, loop)  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b'{"response": {}}')
        before = list(raw.writes)
        await asyncio.sleep(0)
        after_step = list(raw.writes)
        transport.write(b"last")
        transport.close()  # a close right after a write still sends it
        assert transport.get_extra_info("peername") == "info:peername"  # everything else is delegated
        return before, after_step, raw.closed, raw.writes

    before, after_step, closed, final = asyncio.run(scenario())
    assert before == []
    assert after_step == [b'HTTP/1.1 200 OK\r\n\r\n{"response": {}}']
    assert closed
    assert final[-1] == b"last"


def test_abort_drops_what_was_not_written() -> None:
    async def scenario() -> _RecordingTransport:
        raw = _RecordingTransport()
        transport = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"never")
        transport.abort()
        await asyncio.sleep(0)
        return raw

    raw = asyncio.run(scenario())
    assert raw.aborted
    assert raw.writes == []
