"""The reconciler's own metrics (docs/metrics.md, "Reconciler"): whether this replica leads, what it moved, and
when it last completed a pass — enough to alert on a reconciler that stopped settling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge

from gpuquota.labelled_registry import cluster_registry
from gpuquota.ledger import ReservationState

# Label values of gpuquota_reconciler_transitions_total: the state a reservation was moved to.
TRANSITIONS: Final = tuple(str(s) for s in ReservationState if s is not ReservationState.RESERVED)
# Label values of gpuquota_reconciler_overrun_stops_total: how a workload past its declared runtime was stopped.
STOPS: Final = ("suspend", "delete")


class ReconcilerMetrics:
    """One registry per reconciler, so tests and several reconcilers in one process never share series."""

    def __init__(self, registry: CollectorRegistry | None = None, cluster: str | None = None) -> None:
        self.registry = registry if registry is not None else cluster_registry(cluster)  # cluster: --cluster-name
        self.leader = Gauge(
            "gpuquota_reconciler_leader",
            "1 while this replica holds the reconciler Lease (or runs without leader election), else 0.",
            registry=self.registry,
        )
        self.transitions = Counter(
            "gpuquota_reconciler_transitions",
            "Reservations moved by the reconciler, by the state they were moved to.",
            ["transition"],
            registry=self.registry,
        )
        self.overrunning = Gauge(
            "gpuquota_reconciler_overrunning_reservations",
            "Running reservations past their declared runtime at the last pass (their excess is accrued and charged).",
            registry=self.registry,
        )
        self.stops = Counter(
            "gpuquota_reconciler_overrun_stops",
            "Workloads the reconciler stopped past their declared runtime (profile overrun.action stop), by how: "
            "suspend (the kind's own field) or delete.",
            ["action"],
            registry=self.registry,
        )
        self.last_sync = Gauge(
            "gpuquota_reconciler_last_sync_timestamp_seconds",
            "Unix time at which the last reconcile pass completed (0 before the first).",
            registry=self.registry,
        )
        for transition in TRANSITIONS:
            self.transitions.labels(transition)  # every series exists from the start: rate() sees the first one
        for action in STOPS:
            self.stops.labels(action)

    def set_leader(self, leader: bool) -> None:
        self.leader.set(1 if leader else 0)

    def record_pass(self, applied: Mapping[str, int], completed_at: float, overrunning: int = 0,
                    stopped: Mapping[str, int] | None = None) -> None:
        """Count the reservations a completed pass moved, by target state, the workloads it stopped, by how, and
        stamp its completion."""
        for transition, count in applied.items():
            if count:
                self.transitions.labels(transition).inc(count)
        for action, count in (stopped or {}).items():
            if count:
                self.stops.labels(action).inc(count)
        self.overrunning.set(overrunning)
        self.last_sync.set(completed_at)
