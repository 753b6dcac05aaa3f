"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go's leaderelection does it.

One Lease names the holder (``holderIdentity``) and how long its claim lasts (``leaseDurationSeconds`` after
``renewTime``). Every write is a PUT with the resourceVersion just read, so of two candidates racing for a free or
expired Lease exactly one wins (the other gets 409 Conflict). Expiry is judged on this process's monotonic clock
from the moment it last saw the Lease *change*, never by comparing the holder's ``renewTime`` with local wall time:
clock skew between nodes cannot make a follower take over early.

The leader renews every ``retry_period_s`` and steps down by itself when it has not renewed for ``renew_deadline_s``
(shorter than the lease duration), so it stops working before any follower may consider the Lease expired. On a
clean stop it releases the Lease (empty holder) so a follower takes over at once instead of after the lease
duration.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final

from gpuquota.kube.api import JsonObject, KubeApi, KubeError
from gpuquota.kube.errors import ConflictError

log = logging.getLogger(__name__)

LEASE_API: Final = "coordination.k8s.io/v1"
JITTER: Final = 1.2  # a follower waits retry_period × (1 … 1 + JITTER) between tries: candidates do not march in step


def lease_collection(namespace: str) -> str:
    return f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


def micro_time(when: datetime) -> str:
    """Kubernetes ``MicroTime``: RFC 3339 in UTC with exactly six fractional digits."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class ElectionTiming:
    """client-go's defaults: a dead leader is replaced within ~15 s, a live one renews every 2 s."""

    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period_s < self.renew_deadline_s < self.lease_duration_s:
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration, not "
                f"{self.retry_period_s} / {self.renew_deadline_s} / {self.lease_duration_s} s"
            )


class Attempt(Enum):
    """What one try at the Lease found."""

    ACQUIRED = "acquired"  # we hold it now, newly
    RENEWED = "renewed"  # we held it and extended it
    HELD = "held"  # another candidate holds a live claim
    FAILED = "failed"  # API error or lost a write race: try again


class LeaderElector:
    """Campaigns for one Lease. ``tick`` is one step (tests drive it with injected clocks); ``run`` loops it and
    runs the leader's work while leadership lasts.

    ``on_change(is_leader)`` is called whenever leadership is gained or lost (metrics, logs).
    """

    def __init__(
        self,
        kube: KubeApi,
        name: str,
        namespace: str,
        identity: str,
        timing: ElectionTiming | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if not (name and namespace and identity):
            raise ValueError("leader election needs a lease name, a namespace and an identity")
        self.kube = kube
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.timing = timing or ElectionTiming()
        self.clock = clock
        self.monotonic = monotonic
        self.jitter = jitter
        self.on_change = on_change
        self._leader = False
        self._renewed_at = float("-inf")  # monotonic time of our last successful write
        self._observed: tuple[Any, ...] | None = None  # (holder, renewTime, transitions) last seen
        self._observed_at = float("-inf")  # monotonic time it was first seen
        self._lock = threading.Lock()  # tick and release may come from different threads

    @property
    def path(self) -> str:
        return f"{lease_collection(self.namespace)}/{self.name}"

    @property
    def is_leader(self) -> bool:
        return self._leader

    # -- one step ---------------------------------------------------------------------------------------------

    def tick(self) -> bool:
        """Try once to acquire or renew; returns whether this candidate leads now. A leader whose renewals fail
        keeps leading until the renew deadline passes, then steps down; one that finds another holder steps down
        at once."""
        with self._lock:
            now = self.monotonic()
            attempt = self._attempt(now)
            if attempt in (Attempt.ACQUIRED, Attempt.RENEWED):
                self._renewed_at = now
                self._set_leader(True)
            elif attempt is Attempt.HELD or now - self._renewed_at >= self.timing.renew_deadline_s:
                self._set_leader(False)
            return self._leader

    def _set_leader(self, leader: bool) -> None:
        if leader == self._leader:
            return
        self._leader = leader
        if leader:
            log.info("%s: became the leader (lease %s/%s)", self.identity, self.namespace, self.name)
        else:
            log.warning("%s: no longer the leader (lease %s/%s)", self.identity, self.namespace, self.name)
        if self.on_change is not None:
            self.on_change(leader)

    def _attempt(self, now: float) -> Attempt:
        try:
            lease = self.kube.get(self.path)
            if lease is None:
                self.kube.create(lease_collection(self.namespace), self._new_lease())
                self._observe(None, now)
                return Attempt.ACQUIRED
            spec: JsonObject = lease.get("spec") or {}
            holder = spec.get("holderIdentity") or ""
            self._observe(spec, now)
            if holder and holder != self.identity and not self._expired(spec, now):
                return Attempt.HELD
            renewing = holder == self.identity and self._leader
            self.kube.replace(self.path, self._updated(lease, renewing=renewing, previous_holder=holder))
            return Attempt.RENEWED if renewing else Attempt.ACQUIRED
        except KubeError as exc:
            # A conflict: another candidate wrote first, the normal way to lose a race.
            level = logging.DEBUG if isinstance(exc, ConflictError) else logging.WARNING
            log.log(level, "%s: lease %s/%s: %s", self.identity, self.namespace, self.name, exc)
            return Attempt.FAILED

    def _observe(self, spec: JsonObject | None, now: float) -> None:
        record = (
            None if spec is None else (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))
        )
        if record != self._observed:
            self._observed = record
            self._observed_at = now

    def _expired(self, spec: JsonObject, now: float) -> bool:
        duration = spec.get("leaseDurationSeconds")
        if not isinstance(duration, int | float) or duration <= 0:
            duration = self.timing.lease_duration_s
        return now - self._observed_at >= float(duration)

    def _new_lease(self) -> JsonObject:
        stamp = micro_time(self.clock())
        return {
            "apiVersion": LEASE_API,
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": round(self.timing.lease_duration_s),
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": 0,
            },
        }

    def _updated(self, lease: JsonObject, *, renewing: bool, previous_holder: str) -> JsonObject:
        stamp = micro_time(self.clock())
        spec = dict(lease.get("spec") or {})
        transitions = int(spec.get("leaseTransitions") or 0)
        if not renewing:
            spec["acquireTime"] = stamp
            if previous_holder != self.identity:  # from another holder, or from a released (empty) Lease
                transitions += 1
        spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=round(self.timing.lease_duration_s),
            renewTime=stamp,
            leaseTransitions=transitions,
        )
        return {**lease, "spec": spec}  # metadata keeps the resourceVersion just read: a stale write is a 409

    def release(self) -> bool:
        """Give the Lease up (empty holder) if we hold it, so a follower need not wait for it to expire. Returns
        whether it was released; failure only costs the followers one lease duration."""
        with self._lock:
            if not self._leader:
                return False
            released = False
            try:
                lease = self.kube.get(self.path)
                if lease is not None and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                    stamp = micro_time(self.clock())
                    spec = {**lease["spec"], "holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": stamp}
                    self.kube.replace(self.path, {**lease, "spec": spec})
                    released = True
            except KubeError as exc:
                log.warning("%s: could not release lease %s/%s: %s", self.identity, self.namespace, self.name, exc)
            self._set_leader(False)
            return released

    # -- the loop ---------------------------------------------------------------------------------------------

    def follower_wait(self) -> float:
        return self.timing.retry_period_s * (1.0 + JITTER * self.jitter())

    def run(
        self,
        stop: threading.Event,
        lead: Callable[[threading.Event], None],
        on_follow: Callable[[], None] | None = None,
    ) -> None:
        """Campaign until ``stop``. While leading, ``lead(term)`` runs in this thread and must return soon after
        ``term`` is set — which happens when leadership is lost or ``stop`` is set. A background thread renews
        meanwhile. On stop the Lease is released. ``on_follow`` is called after each try that left this candidate
        a follower (a liveness heartbeat: the campaign loop turns)."""
        try:
            while not stop.is_set():
                if not self.tick():
                    if on_follow is not None:
                        on_follow()
                    stop.wait(self.follower_wait())
                    continue
                term = threading.Event()
                keeper = threading.Thread(target=self._keep, args=(stop, term), name="leader-renew", daemon=True)
                keeper.start()
                try:
                    lead(term)
                finally:
                    term.set()
                    keeper.join()
        finally:
            self.release()

    def _keep(self, stop: threading.Event, term: threading.Event) -> None:
        """Renew every retry period until the term ends; end the term when leadership is lost or on stop."""
        try:
            while not term.is_set():
                if stop.wait(self.timing.retry_period_s) or term.is_set():
                    return
                if not self.tick():
                    return
        finally:
            term.set()
