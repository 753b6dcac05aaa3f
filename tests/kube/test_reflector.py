"""The one list-and-watch loop: backoff with jitter, relist on 410, failures reported (never a dead thread), recovery
when the credential or the permission comes back, token rotation under a running watch, a clean stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from gpuquota.kube import KubeClient, KubeError
from gpuquota.kube.api import JsonObject, WatchEvent
from gpuquota.kube.health import WatchHealth
from gpuquota.kube.reflector import Backoff, Reflector
from gpuquota.testing import FakeKube
from tests.kube.apiserver import ApiState, api_server

NODES = "/api/v1/nodes"


class Names:
    """A store that keeps object names, as the caches do with their own shapes."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.replaced = 0

    def replace(self, items: list[JsonObject]) -> None:
        self.names = {i["metadata"]["name"] for i in items}
        self.replaced += 1

    def apply(self, event: WatchEvent) -> None:
        name = event.object["metadata"]["name"]
        if event.type == "DELETED":
            self.names.discard(name)
        else:
            self.names.add(name)


def node(name: str) -> dict[str, Any]:
    return {"kind": "Node", "metadata": {"name": name}}


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


@given(st.floats(0.01, 5), st.floats(5, 60), st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=20))
def test_backoff_is_jittered_and_doubles_to_a_cap(initial: float, cap: float, draws: list[float]) -> None:
    rolls = iter([*draws, 0.5])
    backoff = Backoff(initial, cap, random=lambda: next(rolls))
    ceiling = initial
    for _ in draws:
        wait = backoff.next()
        assert ceiling / 2 <= wait <= ceiling
        ceiling = min(ceiling * 2, cap)
    backoff.reset()
    assert backoff.next() <= initial


@pytest.fixture
def running() -> Iterator[Callable[[Reflector], threading.Thread]]:
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(reflector: Reflector) -> threading.Thread:
        thread = threading.Thread(target=reflector.run, args=(stop,), daemon=True)
        thread.start()
        threads.append(thread)
        return thread

    yield start
    stop.set()
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive(), "the loop did not stop"


def fast(kube: Any, store: Names, health: WatchHealth, **kwargs: Any) -> Reflector:
    return Reflector(kube, NODES, store, name="nodes", health=health, idle_wait_s=0.01,
                     backoff=Backoff(0.01, 0.05), **kwargs)


def test_a_refused_permission_is_reported_at_once_and_the_loop_recovers(
    running: Callable[[Reflector], threading.Thread],
) -> None:
    kube, store, health = FakeKube(), Names(), WatchHealth(grace_s=3600)
    kube.put(f"{NODES}/a", node("a"))
    kube.fail_next(*[KubeError(403, 'nodes is forbidden: User "gq" cannot list resource "nodes"')] * 3)
    thread = running(fast(kube, store, health))
    eventually(lambda: "nodes" in health.problems() or not kube.errors)
    assert health.failing()["nodes"].denied
    eventually(lambda: store.names == {"a"})
    assert thread.is_alive()
    assert health.problems() == {}  # the permission came back: nothing failing any more
    kube.put(f"{NODES}/b", node("b"))
    eventually(lambda: store.names == {"a", "b"})


def test_transport_failures_count_against_readiness_only_after_the_grace() -> None:
    now = [0.0]
    health = WatchHealth(grace_s=30, monotonic=lambda: now[0])
    health.failed("nodes", KubeError(0, "connection refused"))
    assert health.problems() == {}
    now[0] = 31
    assert health.problems() == {"nodes": "transport: connection refused"}
    health.failed("jobs.batch in a", KubeError(404, "the server could not find the requested resource"),
                  label="jobs.batch")
    now[0] = 1000
    assert set(health.problems()) == {"nodes"}  # a kind that is not installed is the cluster's shape, not a fault
    health.ok("nodes")
    assert health.problems() == {}


def test_metrics_show_which_watch_fails_and_why() -> None:
    health = WatchHealth()
    registry = CollectorRegistry()
    registry.register(health.collector())
    health.ok("namespaces")
    health.failed("pods in a", KubeError(403, "forbidden"), label="pods")
    health.ok("pods in b", label="pods")
    text = generate_latest(registry).decode()
    assert 'gpuquota_kube_watch_up{watch="namespaces"} 1.0' in text
    assert 'gpuquota_kube_watch_up{watch="pods"} 0.0' in text
    assert 'gpuquota_kube_watch_failures_total{reason="forbidden",watch="pods"} 1.0' in text
    health.forget("pods in a")
    assert 'gpuquota_kube_watch_up{watch="pods"} 1.0' in generate_latest(registry).decode()


def test_a_crashing_store_does_not_kill_the_loop(running: Callable[[Reflector], threading.Thread]) -> None:
    kube, health = FakeKube(), WatchHealth(grace_s=0)

    class Flaky(Names):
        def replace(self, items: list[JsonObject]) -> None:
            if self.replaced == 0:
                self.replaced += 1
                raise RuntimeError("a bug in a store")
            super().replace(items)

    store = Flaky()
    kube.put(f"{NODES}/a", node("a"))
    running(fast(kube, store, health))
    eventually(lambda: store.names == {"a"})
    assert health.problems() == {}


def test_relists_on_gone_and_rewatches_from_the_version_after_other_errors() -> None:
    kube, store = FakeKube(), Names()
    kube.put(f"{NODES}/a", node("a"))
    reflector = Reflector(kube, NODES, store, name="nodes", resync_s=3600)
    assert reflector.poll(0)
    assert reflector.relists == 1
    kube.put(f"{NODES}/b", node("b"))
    kube.fail_next(KubeError(503, "etcd unavailable"))
    assert not reflector.poll(0)
    assert not reflector.current
    assert reflector.listed
    assert reflector.poll(0)
    assert reflector.relists == 1
    assert store.names == {"a", "b"}
    assert reflector.current
    kube.delete(f"{NODES}/a")
    kube.compact()
    kube.put(f"{NODES}/c", node("c"))
    kube.compact()
    assert reflector.poll(0)
    assert reflector.relists == 2  # 410 Gone: listed again, the deletion seen
    assert store.names == {"b", "c"}


def test_a_rotated_token_under_a_running_watch(
    tmp_path: Path, running: Callable[[Reflector], threading.Thread]
) -> None:
    state = ApiState()
    state.put(f"{NODES}/a", node("a"))
    token = tmp_path / "token"
    token.write_text(state.token)
    store, health = Names(), WatchHealth(grace_s=0)
    with api_server(state) as url, KubeClient.connect(url, token) as kube:
        running(fast(kube, store, health, watch_timeout_s=1))
        eventually(lambda: store.names == {"a"})
        state.token = "rotated"  # the old token is refused from the next request on
        token.write_text("rotated")
        state.put(f"{NODES}/b", node("b"))
        eventually(lambda: store.names == {"a", "b"})
        assert state.requests[-1].headers["Authorization"] == "Bearer rotated"
        assert health.problems() == {}


def test_stop_ends_the_loop_during_its_backoff(running: Callable[[Reflector], threading.Thread]) -> None:
    kube = FakeKube()
    kube.fail_next(*[KubeError(0, "connection refused")] * 1000)
    reflector = Reflector(kube, NODES, Names(), name="nodes", backoff=Backoff(60, 60))
    stop = threading.Event()
    thread = threading.Thread(target=reflector.run, args=(stop,), daemon=True)
    thread.start()
    eventually(lambda: reflector.last_error is not None)
    started = time.monotonic()
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 2
