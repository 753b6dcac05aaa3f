"""Lease-based leader election: races, expiry, renew deadlines, conflicts, release — on ``FakeKube`` with injected
clocks, in real threads, and with the real client against the local API server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuquota.kube import KubeApi, KubeClient, KubeError, ObjectList, WatchEvent
from gpuquota.kube.leader import ElectionTiming, LeaderElector, lease_collection, micro_time
from gpuquota.testing import FakeKube
from tests.kube.apiserver import ApiState, api_server

NS = "gpuquota"
LEASE = f"{lease_collection(NS)}/gpuquota-reconciler"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    """One monotonic and one wall clock for every candidate, advanced by the test."""

    def __init__(self) -> None:
        self.t = 0.0

    def monotonic(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return T0 + timedelta(seconds=self.t)


def elector(kube: KubeApi, identity: str, clock: Clock, changes: list[tuple[str, bool]] | None = None) -> LeaderElector:
    def record(leader: bool) -> None:
        if changes is not None:
            changes.append((identity, leader))

    return LeaderElector(
        kube, "gpuquota-reconciler", NS, identity, clock=clock.wall, monotonic=clock.monotonic, on_change=record
    )


def lease(kube: KubeApi) -> dict[str, Any]:
    obj = kube.get(LEASE)
    assert obj is not None
    spec: dict[str, Any] = obj["spec"]
    return spec


def test_the_first_candidate_creates_the_lease_and_leads() -> None:
    kube, clock = FakeKube(), Clock()
    a = elector(kube, "pod-a", clock)
    assert a.tick()
    assert lease(kube) == {
        "holderIdentity": "pod-a",
        "leaseDurationSeconds": 15,
        "acquireTime": "2026-03-01T12:00:00.000000Z",
        "renewTime": "2026-03-01T12:00:00.000000Z",
        "leaseTransitions": 0,
    }
    clock.t = 2.5
    assert a.tick()
    spec = lease(kube)
    assert spec["renewTime"] == "2026-03-01T12:00:02.500000Z"
    assert spec["acquireTime"] == "2026-03-01T12:00:00.000000Z"  # a renewal is not a new acquisition


def _campaign(c: LeaderElector, barrier: threading.Barrier, results: dict[str, bool]) -> None:
    barrier.wait()
    results[c.identity] = c.tick()


def test_racing_candidates_elect_exactly_one() -> None:
    for _ in range(20):
        kube, clock = FakeKube(), Clock()
        candidates = [elector(kube, f"pod-{i}", clock) for i in range(6)]
        barrier = threading.Barrier(len(candidates))
        results: dict[str, bool] = {}
        threads = [threading.Thread(target=_campaign, args=(c, barrier, results)) for c in candidates]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        leaders = [name for name, leads in results.items() if leads]
        assert len(leaders) == 1, results
        assert lease(kube)["holderIdentity"] == leaders[0]


class Interleaving:
    """A ``KubeApi`` that runs ``between`` after the wrapped candidate's GET and before its write: the window in
    which another candidate can change the Lease."""

    def __init__(self, kube: FakeKube, between: Any) -> None:
        self.kube = kube
        self.between = between

    def get(self, path: str) -> dict[str, Any] | None:
        obj = self.kube.get(path)
        between, self.between = self.between, None
        if between is not None:
            between()
        return obj

    def list(self, path: str, label_selector: str | None = None) -> ObjectList:
        return self.kube.list(path, label_selector)

    def watch(self, path: str, resource_version: str, timeout_s: float = 300.0) -> Iterator[WatchEvent]:
        return self.kube.watch(path, resource_version, timeout_s)

    def patch(self, path: str, body: dict[str, Any], patch_type: str = "merge") -> dict[str, Any]:
        return self.kube.patch(path, body, patch_type)

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.kube.create(path, body)

    def replace(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.kube.replace(path, body)

    def delete(self, path: str) -> None:
        self.kube.delete(path)


def test_a_create_race_lost_is_not_leadership() -> None:
    kube, clock = FakeKube(), Clock()
    b = elector(kube, "pod-b", clock)
    a = elector(Interleaving(kube, b.tick), "pod-a", clock)  # a sees no Lease, then b creates it
    assert not a.tick()  # a's create gets 409
    assert b.is_leader
    assert lease(kube)["holderIdentity"] == "pod-b"


def test_a_stale_update_is_a_conflict_and_the_other_candidate_keeps_the_lease() -> None:
    kube, clock = FakeKube(), Clock()
    old = elector(kube, "pod-old", clock)
    assert old.tick()
    clock.t = 20.0  # pod-old is gone; the Lease has expired for anyone who watched it since t=0
    b = elector(kube, "pod-b", clock)
    a = elector(Interleaving(kube, b.tick), "pod-a", clock)
    a._observed, a._observed_at = ("pod-old", "2026-03-01T12:00:00.000000Z", 0), 0.0  # a watched it expire too
    b._observed, b._observed_at = a._observed, 0.0
    assert not a.tick()  # a read version N, b took the Lease, a's PUT with version N → 409
    assert b.is_leader
    assert not a.is_leader
    spec = lease(kube)
    assert spec["holderIdentity"] == "pod-b"
    assert spec["leaseTransitions"] == 1
    assert not a.tick()  # next try: a sees a live holder


def test_a_dead_leader_is_replaced_after_the_lease_expires() -> None:
    kube, clock = FakeKube(), Clock()
    changes: list[tuple[str, bool]] = []
    a, b = elector(kube, "pod-a", clock, changes), elector(kube, "pod-b", clock, changes)
    assert a.tick()
    assert not b.tick()  # b first sees the Lease at t=0
    clock.t = 14.9  # a stopped renewing at t=0
    assert not b.tick()
    clock.t = 15.0
    assert b.tick()
    spec = lease(kube)
    assert spec["holderIdentity"] == "pod-b"
    assert spec["leaseTransitions"] == 1
    assert spec["acquireTime"] == micro_time(T0 + timedelta(seconds=15))
    clock.t = 15.5  # a wakes up: it finds another holder and steps down at once, without waiting for a deadline
    assert not a.tick()
    assert changes == [("pod-a", True), ("pod-b", True), ("pod-a", False)]


def test_a_renewing_leader_is_never_replaced() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = elector(kube, "pod-a", clock), elector(kube, "pod-b", clock)
    assert a.tick()
    for step in range(1, 60):
        clock.t = step * 2.0
        assert a.tick()
        assert not b.tick()
    assert lease(kube)["leaseTransitions"] == 0


def test_a_leader_that_cannot_renew_steps_down_at_the_deadline_before_anyone_may_take_over() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = elector(kube, "pod-a", clock), elector(kube, "pod-b", clock)
    assert a.tick()
    assert not b.tick()
    for t in (2.0, 4.0, 6.0, 8.0, 9.9):
        clock.t = t
        kube.fail_next(KubeError(503, "etcdserver: request timed out"))
        assert a.tick(), t  # still within the renew deadline
    clock.t = 10.0
    kube.fail_next(KubeError(0, "connection refused"))
    assert not a.tick()  # stepped down at the renew deadline …
    assert not b.tick()  # … while the Lease is still b's to respect (until t=15): no overlap
    clock.t = 15.0
    assert b.tick()


def test_release_lets_a_follower_take_over_at_once() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = elector(kube, "pod-a", clock), elector(kube, "pod-b", clock)
    assert a.tick()
    assert not b.tick()
    clock.t = 1.0
    assert a.release()
    assert not a.is_leader
    assert lease(kube)["holderIdentity"] is None
    assert b.tick()  # no wait for expiry
    assert lease(kube)["leaseTransitions"] == 1
    assert not a.release()  # not the leader: nothing to release


def test_release_does_not_touch_a_lease_another_candidate_holds() -> None:
    kube, clock = FakeKube(), Clock()
    a = elector(kube, "pod-a", clock)
    assert a.tick()
    stolen = kube.get(LEASE)
    assert stolen is not None
    stolen["spec"]["holderIdentity"] = "pod-z"
    kube.put(LEASE, stolen)
    assert not a.release()
    assert lease(kube)["holderIdentity"] == "pod-z"


@pytest.mark.parametrize(("lease_s", "deadline_s", "retry_s"), [(15, 15, 2), (15, 10, 10), (15, 10, 0), (10, 15, 2)])
def test_timings_that_would_allow_two_leaders_are_refused(lease_s: float, deadline_s: float, retry_s: float) -> None:
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        ElectionTiming(lease_s, deadline_s, retry_s)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.floats(0.0, 6.0), st.booleans()),
        min_size=1,
        max_size=60,
    )
)
def test_never_two_leaders_within_their_renew_deadlines(steps: list[tuple[int, float, bool]]) -> None:
    """Any schedule of candidates trying (or failing) at any times: at no moment do two candidates each believe
    they lead *and* are within the renew deadline of their last successful write — the window in which a leader
    acts on its leadership."""
    kube, clock = FakeKube(), Clock()
    candidates = [elector(kube, f"pod-{i}", clock) for i in range(3)]
    deadline = candidates[0].timing.renew_deadline_s
    for who, advance, fails in steps:
        clock.t += advance
        if fails:
            kube.fail_next(KubeError(503, "unavailable"))
        candidates[who].tick()
        acting = [c for c in candidates if c.is_leader and clock.t - c._renewed_at < deadline]
        assert len(acting) <= 1, [(c.identity, c._renewed_at) for c in acting]


# --- run(): the loop, in real threads ---------------------------------------------------------------------------

# A wide gap between the renew deadline and the lease duration: a second of slack for a loaded CI machine.
FAST = ElectionTiming(lease_duration_s=1.5, renew_deadline_s=0.5, retry_period_s=0.05)


class Partition:
    """Cuts one candidate off the API server on demand (a hung node)."""

    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube
        self.cut = threading.Event()

    def __getattr__(self, verb: str) -> Any:
        call = getattr(self.kube, verb)

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if self.cut.is_set():
                raise KubeError(0, "network unreachable")
            return call(*args, **kwargs)

        return guarded


def test_run_hands_over_without_overlap_when_the_leader_is_cut_off() -> None:
    kube = FakeKube()
    terms: list[tuple[str, float, float]] = []
    lock = threading.Lock()

    def work(name: str) -> Any:
        def lead(term: threading.Event) -> None:
            began = time.monotonic()
            term.wait()
            with lock:
                terms.append((name, began, time.monotonic()))

        return lead

    partition = Partition(kube)
    a = LeaderElector(partition, "gpuquota-reconciler", NS, "pod-a", FAST, jitter=lambda: 0.0)
    b = LeaderElector(kube, "gpuquota-reconciler", NS, "pod-b", FAST)
    stop_a, stop_b = threading.Event(), threading.Event()
    ta = threading.Thread(target=a.run, args=(stop_a, work("pod-a")))
    ta.start()
    _wait_for(lambda: a.is_leader)
    tb = threading.Thread(target=b.run, args=(stop_b, work("pod-b")))
    tb.start()
    time.sleep(0.3)
    assert a.is_leader
    assert not b.is_leader
    partition.cut.set()
    _wait_for(lambda: b.is_leader, timeout=5.0)
    stop_a.set()
    stop_b.set()
    ta.join(5)
    tb.join(5)
    assert not ta.is_alive()
    assert not tb.is_alive()
    by_name = {name: (began, ended) for name, began, ended in terms}
    assert set(by_name) == {"pod-a", "pod-b"}
    assert by_name["pod-a"][1] <= by_name["pod-b"][0]  # a stopped working before b started
    assert lease(kube)["holderIdentity"] is None  # b released on stop


def test_run_releases_on_stop_and_the_follower_takes_over() -> None:
    kube = FakeKube()
    a = LeaderElector(kube, "gpuquota-reconciler", NS, "pod-a", FAST)
    b = LeaderElector(kube, "gpuquota-reconciler", NS, "pod-b", ElectionTiming(30.0, 20.0, 0.05))
    stop_a, stop_b = threading.Event(), threading.Event()
    ta = threading.Thread(target=a.run, args=(stop_a, lambda term: term.wait()))
    ta.start()
    _wait_for(lambda: a.is_leader)
    tb = threading.Thread(target=b.run, args=(stop_b, lambda term: term.wait()))
    tb.start()
    time.sleep(0.2)
    assert not b.is_leader
    stop_a.set()
    ta.join(5)
    assert lease(kube)["holderIdentity"] != "pod-a"  # released on the way out
    _wait_for(lambda: b.is_leader, timeout=1.0)  # sooner than a's 1.5 s lease would have allowed
    stop_b.set()
    tb.join(5)
    assert not tb.is_alive()


def _wait_for(condition: Any, timeout: float = 3.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


# --- the real client against the local API server ----------------------------------------------------------------


def test_election_over_http(tmp_path: Path) -> None:
    state = ApiState()
    token = tmp_path / "token"
    token.write_text(state.token)
    clock = Clock()
    with (
        api_server(state) as url,
        KubeClient.connect(url, token_file=token) as one,
        KubeClient.connect(url, token_file=token) as two,
    ):
        a, b = elector(one, "pod-a", clock), elector(two, "pod-b", clock)
        assert a.tick()
        created_version = state.objects[LEASE]["metadata"]["resourceVersion"]
        assert not b.tick()
        clock.t = 2.0
        assert a.tick()
        writes = [r for r in state.requests if r.method in ("POST", "PUT")]
        assert [(r.method, r.path) for r in writes] == [("POST", lease_collection(NS)), ("PUT", LEASE)]
        assert writes[1].body["metadata"]["resourceVersion"] == created_version  # the version it read
        assert writes[1].body["spec"]["renewTime"] == "2026-03-01T12:00:02.000000Z"
        assert a.release()
        assert b.tick()
        stored = state.objects[LEASE]["spec"]
        assert (stored["holderIdentity"], stored["leaseTransitions"]) == ("pod-b", 1)
