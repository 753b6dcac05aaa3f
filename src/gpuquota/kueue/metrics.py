"""The check controller's metrics (docs/metrics.md, "Kueue check"): Workloads waiting on gpuquota's check and why,
the verdicts it gave, whether this replica leads, and when it last completed a pass."""

from __future__ import annotations

from collections import Counter as Tally
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge

from gpuquota.kueue.verdict import CheckState, Reason
from gpuquota.labelled_registry import cluster_registry

PENDING_REASONS: Final = (Reason.CAP.value, "ledger-unavailable")


class KueueCheckMetrics:
    """One registry per controller (tests run several in one process)."""

    def __init__(self, registry: CollectorRegistry | None = None, cluster: str | None = None) -> None:
        self.registry = registry if registry is not None else cluster_registry(cluster)  # cluster: --cluster-name
        self.leader = Gauge(
            "gpuquota_kueue_check_leader",
            "1 while this replica holds the Kueue check's Lease (or runs without leader election), else 0.",
            registry=self.registry,
        )
        self.pending = Gauge(
            "gpuquota_kueue_workloads_pending",
            "Workloads holding Kueue quota whose gpuquota admission check is Pending, by reason "
            "(cap: waiting for room under a compute cap; ledger-unavailable: the ledger could not be used).",
            ["reason"],
            registry=self.registry,
        )
        self.verdicts = Counter(
            "gpuquota_kueue_check_verdicts",
            "Admission-check states set on Workloads, by state and reason.",
            ["state", "reason"],
            registry=self.registry,
        )
        self.releases = Counter(
            "gpuquota_kueue_check_releases",
            "Reservations released because Kueue evicted or deactivated their Workload (after its pods ended).",
            registry=self.registry,
        )
        self.last_pass = Gauge(
            "gpuquota_kueue_check_last_pass_timestamp_seconds",
            "Unix time at which the last pass over the Workloads completed (0 before the first).",
            registry=self.registry,
        )
        for reason in PENDING_REASONS:
            self.pending.labels(reason)
        for state in CheckState:
            for why in Reason:
                self.verdicts.labels(state.value, why.value)

    def set_leader(self, leader: bool) -> None:
        self.leader.set(1 if leader else 0)

    def record_pass(self, pending: Tally[str], completed_at: float) -> None:
        for reason in {*PENDING_REASONS, *pending}:
            self.pending.labels(reason).set(pending.get(reason, 0))
        self.last_pass.set(completed_at)
