"""The reconciler's shell: follow workloads through the Kubernetes API (``gpuquota.kube.reflector``: list, then watch
from the list's resource version, relisting on 410 Gone and every resync period) and apply ``plan``'s transitions.

Only namespaces with active reservations are followed, and in each only the kinds reserved there, the
controllers under them and pods — a cluster's GPU work, not the whole cluster. Each (kind, namespace) has its own
cache; a pass brings every cache up to date (in parallel: a watch waits up to its timeout when nothing happens),
then plans from one snapshot of the caches and the ledger. Caches are touched by one thread at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gpuquota.domain import OverrunAction
from gpuquota.kube import KubeApi, KubeError
from gpuquota.kube.api import WatchEvent
from gpuquota.kube.errors import NotFoundError
from gpuquota.kube.health import WatchHealth
from gpuquota.kube.reflector import Reflector
from gpuquota.ledger import LedgerError, ReconcilerLedger, ReservationRecord, ReservationState, WorkloadRef
from gpuquota.policy import Policy
from gpuquota.reconcile.metrics import ReconcilerMetrics
from gpuquota.reconcile.overrun import Stop, overruns, stop_record, stops
from gpuquota.reconcile.plan import DEFAULT_GRACE, ClusterView, Transition, accruals, plan, riders_gone
from gpuquota.reconcile.resources import RESOURCES, KindKey, Resource, kinds_to_follow, served_version

log = logging.getLogger(__name__)
JsonObject = dict[str, Any]
CacheKey = tuple[KindKey, str]  # (kind, namespace)


def _ref(key: KindKey, namespace: str, obj: JsonObject) -> WorkloadRef | None:
    name = (obj.get("metadata") or {}).get("name")
    return WorkloadRef(namespace, key[1], str(name), key[0]) if name else None


class KindCache:
    """The objects of one kind in one namespace, as last listed and watched: the store of a ``Reflector`` that the
    pass moves on one bounded step at a time (list when due, else a watch of at most ``watch_timeout_s``).
    ``version``: the one the cluster serves the kind at, asked before the first list and again after a 404 (a CRD
    replaced by another operator's)."""

    def __init__(self, key: KindKey, namespace: str, resource: Resource, kube: KubeApi, *, resync_s: float = 300.0,
                 health: WatchHealth | None = None, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.key = key
        self.namespace = namespace
        self.resource = resource
        self.kube = kube
        self.version = ""
        self.objects: dict[WorkloadRef, JsonObject] = {}
        label = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
        self.reflector = Reflector(kube, self.path, self, name=f"{label} in {namespace}", label=label,
                                   health=health, resync_s=resync_s, monotonic=monotonic)

    @property
    def path(self) -> str:
        return self.resource.collection(self.version, self.namespace)

    @property
    def synced(self) -> bool:
        """Listed, and the last list or watch succeeded: only then is an object's absence evidence of anything."""
        return bool(self.version) and self.reflector.current

    @property
    def relists(self) -> int:
        return self.reflector.relists

    def replace(self, items: list[JsonObject]) -> None:
        objects: dict[WorkloadRef, JsonObject] = {}
        for item in items:
            ref = _ref(self.key, self.namespace, item)
            if ref is not None:
                objects[ref] = item
        self.objects = objects

    def apply(self, event: WatchEvent) -> None:
        ref = _ref(self.key, self.namespace, event.object)
        if ref is None:
            return
        if event.type == "DELETED":
            self.objects.pop(ref, None)
        else:
            self.objects[ref] = event.object

    def update(self, timeout_s: float) -> None:
        if not self.version:
            try:
                self.version = served_version(self.kube, self.resource) or ""
            except KubeError as exc:
                self.reflector.failed(exc)
                return
            if not self.version:  # the kind's CRD is not installed: nothing of it can be judged
                log.debug("%s: no version of %s is served", self.namespace, self.resource.plural)
                return
            self.reflector.retarget(self.path)
        self.reflector.poll(timeout_s)
        if isinstance(self.reflector.last_error, NotFoundError):
            self.version = ""  # the CRD went (or another operator's replaced it): ask again next pass


@dataclass(frozen=True, slots=True)
class PassResult:
    transitions: tuple[Transition, ...]
    applied: Counter[str]
    errors: int = 0
    stopped: Counter[str] = field(default_factory=Counter)  # workloads stopped past their declared runtime, by how


class Reconciler:
    """Moves reservations through their states from what the cluster shows. Holds no state that matters across
    restarts (caches are rebuilt by listing), and two copies running at once cannot double count: each
    transition is conditional in the ledger."""

    def __init__(
        self,
        kube: KubeApi,
        ledger: ReconcilerLedger,
        *,
        grace: timedelta = DEFAULT_GRACE,
        resync_s: float = 300.0,
        watch_timeout_s: float = 1.0,
        workers: int = 8,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        metrics: ReconcilerMetrics | None = None,
        health: WatchHealth | None = None,
        policy: Callable[[], Policy] | None = None,
    ) -> None:
        self.kube = kube
        self.ledger = ledger
        self.grace = grace
        self.resync_s = resync_s
        self.watch_timeout_s = watch_timeout_s
        self.workers = max(1, workers)
        self.clock = clock
        self.monotonic = monotonic
        self.metrics = metrics
        self.health = health
        # the profile in force (reloaded by the caller): its overrun.action says what to do about a run past its
        # declared runtime (None: report it only)
        self.policy = policy
        self.caches: dict[CacheKey, KindCache] = {}

    def _wanted(self, active: Iterable[ReservationRecord]) -> set[CacheKey]:
        wanted: set[CacheKey] = set()
        for record in active:
            key = (record.workload.group, record.workload.kind)
            if key not in RESOURCES:
                log.warning("%s: kind %s is not followed; its reservation stays until deleted", record.workload, key)
                continue
            wanted.update((k, record.workload.namespace) for k in kinds_to_follow(key))
        return wanted

    def sync(self, active: Iterable[ReservationRecord]) -> None:
        """Follow exactly the (kind, namespace) pairs the active reservations need, each brought up to date."""
        wanted = self._wanted(active)
        for stale in set(self.caches) - wanted:
            self._drop(stale)
        for key in sorted(wanted - set(self.caches)):
            self.caches[key] = KindCache(key[0], key[1], RESOURCES[key[0]], self.kube, resync_s=self.resync_s,
                                         health=self.health, monotonic=self.monotonic)
        caches = [self.caches[k] for k in sorted(self.caches)]

        def update(cache: KindCache) -> None:
            cache.update(self.watch_timeout_s)

        if self.workers == 1 or len(caches) <= 1:
            for cache in caches:
                update(cache)
        else:
            with ThreadPoolExecutor(min(self.workers, len(caches)), thread_name_prefix="reconcile-watch") as pool:
                list(pool.map(update, caches))

    def _drop(self, key: CacheKey) -> None:
        gone = self.caches.pop(key)
        if self.health is not None:
            self.health.forget(gone.reflector.name)

    def view(self) -> ClusterView:
        objects: dict[WorkloadRef, JsonObject] = {}
        synced: set[tuple[KindKey, str]] = set()
        for (kind, namespace), cache in self.caches.items():
            if cache.synced:
                objects.update(cache.objects)
                synced.add((kind, namespace))
        return ClusterView(objects, frozenset(synced))

    def reconcile_once(self) -> PassResult:
        active = self.ledger.active_reservations()
        riders = self.ledger.live_riders()
        self.sync(active)
        now = self.clock()
        view = self.view()
        transitions = plan(active, view, now, self.grace, riders)
        applied: Counter[str] = Counter()
        errors = 0
        for t in transitions:
            try:
                changed = self._apply(t)
            except LedgerError as exc:  # the next pass retries: every transition is idempotent
                errors += 1
                log.warning("could not move %s to %s: %s", t.workload, t.to, exc)
                continue
            applied[str(t.to)] += changed
            if changed:
                log.info("%s → %s (%s): reservations %s", t.workload, t.to, t.reason, list(t.reservation_ids))
        try:
            # Budget back for the pods that are gone; running work charged as it runs (cumulative caps see it).
            freed = self.ledger.riders_gone(riders_gone(riders, view), now)
            accrued = self.ledger.accrue(accruals(active, now, transitions), now)
            log.debug("pass: %d riders gone, %d reservations accrued", freed, accrued)
        except LedgerError as exc:
            errors += 1
            log.warning("could not give back riders or accrue operations: %s", exc)
        late = overruns(active, now)
        for r in late:
            log.info("%s (reservation %d) is past its declared runtime of %.0f s: its excess is charged as it runs",
                     r.workload, r.id, r.max_runtime_s or 0.0)
        stopped: Counter[str] = Counter()
        policy = self.policy() if self.policy is not None else None
        if policy is not None and policy.overrun_action is OverrunAction.STOP:
            for stop in stops(late, view):
                if self._stop(stop, now, policy):
                    stopped[stop.how] += 1
                else:
                    errors += 1
        if self.metrics is not None:
            self.metrics.record_pass(applied, time.time(), len(late), stopped)
        return PassResult(tuple(transitions), applied, errors, stopped)

    def _stop(self, stop: Stop, now: datetime, policy: Policy) -> bool:
        """Suspend (or delete) a workload past its declared runtime and record it in the ledger; a failure is
        logged and tried again next pass (the workload still shows running)."""
        ref = stop.workload
        cache = self.caches.get(((ref.group, ref.kind), ref.namespace))
        if cache is None or not cache.version:
            return False
        path = f"{cache.path}/{ref.name}"
        try:
            if stop.suspend is None:
                self.kube.delete(path)
            else:
                self.kube.patch(path, stop.patch())
            self.ledger.record_decision(stop_record(stop, now, policy.name, policy.version))
        except (KubeError, LedgerError) as exc:
            log.warning("could not stop %s past its declared runtime (%s): %s", ref, stop.how, exc)
            return False
        log.warning("%s is past its declared runtime: %s (profile %s overrun.action stop), reservations %s", ref,
                    "deleted" if stop.suspend is None else "suspended via " + ".".join(stop.suspend),
                    policy.name, [r.id for r in stop.records])
        return True

    def _apply(self, t: Transition) -> int:
        if t.to is ReservationState.RUNNING:
            return self.ledger.mark_running(t.reservation_ids, t.at)
        return self.ledger.finish(t.reservation_ids, t.to, t.at, t.reason, started=t.started)

    def run(self, stop: threading.Event, interval_s: float = 15.0, heartbeat: Callable[[], None] | None = None) -> None:
        """Pass after pass until ``stop`` is set; a failed pass (ledger or API down) is logged and retried.
        Caches start empty on every call: a replica that leads again after a pause lists afresh. ``heartbeat`` is
        called once per turn of the loop (the liveness probe's evidence that it is not stuck)."""
        for key in list(self.caches):
            self._drop(key)
        try:
            while not stop.is_set():
                if heartbeat is not None:
                    heartbeat()
                try:
                    result = self.reconcile_once()
                    if result.applied:
                        log.info("reconcile pass: %s", dict(result.applied))
                except (LedgerError, KubeError) as exc:
                    log.warning("reconcile pass failed, retrying in %.0f s: %s", interval_s, exc)
                stop.wait(interval_s)
        finally:
            for key in list(self.caches):  # a follower watches nothing: its readiness reports no watch
                self._drop(key)
