"""A ledger whose answers a test writes: the outcomes a real database produces only under races or failures (a
reservation refused by the in-transaction re-check, a database that goes away)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from gpuquota.domain import UsageKey
from gpuquota.ledger import (
    AuditRecord,
    Reservation,
    ReservationView,
    ReserveResult,
    ReserveStatus,
    Rider,
    RideResult,
    RideStatus,
    WorkloadRef,
)


@dataclass
class ScriptedLedger:
    """``usage`` answers from ``usages`` (one entry per call, the last repeats), ``reserve`` from ``reserves``
    likewise; a refused reserve names the reservation's first capped charge. With ``fail_with`` set every call
    (``ping`` too) raises it. ``active``: the workloads ``find_active`` finds."""

    usages: list[dict[UsageKey, float]] = field(default_factory=lambda: [{}])
    reserves: list[ReserveStatus] = field(default_factory=lambda: [ReserveStatus.RESERVED])
    fail_with: Exception | None = None
    active: dict[WorkloadRef, ReservationView] = field(default_factory=dict)
    reserved: list[Reservation] = field(default_factory=list)
    recorded: list[AuditRecord] = field(default_factory=list)
    usage_calls: int = 0
    pings: int = 0

    def _maybe_fail(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def usage(self, keys: Iterable[UsageKey], now: datetime) -> dict[UsageKey, float]:
        self._maybe_fail()
        answer = self.usages[min(self.usage_calls, len(self.usages) - 1)]
        self.usage_calls += 1
        wanted = set(keys)
        return {k: v for k, v in answer.items() if k in wanted}

    def reserve(self, reservation: Reservation, now: datetime) -> ReserveResult:
        self._maybe_fail()
        status = self.reserves.pop(0) if len(self.reserves) > 1 else self.reserves[0]
        if status is ReserveStatus.CAP_EXCEEDED:
            charge = next(c for c in reservation.charges if c.cap is not None)
            used = self.usages[min(self.usage_calls, len(self.usages)) - 1].get(charge.key, 0.0)
            return ReserveResult(status, None, charge, used)
        self.reserved.append(reservation)
        return ReserveResult(status, len(self.reserved))

    def record_decision(self, audit: AuditRecord) -> None:
        self._maybe_fail()
        self.recorded.append(audit)

    def release(self, workload: WorkloadRef, now: datetime, reason: str) -> int:
        self._maybe_fail()
        return 1 if self.active.pop(workload, None) is not None else 0

    def mark_releasing(self, workload: WorkloadRef, now: datetime, reason: str) -> int:
        self._maybe_fail()
        return 1 if self.active.pop(workload, None) is not None else 0

    def find_active(self, workload: WorkloadRef) -> ReservationView | None:
        self._maybe_fail()
        return self.active.get(workload)

    def reserved_by(self, request_uid: str) -> int | None:
        self._maybe_fail()
        return None

    def ride(self, owner: WorkloadRef, owner_uid: str, rider: Rider, now: datetime) -> RideResult:
        self._maybe_fail()
        return RideResult(RideStatus.RIDING if owner in self.active else RideStatus.NO_OWNER)

    def count_active(self) -> int:
        self._maybe_fail()
        return len(self.reserved)

    def ping(self) -> None:
        self.pings += 1
        self._maybe_fail()

    def close(self) -> None:
        pass
