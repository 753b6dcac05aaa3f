"""The reconciler's probes: /healthz follows the work loop's heartbeat, /readyz the ledger (pinged at most once per
period), both served over HTTP by the shared probe server (tests/reconcile/test_leader_command.py: the real command)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuquota.kube import LeaderElector
from gpuquota.kube.leader import ElectionTiming
from gpuquota.ledger import LedgerUnavailable, open_ledger
from gpuquota.probe_http import ProbeServer
from gpuquota.reconcile import Reconciler, ReconcilerMetrics
from gpuquota.reconcile.health import MIN_STUCK_AFTER_S, Heartbeat, ReconcilerHealth, stuck_after_default
from gpuquota.testing import FakeKube, ScriptedLedger


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

DOWN = LedgerUnavailable("connection refused (db.example:5432)")


def test_liveness_fails_once_the_loop_stops_beating() -> None:
    clock = Clock()
    beat = Heartbeat(clock)
    health = ReconcilerHealth(beat, ScriptedLedger().ping, stuck_after_s=60, monotonic=clock)
    assert health.liveness()[0]  # just started: alive before the first turn
    clock.now += 59
    assert health.liveness()[0]
    clock.now += 2
    alive, body = health.liveness()
    assert not alive
    assert body["status"] == "stuck"
    assert body["loop_heartbeat_age_s"] == 61.0
    beat.beat()
    assert health.liveness() == (True, {"status": "ok", "leader": False, "loop_heartbeat_age_s": 0.0,
                                        "stuck_after_s": 60})  # fmt: skip


def test_readiness_follows_the_ledger_and_pings_at_most_once_per_period() -> None:
    clock = Clock()
    ledger = ScriptedLedger()
    health = ReconcilerHealth(Heartbeat(clock), ledger.ping, stuck_after_s=60, ping_every_s=5, monotonic=clock)
    assert health.readiness() == (True, {"status": "ok", "leader": False, "ledger_error": None})
    ledger.fail_with = DOWN
    assert health.readiness()[0]  # cached for 5 s: probes do not load the database
    assert ledger.pings == 1
    clock.now += 5
    ready, body = health.readiness()
    assert not ready
    assert body["ledger_error"] == "LedgerUnavailable: connection refused (db.example:5432)"
    assert ledger.pings == 2
    ledger.fail_with = None
    clock.now += 5
    assert health.readiness()[0]
    health.set_leader(True)
    assert health.readiness()[1]["leader"] is True


def test_a_follower_is_ready_while_not_leading() -> None:
    health = ReconcilerHealth(Heartbeat(), ScriptedLedger().ping, stuck_after_s=60)
    health.set_leader(False)
    assert health.readiness()[0]
    assert health.liveness()[0]


@given(st.floats(min_value=0.01, max_value=3600))
def test_the_default_stuck_threshold_spans_several_passes(interval: float) -> None:
    threshold = stuck_after_default(interval)
    assert threshold >= MIN_STUCK_AFTER_S
    assert threshold >= 4 * interval


def test_bad_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        ReconcilerHealth(Heartbeat(), ScriptedLedger().ping, stuck_after_s=0)


def test_the_reconcile_loop_beats_each_turn(tmp_path: Path) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'l.db'}")
    beats: list[int] = []
    stop = threading.Event()

    def beat() -> None:
        beats.append(1)
        if len(beats) == 3:
            stop.set()

    try:
        Reconciler(FakeKube(), ledger, grace=timedelta(0)).run(stop, interval_s=0.01, heartbeat=beat)
    finally:
        ledger.close()
    assert len(beats) == 3


def test_a_follower_beats_from_the_campaign_loop() -> None:
    """Another candidate holds the Lease: the campaign loop turns and beats; the work is never run."""
    kube = FakeKube()
    holder = LeaderElector(kube, "gq", "gpuquota", "pod-a", ElectionTiming(15, 10, 0.01))
    assert holder.tick()
    follower = LeaderElector(kube, "gq", "gpuquota", "pod-b", ElectionTiming(15, 10, 0.01), jitter=lambda: 0.0)
    stop = threading.Event()
    beats: list[int] = []
    led: list[int] = []

    def beat() -> None:
        beats.append(1)
        if len(beats) == 3:
            stop.set()

    follower.run(stop, lambda term: led.append(1), on_follow=beat)
    assert len(beats) == 3
    assert led == []


# -- over HTTP ------------------------------------------------------------------------------------------------


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback test server
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def probes() -> Iterator[tuple[str, Clock, ScriptedLedger]]:
    clock, ledger = Clock(), ScriptedLedger()
    health = ReconcilerHealth(Heartbeat(clock), ledger.ping, stuck_after_s=60, ping_every_s=0, monotonic=clock)
    metrics = ReconcilerMetrics()
    server = ProbeServer(metrics.registry, {"/healthz": health.liveness, "/readyz": health.readiness}, "127.0.0.1", 0)
    server.start()
    yield f"http://127.0.0.1:{server.port}", clock, ledger
    server.stop()


def test_probes_over_http(probes: tuple[str, Clock, ScriptedLedger]) -> None:
    url, clock, ledger = probes
    assert get(f"{url}/healthz")[0] == 200
    assert get(f"{url}/readyz")[0] == 200
    ledger.fail_with = DOWN
    status, body = get(f"{url}/readyz")
    assert status == 503
    assert json.loads(body)["status"] == "ledger unreachable"
    assert get(f"{url}/healthz")[0] == 200  # a ledger outage is no reason to restart the process
    clock.now += 61
    status, body = get(f"{url}/healthz")
    assert (status, json.loads(body)["status"]) == (503, "stuck")
    status, body = get(f"{url}/metrics")
    assert status == 200
    assert "gpuquota_reconciler_leader 0.0" in body
    assert get(f"{url}/nope")[0] == 404
