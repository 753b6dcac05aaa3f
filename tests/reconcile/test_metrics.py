"""The reconciler's metrics move with what a pass really did (a real SQLite ledger, recorded API objects)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gpuquota.ledger import open_ledger
from gpuquota.reconcile import Reconciler, ReconcilerMetrics
from gpuquota.reconcile.metrics import STOPS, TRANSITIONS
from gpuquota.testing import FakeKube
from tests.ledger.builders import reservation
from tests.reconcile.conftest import Clock
from tests.reconcile.objects import job, job_complete
from tests.reconcile.test_reconciler import JOBS, NS, PODS, T0


def samples(metrics: ReconcilerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_a_fresh_registry_exports_every_series_at_zero() -> None:
    metrics = ReconcilerMetrics()
    expected: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {
        ("gpuquota_reconciler_leader", ()): 0.0,
        ("gpuquota_reconciler_last_sync_timestamp_seconds", ()): 0.0,
        ("gpuquota_reconciler_overrunning_reservations", ()): 0.0,
    }
    expected.update({("gpuquota_reconciler_transitions_total", (("transition", t),)): 0.0 for t in TRANSITIONS})
    expected.update({("gpuquota_reconciler_overrun_stops_total", (("action", a),)): 0.0 for a in STOPS})
    assert samples(metrics) == expected
    assert set(TRANSITIONS) == {"running", "settled", "released", "expired"}


def test_a_pass_counts_its_transitions_and_stamps_the_sync(tmp_path: Path) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        admitted = T0
        for name in ("done", "ghost-1", "ghost-2"):
            ledger.reserve(reservation(f"uid-{name}", name=name, namespace=NS, when=admitted), admitted)
        kube = FakeKube()
        started, ended = admitted + timedelta(minutes=1), admitted + timedelta(minutes=30)
        kube.put(f"{JOBS}/done", job("done", NS, admitted, **job_complete(started, ended)))
        kube.put(f"{PODS}/placeholder", {"metadata": {"name": "placeholder", "namespace": NS}})
        clock = Clock(admitted + timedelta(hours=1))
        metrics = ReconcilerMetrics()
        reconciler = Reconciler(kube, ledger, clock=clock, workers=1, metrics=metrics)
        before = time.time()
        reconciler.reconcile_once()
        first = samples(metrics)
        reconciler.reconcile_once()  # nothing left to move: counters stay, the sync time moves
        second = samples(metrics)
    finally:
        ledger.close()
    transitions = "gpuquota_reconciler_transitions_total"
    assert first[(transitions, (("transition", "settled"),))] == 1
    assert first[(transitions, (("transition", "expired"),))] == 2
    assert first[(transitions, (("transition", "running"),))] == 0
    assert before <= first[("gpuquota_reconciler_last_sync_timestamp_seconds", ())] <= time.time()
    assert {k: v for k, v in second.items() if k[0] == transitions} == {
        k: v for k, v in first.items() if k[0] == transitions
    }
    assert (
        second[("gpuquota_reconciler_last_sync_timestamp_seconds", ())]
        >= first[("gpuquota_reconciler_last_sync_timestamp_seconds", ())]
    )


def test_leadership_flips_the_gauge() -> None:
    metrics = ReconcilerMetrics()
    metrics.set_leader(True)
    assert samples(metrics)[("gpuquota_reconciler_leader", ())] == 1.0
    metrics.set_leader(False)
    assert samples(metrics)[("gpuquota_reconciler_leader", ())] == 0.0
