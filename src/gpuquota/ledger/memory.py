"""A ledger held in memory for one run: what ``gpuquota check`` judges on, so that an offline answer is the webhook's
own judgement (``gpuquota.admission.judge``) — usage read, decision, reservation with its cap re-check — and each
admitted manifest's charges count against the next, like a sequence of ``kubectl apply``.

Counters are kept per ``UsageKey`` as the policy names them (a window is part of the key), seeded from a usage file.
Not for serving: nothing survives the process, and releasing frees held TPP without settling operations.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from datetime import datetime

from gpuquota.domain import Metric, UsageKey
from gpuquota.ledger.counters import fits
from gpuquota.ledger.types import (
    AuditRecord,
    Reservation,
    ReservationState,
    ReservationView,
    ReserveResult,
    ReserveStatus,
    Rider,
    RideResult,
    RideStatus,
    WorkloadRef,
)


class MemoryLedger:
    """The ``Ledger`` interface over dicts. ``decisions`` holds every audit record written (reservations' too)."""

    def __init__(self, usage: Mapping[UsageKey, float] | None = None) -> None:
        self.counters: dict[UsageKey, float] = dict(usage or {})
        self.reservations: list[tuple[Reservation, datetime]] = []  # id = index + 1
        self.active: set[int] = set()
        self.releasing: set[int] = set()  # active, but a DELETE was reviewed: they hold their TPP, nothing rides
        self.riders: dict[int, dict[str, float]] = {}  # reservation id → pod uid → GPUs (nothing here sees pods go)
        self.decisions: list[AuditRecord] = []
        self._lock = threading.Lock()

    def usage(self, keys: Iterable[UsageKey], now: datetime) -> dict[UsageKey, float]:
        with self._lock:
            return {key: self.counters.get(key, 0.0) for key in keys}

    def reserve(self, reservation: Reservation, now: datetime) -> ReserveResult:
        """Idempotent on ``request_uid``; every capped charge is re-checked before anything is written."""
        with self._lock:
            for index, (held, _) in enumerate(self.reservations):
                if held.request_uid == reservation.request_uid:
                    return ReserveResult(ReserveStatus.DUPLICATE, index + 1)
            for charge in reservation.charges:
                used = self.counters.get(charge.key, 0.0)
                if charge.cap is not None and not fits(used, charge.amount, charge.cap):
                    return ReserveResult(ReserveStatus.CAP_EXCEEDED, None, charge, used)
            for charge in reservation.charges:
                self.counters[charge.key] = self.counters.get(charge.key, 0.0) + charge.amount
            self.reservations.append((reservation, now))
            self.active.add(len(self.reservations))
            self.decisions.append(reservation.audit)
            return ReserveResult(ReserveStatus.RESERVED, len(self.reservations))

    def record_decision(self, audit: AuditRecord) -> None:
        with self._lock:
            self.decisions.append(audit)

    def _active_of(self, workload: WorkloadRef) -> list[int]:
        return sorted(i for i in self.active if self.reservations[i - 1][0].workload == workload)

    def release(self, workload: WorkloadRef, now: datetime, reason: str) -> int:
        """Frees the workload's held TPP; its operations stay charged (it ran for an unknown time)."""
        with self._lock:
            ids = self._active_of(workload)
            for rid in ids:
                self.active.discard(rid)
                for charge in self.reservations[rid - 1][0].charges:
                    if charge.key.metric is Metric.CONCURRENT_TPP:
                        self.counters[charge.key] = self.counters.get(charge.key, 0.0) - charge.amount
            return len(ids)

    def mark_releasing(self, workload: WorkloadRef, now: datetime, reason: str) -> int:
        with self._lock:
            ids = set(self._active_of(workload)) - self.releasing
            self.releasing |= ids
            return len(ids)

    def reserved_by(self, request_uid: str) -> int | None:
        with self._lock:
            return next((i + 1 for i, (held, _) in enumerate(self.reservations) if held.request_uid == request_uid),
                        None)

    def ride(self, owner: WorkloadRef, owner_uid: str, rider: Rider, now: datetime) -> RideResult:
        """As the SQL ledger: within the GPUs the owner's active, not-releasing reservations cover."""
        with self._lock:
            ids = [i for i in self._active_of(owner) if i not in self.releasing
                   and (not owner_uid or not self.reservations[i - 1][0].object_uid
                        or self.reservations[i - 1][0].object_uid == owner_uid)]
            if not ids:
                return RideResult(RideStatus.NO_OWNER)
            budget = sum(self.reservations[i - 1][0].gpus for i in ids)
            riders = self.riders.setdefault(ids[0], {})
            riding = sum(gpus for rid in ids for gpus in self.riders.get(rid, {}).values())
            if any(rider.pod_uid in self.riders.get(rid, {}) for rid in ids):
                return RideResult(RideStatus.DUPLICATE, budget, riding)
            if not fits(riding, rider.gpus, budget):
                return RideResult(RideStatus.OVER_BUDGET, budget, riding)
            riders[rider.pod_uid] = rider.gpus
            return RideResult(RideStatus.RIDING, budget, riding)

    def find_active(self, workload: WorkloadRef) -> ReservationView | None:
        with self._lock:
            ids = [i for i in self._active_of(workload) if i not in self.releasing]
            if not ids:
                return None
            held = [self.reservations[i - 1] for i in ids]
        first = held[0][0]
        operations = [r.operations for r, _ in held]
        return ReservationView(
            workload=workload,
            reservation_ids=tuple(ids),
            tenant=first.tenant,
            jurisdiction=first.jurisdiction,
            tier=first.tier,
            model=first.model,
            state=ReservationState.RESERVED,
            gpus=sum(r.gpus for r, _ in held),
            tpp=sum(r.tpp for r, _ in held),
            operations=None if any(o is None for o in operations) else sum(o or 0.0 for o in operations),
            reserved_at=min(at for _, at in held),
            started_at=None,
            object_uid=first.object_uid,
        )

    def count_active(self) -> int:
        with self._lock:
            return len(self.active)

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None
