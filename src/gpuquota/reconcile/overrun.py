"""Workloads past their declared runtime, and what the profile says to do about them (``overrun.action``).

A declared runtime (``gpuquota.io/max-runtime``, ``activeDeadlineSeconds``) is a claim the tenant made to be
admitted: a run declared at 1 h passes where 720 h is refused. Whatever the action, what a run spends beyond its
declaration is accrued and charged as it runs (``plan.accruals``) and it is reported (metric, alert, log line).
With ``stop`` the leading reconciler also stops it — through its kind's own suspend field where the kind has one
(Job, JobSet, the Kubeflow jobs' ``runPolicy.suspend``, RayJob, RayCluster, TrainJob), else by deleting it — and
records that in the ledger. Pure decisions here; the reconciler applies them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from gpuquota.ledger import AuditRecord, ReservationRecord, ReservationState, WorkloadRef
from gpuquota.reconcile.plan import ClusterView
from gpuquota.workloads.kind import Path
from gpuquota.workloads.registry import BY_KEY

RECONCILER_USER: Final = "gpuquota-reconciler"  # the ``user`` of the ledger records the reconciler writes
SUSPEND: Final = "SUSPEND"  # the ``operation`` of such a record: suspended through the kind's field
DELETE: Final = "DELETE"  # deleted (the kind has no suspend field)


def overruns(active: Sequence[ReservationRecord], now: datetime) -> list[ReservationRecord]:
    """Running reservations past their declared runtime: the declaration was a claim; what they spend beyond it is
    accrued and charged, and they are reported."""
    return [
        r for r in active
        if r.state is ReservationState.RUNNING and r.started_at is not None and r.max_runtime_s is not None
        and (now - r.started_at).total_seconds() > r.max_runtime_s
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop one overrunning workload: set its kind's ``suspend`` field, or delete it when ``suspend`` is None."""

    workload: WorkloadRef
    records: tuple[ReservationRecord, ...]  # its reservations past their declared runtime
    suspend: Path | None

    @property
    def operation(self) -> str:
        return DELETE if self.suspend is None else SUSPEND

    @property
    def how(self) -> str:
        """``suspend`` or ``delete``: the label of ``gpuquota_reconciler_overrun_stops_total``."""
        return self.operation.lower()

    def patch(self) -> dict[str, Any]:
        """The merge patch that suspends it (``{"spec": {"runPolicy": {"suspend": true}}}`` for a Kubeflow job)."""
        if self.suspend is None:
            raise ValueError(f"{self.workload} has no suspend field: it is deleted")
        body: dict[str, Any] = {self.suspend[-1]: True}
        for key in reversed(self.suspend[:-1]):
            body = {key: body}
        return body


def _field(obj: Mapping[str, Any], path: Path) -> Any:
    value: Any = obj
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def stops(late: Sequence[ReservationRecord], cluster: ClusterView) -> list[Stop]:
    """The overrunning workloads to stop: those the cluster still shows running — present, not being deleted, not
    suspended already. So a pass repeated (or run by a second reconciler, or after a restart) stops nothing twice,
    and a workload the tenant resumed after a stop is stopped again while it stays past its declaration."""
    by_workload: dict[WorkloadRef, list[ReservationRecord]] = {}
    for record in late:
        by_workload.setdefault(record.workload, []).append(record)
    out: list[Stop] = []
    for ref, records in sorted(by_workload.items(), key=lambda kv: min(r.id for r in kv[1])):
        obj = cluster.objects.get(ref)
        kind = BY_KEY.get((ref.group, ref.kind))
        if obj is None or kind is None or (obj.get("metadata") or {}).get("deletionTimestamp"):
            continue
        if kind.suspend is not None and _field(obj, kind.suspend) is True:
            continue
        out.append(Stop(ref, tuple(records), kind.suspend))
    return out


def stop_record(stop: Stop, now: datetime, profile: str, profile_version: str) -> AuditRecord:
    """The ledger's record of a stop: who (the reconciler), what (suspend or delete), why (the declaration it is
    past, the profile that said so) — beside the admission decisions, never counted as one."""
    first = stop.records[0]
    declared = min(r.max_runtime_s or 0.0 for r in stop.records)
    how = "suspended (" + ".".join(stop.suspend) + ")" if stop.suspend is not None else "deleted"
    return AuditRecord(
        time=now, request_uid=f"overrun-{first.id}-{now.isoformat()}", operation=stop.operation,
        user=RECONCILER_USER, namespace=stop.workload.namespace, kind=stop.workload.kind, name=stop.workload.name,
        tenant=first.tenant, jurisdiction=first.jurisdiction, tier=first.tier, allowed=True, dry_run=False,
        message=f"{stop.workload} {how}: past its declared runtime of {declared:.0f} s (profile {profile} "
                f"{profile_version}: overrun.action stop); its excess is charged",
        rules=(), warnings=(), gpus=sum(r.gpus for r in stop.records), model=first.model,
        tpp=sum(r.tpp for r in stop.records), operations=None, profile=profile, profile_version=profile_version,
    )  # fmt: skip
