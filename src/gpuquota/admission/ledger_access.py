"""The ledger as the webhook holds it: opened lazily, so a server whose database is down at start still starts,
answers health probes, lets non-GPU objects through and fails closed for GPU workloads until the database is back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime

from gpuquota.domain import UsageKey
from gpuquota.ledger import (
    AuditRecord,
    Ledger,
    LedgerUnavailable,
    Reservation,
    ReservationView,
    ReserveResult,
    Rider,
    RideResult,
    WorkloadRef,
)


class DeferredLedger:
    """A ``Ledger`` that opens the real one on first use (and after every failed open), then delegates."""

    def __init__(self, opener: Callable[[], Ledger], retry_s: float = 2.0) -> None:
        self._opener = opener
        self._ledger: Ledger | None = None
        self._lock = threading.Lock()
        self._retry_s = retry_s
        self._failed_at = -1e9
        self._last_error = ""

    @property
    def opened(self) -> Ledger | None:
        return self._ledger

    def _get(self) -> Ledger:
        ledger = self._ledger
        if ledger is not None:
            return ledger
        if time.monotonic() - self._failed_at < self._retry_s:
            # Requests must not queue behind connection attempts: answer at once until the next retry is due.
            raise LedgerUnavailable(self._last_error)
        return self._try_open()

    def _try_open(self) -> Ledger:
        with self._lock:
            if self._ledger is None:
                try:
                    self._ledger = self._opener()
                except LedgerUnavailable as exc:
                    self._failed_at = time.monotonic()
                    self._last_error = str(exc)
                    raise
            return self._ledger

    def open(self) -> bool:
        """Try to open now (start-up and the background health check); ``False`` while the database is down."""
        try:
            self._try_open()
        except LedgerUnavailable:
            return False
        return True

    def usage(self, keys: Iterable[UsageKey], now: datetime) -> dict[UsageKey, float]:
        return self._get().usage(keys, now)

    def reserve(self, reservation: Reservation, now: datetime) -> ReserveResult:
        return self._get().reserve(reservation, now)

    def record_decision(self, audit: AuditRecord) -> None:
        self._get().record_decision(audit)

    def release(self, workload: WorkloadRef, now: datetime, reason: str) -> int:
        return self._get().release(workload, now, reason)

    def mark_releasing(self, workload: WorkloadRef, now: datetime, reason: str) -> int:
        return self._get().mark_releasing(workload, now, reason)

    def find_active(self, workload: WorkloadRef) -> ReservationView | None:
        return self._get().find_active(workload)

    def reserved_by(self, request_uid: str) -> int | None:
        return self._get().reserved_by(request_uid)

    def ride(self, owner: WorkloadRef, owner_uid: str, rider: Rider, now: datetime) -> RideResult:
        return self._get().ride(owner, owner_uid, rider, now)

    def ping(self) -> None:
        self._get().ping()

    def count_active(self) -> int:
        return self._get().count_active()

    def close(self) -> None:
        with self._lock:
            if self._ledger is not None:
                self._ledger.close()
                self._ledger = None
