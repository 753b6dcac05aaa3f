"""RBAC denied for one resource: the reconciler keeps settling what it can see, never takes the hidden resource's
objects for gone, and its readiness names the watch that is refused until the permission comes back."""

from __future__ import annotations

from datetime import timedelta

from gpuquota.kube import KubeError, ObjectList
from gpuquota.kube.health import WatchHealth
from gpuquota.ledger import ReservationState
from gpuquota.ledger.store import SqlLedger
from gpuquota.reconcile import Reconciler
from gpuquota.reconcile.health import Heartbeat, ReconcilerHealth
from gpuquota.testing import FakeKube
from tests.reconcile.conftest import Clock
from tests.reconcile.objects import job
from tests.reconcile.test_reconciler import JOBS, NS, T0, admit


class NoPods(FakeKube):
    """An API server where this service account may not list pods (its Role lost the rule)."""

    denied = True

    def list(self, path: str, label_selector: str | None = None) -> ObjectList:
        if path.endswith("/pods") and self.denied:
            raise KubeError(403, f'pods is forbidden: User "system:serviceaccount:gq:reconciler" cannot list '
                                 f'resource "pods" in API group "" in the namespace "{NS}"')
        return super().list(path, label_selector)


def test_a_denied_resource_shows_in_readiness_and_recovers(ledger: SqlLedger) -> None:
    kube, clock, watches = NoPods(), Clock(T0), WatchHealth(grace_s=3600)
    admit(ledger, "llm", T0)
    kube.put(f"{JOBS}/llm", job("llm", NS, T0))
    reconciler = Reconciler(kube, ledger, clock=clock, workers=1, monotonic=lambda: clock.now.timestamp(),  # noqa: PLW0108
                            health=watches)
    health = ReconcilerHealth(Heartbeat(), lambda: None, stuck_after_s=60, kube_problems=watches.problems)
    clock.now = T0 + timedelta(hours=2)
    assert reconciler.reconcile_once().transitions == ()  # without pods nothing about this Job can be judged

    ready, body = health.readiness()
    assert not ready
    assert body["status"] == "watch failing"
    assert list(body["watch_errors"]) == [f"pods in {NS}"]
    assert "forbidden" in body["watch_errors"][f"pods in {NS}"]
    assert [r.state for r in ledger.active_reservations()] == [ReservationState.RESERVED]

    kube.denied = False  # the Role is fixed: the next pass lists pods and readiness comes back
    reconciler.reconcile_once()
    assert health.readiness() == (True, {"status": "ok", "leader": False, "ledger_error": None})
