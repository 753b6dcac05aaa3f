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

from gpuquota.ledger import ReservationRecord, ReservationState, RiderRecord, WorkloadRef
from gpuquota.reconcile.lifecycle import earliest, observe, observe_pod, parse_time
from gpuquota.reconcile.resources import POD, KindKey
from gpuquota.workloads import requests_gpu

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


def _owners(objects: Mapping[WorkloadRef, JsonObject]) -> _Owners:
    owners = _Owners()
    for ref, obj in objects.items():
        uid = (obj.get("metadata") or {}).get("uid")
        if uid:
            owners.by_uid[str(uid)] = ref
        ctrl = _controller(obj)
        if ctrl is not None and ctrl.get("uid"):
            owners.parent[ref] = str(ctrl["uid"])
    return owners


def pod_starts(objects: Mapping[WorkloadRef, JsonObject]) -> dict[WorkloadRef, datetime]:
    """The earliest start of a pod under each workload, through any chain of controllers (JobSet → Job → Pod).
    A controller the reconciler does not follow (a ReplicaSet) still gets its pods' starts, by its reference."""
    owners = _owners(objects)
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


@dataclass(frozen=True, slots=True)
class GpuPods:
    """Which pods hold GPUs (they ask for some and have not finished: a pending pod may be bound any moment, a
    terminating one still runs) and the controller chains above them — by uid and by reference, since the uids
    outlive a deleted parent (a background delete leaves them on its pods until they are gone)."""

    holding_uids: frozenset[str]
    ancestor_uids: frozenset[str]  # of every controller above a holding pod
    ancestor_refs: frozenset[WorkloadRef]
    synced_namespaces: frozenset[str]

    def tree_holds(self, record: ReservationRecord, riders: Sequence[RiderRecord]) -> bool:
        """Whether any pod of the reservation's workload tree, or any pod riding on it (an orphaned pod has lost its
        owner references but not its rider record), still holds GPUs. Unknown (pods not listed) counts as yes."""
        if record.workload.namespace not in self.synced_namespaces:
            return True
        if any(r.pod_uid in self.holding_uids for r in riders if r.reservation_id == record.id):
            return True
        if record.object_uid:
            return record.object_uid in self.ancestor_uids
        return record.workload in self.ancestor_refs  # no uid recorded: by name, which can only over-count


def gpu_pods(cluster: ClusterView) -> GpuPods:
    owners = _owners(cluster.objects)
    holding: set[str] = set()
    uids: set[str] = set()
    refs: set[WorkloadRef] = set()
    for ref, obj in cluster.objects.items():
        if (ref.group, ref.kind) != POD or observe_pod(obj).done or not requests_gpu(obj):
            continue
        uid = (obj.get("metadata") or {}).get("uid")
        if uid:
            holding.add(str(uid))
        current_obj, seen = obj, {ref}
        while (ctrl := _controller(current_obj)) is not None:
            parent_uid = str(ctrl.get("uid") or "")
            if parent_uid:
                uids.add(parent_uid)
            parent = owners.by_uid.get(parent_uid)
            if parent is None:  # gone, or a kind not followed: its reference is all there is
                refs.add(WorkloadRef(ref.namespace, str(ctrl.get("kind")), str(ctrl.get("name")),
                                     _group(ctrl.get("apiVersion"))))  # fmt: skip
                break
            if parent in seen:
                break
            seen.add(parent)
            refs.add(parent)
            current_obj = cluster.objects[parent]
    pods_synced = frozenset(ns for (kind, ns) in cluster.synced if kind == POD)
    return GpuPods(frozenset(holding), frozenset(uids), frozenset(refs), pods_synced)


def riders_gone(riders: Sequence[RiderRecord], cluster: ClusterView) -> list[tuple[int, str]]:
    """Riders whose pod is gone or finished (in a namespace whose pods are listed): their GPUs go back to their
    owner's budget. A pod of the same name with another uid is another pod."""
    live: set[str] = set()
    for ref, obj in cluster.objects.items():
        if (ref.group, ref.kind) == POD and not observe_pod(obj).done:
            uid = (obj.get("metadata") or {}).get("uid")
            live.add(str(uid) if uid else f"{ref.namespace}/{ref.name}")
    synced = {ns for (kind, ns) in cluster.synced if kind == POD}
    return [(r.reservation_id, r.pod_uid) for r in riders if r.namespace in synced and r.pod_uid not in live]


def accruals(
    active: Sequence[ReservationRecord], now: datetime, transitions: Sequence[Transition] = ()
) -> list[tuple[int, float]]:
    """What each running reservation (or one this pass saw start) has measurably spent so far: its rate × the time
    since its pods started — never capped by a declared runtime (a run past it goes on accruing)."""
    started = {rid: t.started for t in transitions if t.to is ReservationState.RUNNING for rid in t.reservation_ids}
    out: list[tuple[int, float]] = []
    for r in active:
        start = r.started_at or started.get(r.id)
        if start is not None and (r.state is ReservationState.RUNNING or r.id in started):
            out.append((r.id, r.operations_per_second * max(0.0, (now - start).total_seconds())))
    return out


def plan(
    active: Sequence[ReservationRecord],
    cluster: ClusterView,
    now: datetime,
    grace: timedelta = DEFAULT_GRACE,
    riders: Sequence[RiderRecord] = (),
) -> list[Transition]:
    """A reservation is settled or released only when no pod of its workload's tree holds GPUs: not when its object
    says it finished (a RayJob keeps its RayCluster, a PyTorchJob with cleanPodPolicy None its workers), not when it
    was deleted (orphaned pods, grace periods, finalizers), not when another object took its name."""
    by_workload: dict[WorkloadRef, list[ReservationRecord]] = {}
    for record in active:
        if record.state.active:
            by_workload.setdefault(record.workload, []).append(record)
    starts = pod_starts(cluster.objects)
    pods = gpu_pods(cluster)
    out: list[Transition] = []
    for ref, records in sorted(by_workload.items(), key=lambda kv: min(r.id for r in kv[1])):
        if ((ref.group, ref.kind), ref.namespace) not in cluster.synced:
            continue
        obj = cluster.objects.get(ref)
        meta = (obj or {}).get("metadata") or {}
        created = parse_time(meta.get("creationTimestamp")) if obj else None
        obj_uid = str(meta.get("uid") or "")
        # Not this object's: its uid differs; or, for a reservation with no uid, it was admitted well before this
        # object was created — an earlier object of the same name that is gone.
        gone = [r for r in records if obj is None or (r.object_uid and obj_uid and r.object_uid != obj_uid)
                or (not r.object_uid and created is not None and created > r.reserved_at + grace)]
        current = [r for r in records if r not in gone]
        out.extend(_gone(ref, gone, now, grace, pods=pods, riders=riders, replaced=obj is not None,
                         started=starts.get(ref)))  # fmt: skip
        if not current:
            continue
        seen = observe(obj or {}, (ref.group, ref.kind))
        started = earliest(seen.started, starts.get(ref))
        waiting = tuple(r.id for r in current if r.state is ReservationState.RESERVED)
        held = [r for r in current if pods.tree_holds(r, riders)]
        done = tuple(r.id for r in current if r not in held)
        if seen.done and done:
            out.append(Transition(ReservationState.SETTLED, ref, done, seen.finished or now, started,
                                  seen.outcome or "finished"))  # fmt: skip
        if started is not None and waiting and not (seen.done and set(waiting) <= set(done)):
            out.append(Transition(ReservationState.RUNNING, ref, waiting, started, started, "started"))
    return [t for t in out if t.reservation_ids]


def _gone(ref: WorkloadRef, records: list[ReservationRecord], now: datetime, grace: timedelta, *, pods: GpuPods,
          riders: Sequence[RiderRecord], replaced: bool, started: datetime | None) -> list[Transition]:  # fmt: skip
    """Its object is not in the cluster. Released once no pod of its tree holds GPUs (an orphaning delete leaves
    them running); one never seen running, never marked deleted, with no pod start under its name and no newer
    object in its place expires once the grace period is over (its create failed after admission). A replaced one
    that nobody saw start is released counted from its admission (it may have run unseen: an upper bound).
    ``started``: the earliest start of a pod under the name — it may be another object's: it can only over-count."""
    free = [r for r in records if not pods.tree_holds(r, riders)]
    held = [r for r in records if r not in free and r.state is ReservationState.RESERVED]
    never = tuple(r.id for r in free if r.state is ReservationState.RESERVED and not r.releasing and started is None
                  and not replaced and now - r.reserved_at >= grace)  # fmt: skip
    why = "replaced by a newer object of that name" if replaced else "gone from the cluster"
    ran = tuple(r.id for r in free if r.id not in never and (
        r.state is ReservationState.RUNNING or r.releasing or replaced or started is not None))  # fmt: skip
    return [
        Transition(
            ReservationState.EXPIRED, ref, never, now, None, f"never created: not found {grace} after admission"
        ),
        Transition(ReservationState.RELEASED, ref, ran, now, started, f"{why}; no pod of it holds GPUs"),
        # still running under a gone object: seen running, so it accrues what it spends
        Transition(ReservationState.RUNNING, ref, tuple(r.id for r in held) if started else (), started or now,
                   started, "started"),
    ]
