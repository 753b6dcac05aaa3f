"""The reconciler's decisions as a pure function: (active reservations, what the cluster shows, now) → transitions.

Keeping this free of I/O is what makes restarts safe to reason about: the reconciler holds no state of its own
between passes — each pass recomputes everything from the ledger and the cluster — and every transition is
conditional in the ledger (only ``reserved`` becomes ``running``; only active reservations are finished), so a
pass repeated after a crash, or run by two reconcilers at once, changes nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gpuquota.ledger import ReservationRecord, ReservationState, WorkloadRef
from gpuquota.reconcile.lifecycle import earliest, observe, observe_pod, parse_time
from gpuquota.reconcile.resources import KindKey

JsonObject = Mapping[str, Any]
DEFAULT_GRACE = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class ClusterView:
    """Every object of the followed kinds, keyed by reference; ``synced`` names the kinds whose listing is
    complete (a kind whose CRD is not installed, or whose list failed, is never taken as "gone")."""

    objects: Mapping[WorkloadRef, JsonObject]
    synced: frozenset[tuple[KindKey, str]]  # (kind, namespace) pairs whose listing is complete


@dataclass(frozen=True, slots=True)
class Transition:
    to: ReservationState
    workload: WorkloadRef
    reservation_ids: tuple[int, ...]
    at: datetime  # when it started (running) or ended (final states)
    started: datetime | None = None
    reason: str = ""


@dataclass(slots=True)
class _Owners:
    by_uid: dict[str, WorkloadRef] = field(default_factory=dict)
    parent: dict[WorkloadRef, str] = field(default_factory=dict)  # ref → its controller's uid


def _group(api_version: object) -> str:
    text = str(api_version or "")
    group, slash, _ = text.rpartition("/")
    return group if slash else ""


def _controller(obj: JsonObject) -> Mapping[str, Any] | None:
    refs = [r for r in (obj.get("metadata") or {}).get("ownerReferences") or [] if isinstance(r, Mapping)]
    return next((r for r in refs if r.get("controller")), refs[0] if refs else None)


def pod_starts(objects: Mapping[WorkloadRef, JsonObject]) -> dict[WorkloadRef, datetime]:
    """The earliest start of a pod under each workload, through any chain of controllers (JobSet → Job → Pod).
    A controller the reconciler does not follow (a ReplicaSet) still gets its pods' starts, by its reference."""
    owners = _Owners()
    for ref, obj in objects.items():
        uid = (obj.get("metadata") or {}).get("uid")
        if uid:
            owners.by_uid[str(uid)] = ref
        ctrl = _controller(obj)
        if ctrl is not None and ctrl.get("uid"):
            owners.parent[ref] = str(ctrl["uid"])
    out: dict[WorkloadRef, datetime] = {}
    for ref, obj in objects.items():
        if ref.kind != "Pod" or ref.group:
            continue
        start = observe_pod(obj).started
        if start is None:
            continue
        current, current_obj, seen = ref, obj, {ref}
        while True:
            uid = owners.parent.get(current)
            if uid is None:
                break
            parent = owners.by_uid.get(uid)
            if parent is None:
                ctrl = _controller(current_obj)
                if ctrl is not None:
                    unfollowed = WorkloadRef(
                        ref.namespace, str(ctrl.get("kind")), str(ctrl.get("name")), _group(ctrl.get("apiVersion"))
                    )
                    out[unfollowed] = min(out.get(unfollowed, start), start)
                break
            if parent in seen:
                break
            seen.add(parent)
            out[parent] = min(out.get(parent, start), start)
            current, current_obj = parent, objects[parent]
    return out


def plan(
    active: Sequence[ReservationRecord],
    cluster: ClusterView,
    now: datetime,
    grace: timedelta = DEFAULT_GRACE,
) -> list[Transition]:
    by_workload: dict[WorkloadRef, list[ReservationRecord]] = {}
    for record in active:
        if record.state.active:
            by_workload.setdefault(record.workload, []).append(record)
    starts = pod_starts(cluster.objects)
    out: list[Transition] = []
    for ref, records in sorted(by_workload.items(), key=lambda kv: min(r.id for r in kv[1])):
        if ((ref.group, ref.kind), ref.namespace) not in cluster.synced:
            continue
        obj = cluster.objects.get(ref)
        created = parse_time((obj or {}).get("metadata", {}).get("creationTimestamp")) if obj else None
        # A reservation admitted well before this object was created belongs to an earlier object of the same
        # name, deleted without the webhook seeing it: that one is gone.
        stale = [r for r in records if created is not None and created > r.reserved_at + grace]
        current = [r for r in records if r not in stale]
        if stale:
            out.append(_replaced(ref, stale, created or now))
        if obj is None:
            out.extend(t for t in _absent(ref, current, now, grace) if t.reservation_ids)
            continue
        if not current:
            continue
        seen = observe(obj, (ref.group, ref.kind))
        started = earliest(seen.started, starts.get(ref))
        ids = tuple(r.id for r in current)
        if seen.done:
            out.append(
                Transition(
                    ReservationState.SETTLED, ref, ids, seen.finished or now, started, seen.outcome or "finished"
                )
            )
        elif started is not None:
            waiting = tuple(r.id for r in current if r.state is ReservationState.RESERVED)
            if waiting:
                out.append(Transition(ReservationState.RUNNING, ref, waiting, started, started, "started"))
    return [t for t in out if t.reservation_ids]


def _absent(ref: WorkloadRef, records: list[ReservationRecord], now: datetime, grace: timedelta) -> list[Transition]:
    """Not in the cluster: a reservation never seen running expires once the grace period is over (its create
    failed after admission); one seen running was deleted without the webhook hearing of it."""
    never = tuple(r.id for r in records if r.state is ReservationState.RESERVED and now - r.reserved_at >= grace)
    ran = tuple(r.id for r in records if r.state is ReservationState.RUNNING)
    return [
        Transition(
            ReservationState.EXPIRED, ref, never, now, None, f"never created: not found {grace} after admission"
        ),
        Transition(ReservationState.RELEASED, ref, ran, now, None, "gone from the cluster"),
    ]


def _replaced(ref: WorkloadRef, records: list[ReservationRecord], replaced_at: datetime) -> Transition:
    ids = tuple(r.id for r in records)
    return Transition(ReservationState.RELEASED, ref, ids, replaced_at, None, "replaced by a newer object of that name")
