"""The ledger: reservations, usage counters and the decision audit, in SQLite (one replica) or PostgreSQL (HA).

Both backends share one schema, one set of migrations and one reserving algorithm, so caps mean the same
thing whichever database holds them. See docs/ledger.md for the schema, the states and why reserving can
never overrun a cap under concurrency.
"""

from gpuquota.ledger.open import open_ledger
from gpuquota.ledger.types import (
    ACTIVE_STATES,
    FINAL_STATES,
    AuditRecord,
    ClusterConflict,
    Ledger,
    LedgerError,
    LedgerFull,
    LedgerUnavailable,
    ReconcilerLedger,
    Reservation,
    ReservationRecord,
    ReservationState,
    ReservationView,
    ReserveResult,
    ReserveStatus,
    Rider,
    RideResult,
    RiderRecord,
    RideStatus,
    WorkloadRef,
)

__all__ = [
    "ACTIVE_STATES",
    "FINAL_STATES",
    "AuditRecord",
    "ClusterConflict",
    "Ledger",
    "LedgerError",
    "LedgerFull",
    "LedgerUnavailable",
    "ReconcilerLedger",
    "Reservation",
    "ReservationRecord",
    "ReservationState",
    "ReservationView",
    "ReserveResult",
    "ReserveStatus",
    "RideResult",
    "RideStatus",
    "Rider",
    "RiderRecord",
    "WorkloadRef",
    "open_ledger",
]
