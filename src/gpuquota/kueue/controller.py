"""The check controller's shell: Kueue's objects followed through list-and-watch caches (``gpuquota.kube.reflector``),
the ledger, and the status writes. Decisions are ``gpuquota.kueue.verdict``'s.

A pass runs every ``interval_s`` (and on nothing else: a Workload waiting for room is waiting for the ledger to
change, which no watch reports). Each pass: mark gpuquota's AdmissionChecks ``Active``; for every Workload that
lists one of them, ``step`` says whether to judge it, release what the check reserved for it, or leave it. A Workload
is judged from its PodSets and the flavours Kueue assigned; the reservation is held under the Workload's owner
(kind, namespace, name — and its uid once the ledger keeps uids), so the webhook, seeing Kueue un-suspend that
owner, finds it and charges nothing twice. Status is written only when it changes (and audited then), so a Workload
waiting an hour writes one ``Pending`` and one decision record, not one per pass.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from gpuquota.admission.judge import Judge, audit_record, reservation_of
from gpuquota.admission.live import LiveConfig
from gpuquota.admission.namespaces import NamespaceCache
from gpuquota.admission.outcome import Case
from gpuquota.clusters import DEFAULT_CLUSTER
from gpuquota.domain import Demand, Tenant
from gpuquota.inventory.cluster import ClusterInventory, run_node_watch
from gpuquota.kube import KubeApi, KubeError
from gpuquota.kube.api import JsonObject, WatchEvent
from gpuquota.kube.health import WatchHealth
from gpuquota.kube.reflector import Backoff, Reflector
from gpuquota.kueue.metrics import KueueCheckMetrics
from gpuquota.kueue.verdict import (
    CONTROLLER_NAME,
    CheckState,
    Reason,
    Step,
    Verdict,
    invalid,
    made_for,
    request_uid,
    step,
    verdict,
)
from gpuquota.kueue.workload import GROUP, VERSION, Workload, owner_demand, read_workload
from gpuquota.ledger import LedgerError, ReconcilerLedger, ReserveStatus, WorkloadRef
from gpuquota.policy import Policy, usage_keys
from gpuquota.workloads import GpuResources, WorkloadError

log = logging.getLogger("gpuquota.kueue")
API: Final = f"/apis/{GROUP}/{VERSION}"
USER: Final = "system:gpuquota:kueue-check"  # who the audit record names: Kueue asked, on the tenant's behalf


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"


class ObjectStore:
    """A reflector's store: one collection's objects by namespace/name, read as snapshots by the pass."""

    def __init__(self) -> None:
        self._objects: dict[str, JsonObject] = {}
        self._lock = threading.Lock()

    def replace(self, items: list[JsonObject]) -> None:
        with self._lock:
            self._objects = {_key(o): o for o in items}

    def apply(self, event: WatchEvent) -> None:
        with self._lock:
            if event.type == "DELETED":
                self._objects.pop(_key(event.object), None)
            elif event.type in ("ADDED", "MODIFIED"):
                self._objects[_key(event.object)] = event.object

    def snapshot(self) -> list[JsonObject]:
        with self._lock:
            return list(self._objects.values())


@dataclass
class PassResult:
    verdicts: Counter[str] = field(default_factory=Counter)  # "<state>/<reason>" set this pass
    released: int = 0
    errors: int = 0
    pending: Counter[str] = field(default_factory=Counter)  # reason → Workloads left Pending


@dataclass(frozen=True, slots=True)
class _Turn:
    """What one pass shares across its Workloads."""

    now: datetime
    result: PassResult
    checks: Mapping[str, JsonObject]
    held: set[str]
    flavors: Mapping[str, Mapping[str, str]]


def _now_text(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _owner_uid(w: Workload) -> str:
    """The identity the check reserves under (the Kueue contract): the owner's uid, which the webhook compares
    when Kueue un-suspends the owner."""
    return w.owner.uid if w.owner is not None else w.uid


def _owner_ref(w: Workload) -> WorkloadRef:
    if w.owner is None:
        return WorkloadRef(w.namespace, "Workload", w.name, GROUP)
    return WorkloadRef(w.namespace, w.owner.kind, w.owner.name, w.owner.group)


class KueueCheck:
    """One controller; ``run`` (or ``pass_once`` after ``sync``) from one thread."""

    def __init__(self, kube: KubeApi, ledger: ReconcilerLedger, live: LiveConfig, *, metrics: KueueCheckMetrics,
                 health: WatchHealth | None = None, gpu_resources: GpuResources | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), watch_nodes: bool = True,
                 cluster: str = DEFAULT_CLUSTER) -> None:
        self.kube = kube
        self.cluster = cluster  # this cluster's name on a fleet's shared ledger: where perCluster rules count
        self.ledger = ledger
        self.live = live
        self.metrics = metrics
        self.health = health
        self.clock = clock
        self.namespaces = NamespaceCache()
        self.inventory = ClusterInventory(live.current.catalog, gpu_resources) if watch_nodes else None
        inventory = self.inventory
        self.judge = Judge(ledger, None, clock=clock, namespaces=self.namespaces,
                           inventory_models=inventory.models if inventory is not None else (lambda: ()),
                           gpu_resources=gpu_resources, cluster=cluster)
        self.stores = {plural: ObjectStore() for plural in ("workloads", "admissionchecks", "resourceflavors")}
        self.reflectors = [
            Reflector(kube, f"{API}/{plural}", store, name=f"{plural}.{GROUP}", health=health,
                      backoff=Backoff(0.5, 30.0))
            for plural, store in self.stores.items()
        ] + [self.namespaces.reflector(kube, health=health)]
        self.last: dict[str, Reason] = {}  # workload uid → the reason of its last Pending verdict

    # --- caches -------------------------------------------------------------------------------------------------

    def start_watches(self, stop: threading.Event) -> None:
        for reflector in self.reflectors:
            threading.Thread(target=reflector.run, args=(stop,), name=f"watch-{reflector.name}", daemon=True).start()
        if self.inventory is not None:
            threading.Thread(target=run_node_watch, args=(self.kube, self.inventory, stop),
                             kwargs={"health": self.health}, name="node-watch", daemon=True).start()

    def sync(self) -> None:
        """List every cache once (``--once`` and tests: no threads)."""
        for reflector in self.reflectors:
            reflector.relist()

    @property
    def synced(self) -> bool:
        return all(r.current for r in self.reflectors)

    def ours(self) -> dict[str, JsonObject]:
        """gpuquota's AdmissionChecks by name (``spec.controllerName: gpuquota.io/compute-cap``)."""
        return {str(ac["metadata"]["name"]): ac for ac in self.stores["admissionchecks"].snapshot()
                if (ac.get("spec") or {}).get("controllerName") == CONTROLLER_NAME}

    def node_labels(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for flavor in self.stores["resourceflavors"].snapshot():
            labels = (flavor.get("spec") or {}).get("nodeLabels") or {}
            out[str(flavor["metadata"]["name"])] = {str(k): str(v) for k, v in labels.items()}
        return out

    # --- the pass -----------------------------------------------------------------------------------------------

    def pass_once(self) -> PassResult:
        result = PassResult()
        now = self.clock()
        checks = self.ours()
        for name, ac in checks.items():
            self._mark_active(name, ac, now, result)
        if checks:
            turn = _Turn(now, result, checks, self._held(), self.node_labels())
            for obj in self.stores["workloads"].snapshot():
                self._workload(obj, turn)
        self.metrics.record_pass(result.pending, time.time())
        return result

    def _held(self) -> set[str]:
        """Uids of the Workloads whose check reservation is active in the ledger."""
        held: set[str] = set()
        for record in self.ledger.active_reservations():
            parts = record.request_uid.split("/")
            if len(parts) >= 3 and made_for(parts[1], record.request_uid):
                held.add(parts[1])
        return held

    def _workload(self, obj: JsonObject, turn: _Turn) -> None:
        checks, held, now, result = turn.checks, turn.held, turn.now, turn.result
        listed = [c.get("name") for c in (obj.get("status") or {}).get("admissionChecks") or []
                  if isinstance(c, Mapping)]
        names = [str(n) for n in listed if n in checks]
        if not names:
            return
        try:
            w = read_workload(obj)
        except WorkloadError as exc:
            log.warning("cannot read Workload %s: %s", _key(obj), exc)
            result.errors += 1
            return
        for name in names:
            todo = step(w, name, w.uid in held)
            try:
                if todo is Step.JUDGE:
                    self._judge(w, name, turn.flavors, now, result)
                elif todo is Step.RELEASE:
                    self._release(w, now, result)
                    held.discard(w.uid)
                elif (state := w.check(name)) is not None and state.state == CheckState.PENDING:
                    result.pending[self.last.get(w.uid, Reason.CAP).value] += 1
            except LedgerError as exc:
                log.error("ledger unavailable while judging %s: %s", w, exc)
                result.errors += 1
                result.pending["ledger-unavailable"] += 1
            except KubeError as exc:
                log.warning("could not update %s: %s", w, exc)
                result.errors += 1

    def _judge(self, w: Workload, check: str, flavors: Mapping[str, Mapping[str, str]], now: datetime,
               result: PassResult) -> None:
        snap = self.live.current
        tenant = self.judge.tenant(snap, w.namespace)
        ref = _owner_ref(w)
        try:
            demand = owner_demand(w, flavors, self.judge.context(snap))
        except WorkloadError as exc:
            self._set(w, check, invalid(str(exc)), now, result)
            return
        if demand is not None:
            view = self.ledger.find_active(ref)
            if (view is not None and view.tpp >= demand.tpp * (1 - 1e-9)
                    and (not view.object_uid or view.object_uid == _owner_uid(w))):
                # Already reserved for this very object: by an earlier pass whose status write was lost, or by the
                # webhook. A reservation of an earlier object of that name (deleted, its pods still going) is not
                # this one's: it is judged and reserved afresh, as the webhook judges its un-suspension.
                self._set(w, check, Verdict(CheckState.READY, f"gpuquota: {ref} already holds its reservation",
                                            Reason.ADMITTED), now, result)
                return
        usage = ({} if demand is None
                 else self.ledger.usage(usage_keys(snap.policy, demand, tenant, now, self.cluster), now))
        decided, decision = verdict(demand, tenant, usage, snap.policy, now, cluster=self.cluster)
        current = w.check(check)
        if (demand is not None and decision is not None and decided.state is not CheckState.READY
                and (current is None or decided.message != current.message)):  # audit each new refusal once
            case = self._case(w, ref, demand, tenant, snap.policy)
            self.ledger.record_decision(audit_record(case, decision, now, self.cluster))
        if decided.reserves and demand is not None and decision is not None:
            case = self._case(w, ref, demand, tenant, snap.policy)
            record = audit_record(case, decision, now, self.cluster)
            reserved = self.ledger.reserve(reservation_of(case, decision, record), now)
            if reserved.status is ReserveStatus.CAP_EXCEEDED:
                log.info("%s: the cap filled while it was being admitted; judging again next pass", w)
                result.pending[Reason.CAP.value] += 1
                return
        self._set(w, check, decided, now, result)

    def _case(self, w: Workload, ref: WorkloadRef, demand: Demand, tenant: Tenant, policy: Policy) -> Case:
        queue = str((w.obj.get("spec") or {}).get("queueName") or "")
        return Case(uid=request_uid(w), operation="KUEUE", user=USER, dry_run=False, policy=policy, demand=demand,
                    whole=None, tenant=tenant, workload=ref, queue=queue,
                    object_uid=_owner_uid(w))

    def _set(self, w: Workload, check: str, decided: Verdict, now: datetime, result: PassResult) -> None:
        """Write the check's state when it changed (a JSON patch that tests the entry's name first, so a list Kueue
        rewrote meanwhile fails the patch instead of setting another check's state)."""
        if decided.state is CheckState.PENDING:
            self.last[w.uid] = decided.reason
            result.pending[decided.reason.value] += 1
        current = w.check(check)
        if current is not None and (current.state, current.message) == (decided.state.value, decided.message):
            return
        index = next(i for i, c in enumerate(w.checks) if c.name == check)
        base = f"/status/admissionChecks/{index}"
        ops: list[JsonObject] = [
            {"op": "test", "path": f"{base}/name", "value": check},
            {"op": "add", "path": f"{base}/state", "value": decided.state.value},
            {"op": "add", "path": f"{base}/message", "value": decided.message},
        ]
        if current is None or current.state != decided.state.value:
            ops.append({"op": "add", "path": f"{base}/lastTransitionTime", "value": _now_text(now)})
        self.kube.patch(f"{API}/namespaces/{w.namespace}/workloads/{w.name}/status", {"ops": ops}, "json")
        result.verdicts[f"{decided.state.value}/{decided.reason.value}"] += 1
        self.metrics.verdicts.labels(decided.state.value, decided.reason.value).inc()
        log.info("%s: %s %s (%s)", w, check, decided.state.value, decided.message)

    def _release(self, w: Workload, now: datetime, result: PassResult) -> None:
        ref = _owner_ref(w)
        why = "evicted by Kueue" if w.evicted else ("deactivated" if not w.active else "Kueue released its quota")
        released = self.ledger.release(ref, now, f"kueue: {why}, its pods gone")
        self.last.pop(w.uid, None)
        if released:
            result.released += released
            self.metrics.releases.inc(released)
            log.info("%s: released %d reservation(s) of %s (%s)", w, released, ref, why)

    def _mark_active(self, name: str, ac: JsonObject, now: datetime, result: PassResult) -> None:
        """Kueue admits nothing through an AdmissionCheck that is not ``Active``: say that this one is served."""
        conditions = (ac.get("status") or {}).get("conditions") or []
        if any(isinstance(c, Mapping) and c.get("type") == "Active" and c.get("status") == "True"
               for c in conditions):
            return
        condition = {"type": "Active", "status": "True", "reason": "Active",
                     "message": "gpuquota's compute-cap check controller is running",
                     "lastTransitionTime": _now_text(now),
                     "observedGeneration": (ac.get("metadata") or {}).get("generation", 0)}
        try:
            self.kube.patch(f"{API}/admissionchecks/{name}/status", {"status": {"conditions": [condition]}})
        except KubeError as exc:
            log.warning("could not mark AdmissionCheck %s Active: %s", name, exc)
            result.errors += 1

    # --- the loop -----------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event, interval_s: float = 5.0, heartbeat: Callable[[], None] | None = None) -> None:
        """Watch and pass until ``stop``: a pass waits for every cache to hold a full list."""
        term = threading.Event()
        self.start_watches(term)
        try:
            while not stop.is_set():
                if heartbeat is not None:
                    heartbeat()
                if self.synced:
                    try:
                        result = self.pass_once()
                        if result.verdicts or result.released:
                            log.info("kueue check pass: %s, %d released", dict(result.verdicts), result.released)
                    except (LedgerError, KubeError) as exc:
                        log.warning("kueue check pass failed, retrying in %.1f s: %s", interval_s, exc)
                stop.wait(interval_s)
        finally:
            term.set()

