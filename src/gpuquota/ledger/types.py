"""What the ledger stores and returns: reservations, their states, the decision audit record, results.

These are the contract between the webhook (which reserves), the reconciler (which moves reservations through
their states) and the report (which reads them back). They are plain immutable values so that they cross
threads and processes freely and so that tests can build them without a database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from gpuquota.clusters import DEFAULT_CLUSTER
from gpuquota.domain import Charge, UsageKey


class LedgerError(Exception):
    """The ledger could not do what was asked (bad URL, a schema newer than this code, a corrupt row)."""


class LedgerUnavailable(LedgerError):  # noqa: N818 - the name is the webhook's contract
    """The database cannot be reached or locked in time. The webhook fails closed for GPU workloads on this."""


class ClusterConflict(LedgerError):  # noqa: N818 - names what happened
    """This process may not write for the cluster it claims (``gpuquota.clusters.claim_problem`` says why)."""


class LedgerFull(LedgerUnavailable):
    """The database has no room for a write (disk, volume or database quota full). GPU admissions fail closed
    until space returns; reads, and so objects without GPUs, are not affected."""


class ReservationState(StrEnum):
    """Lifecycle of a reservation. Only ``reserved`` and ``running`` hold concurrent TPP.

    *Releasing* is not a state of its own but a mark on an active one (``releasing_at``): a DELETE was reviewed,
    and the reservation keeps holding its TPP until the reconciler sees no pod of the workload's tree holding GPUs
    (docs/ledger.md, "What runs is what is charged")."""

    RESERVED = "reserved"  # admitted; the workload has not been seen running yet
    RUNNING = "running"  # the reconciler saw its pods running
    SETTLED = "settled"  # finished: operations replaced by the actual amount
    RELEASED = "released"  # deleted (or found gone) before finishing: settled to the runtime it had
    EXPIRED = "expired"  # admitted but never created: nothing was used

    @property
    def active(self) -> bool:
        return self in (ReservationState.RESERVED, ReservationState.RUNNING)


ACTIVE_STATES: tuple[ReservationState, ...] = (ReservationState.RESERVED, ReservationState.RUNNING)
FINAL_STATES: tuple[ReservationState, ...] = (
    ReservationState.SETTLED,
    ReservationState.RELEASED,
    ReservationState.EXPIRED,
)


@dataclass(frozen=True, slots=True)
class WorkloadRef:
    """The workload a reservation belongs to. ``group`` is the API group ("" for core and for ``batch`` callers
    that do not care); the pair (kind, group) disambiguates kinds of the same name from different operators."""

    namespace: str
    kind: str
    name: str
    group: str = ""

    def __str__(self) -> str:
        kind = f"{self.kind}.{self.group}" if self.group else self.kind
        return f"{kind} {self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One admission decision, as the compliance record keeps it. Also written as a JSON line by the webhook."""

    time: datetime
    request_uid: str
    operation: str
    user: str
    namespace: str
    kind: str
    name: str
    tenant: str | None
    jurisdiction: str | None
    tier: str | None
    allowed: bool
    dry_run: bool
    message: str
    rules: tuple[str, ...]
    warnings: tuple[str, ...]
    gpus: float
    model: str | None
    tpp: float
    operations: float | None
    profile: str
    profile_version: str
    repeats: int = 1  # identical denials folded into this record (ledger aggregation); 1 when written
    last_time: datetime | None = None  # when the last of them came (None: only one)
    cluster: str = DEFAULT_CLUSTER  # the cluster that decided (the ledger writes its own name: see SqlLedger)

    def to_json(self) -> dict[str, object]:
        return {
            "time": self.time.isoformat(),
            "request_uid": self.request_uid,
            "operation": self.operation,
            "user": self.user,
            "namespace": self.namespace,
            "kind": self.kind,
            "name": self.name,
            "tenant": self.tenant,
            "jurisdiction": self.jurisdiction,
            "tier": self.tier,
            "allowed": self.allowed,
            "dry_run": self.dry_run,
            "message": self.message,
            "rules": list(self.rules),
            "warnings": list(self.warnings),
            "gpus": self.gpus,
            "model": self.model,
            "tpp": self.tpp,
            "operations": self.operations,
            "profile": self.profile,
            "profile_version": self.profile_version,
            "cluster": self.cluster,
        }


@dataclass(frozen=True, slots=True)
class ReservationTerms:
    """What was admitted and on which figures: the part a reservation as written and as read back share."""

    request_uid: str
    workload: WorkloadRef
    tenant: str
    jurisdiction: str | None
    tier: str | None
    model: str | None
    gpus: float
    tpp: float
    operations: float | None
    operations_per_second: float
    max_runtime_s: float | None
    profile: str
    profile_version: str
    # metadata.uid of the admitted object ("" when the review carried none): which object of a name the reservation
    # covers, so a re-created object of the same name is a new workload and its pods cannot ride on the old one.
    object_uid: str = field(default="", kw_only=True)


@dataclass(frozen=True, slots=True)
class Reservation(ReservationTerms):
    """What an admission holds until the workload ends: its charges and the audit record of the decision.

    ``request_uid`` is the AdmissionReview's uid: the API server reuses it on retries, so it is the idempotency key.
    ``charges`` come from ``Decision.charges``; a charge with a ``cap`` is re-checked inside the transaction.
    """

    charges: tuple[Charge, ...]
    audit: AuditRecord


class ReserveStatus(StrEnum):
    RESERVED = "reserved"
    DUPLICATE = "duplicate"  # the same request_uid was reserved before: nothing changed
    CAP_EXCEEDED = "cap-exceeded"  # a capped charge no longer fits: nothing written


@dataclass(frozen=True, slots=True)
class ReserveResult:
    """``exceeded`` and ``used`` (usage before this request, under the charge's window) are set for CAP_EXCEEDED."""

    status: ReserveStatus
    reservation_id: int | None
    exceeded: Charge | None = None
    used: float | None = None


@dataclass(frozen=True, slots=True)
class ReservationView:
    """The active reservations of one workload, summed (a scale-up adds a reservation to the same workload)."""

    workload: WorkloadRef
    reservation_ids: tuple[int, ...]
    tenant: str
    jurisdiction: str | None
    tier: str | None
    model: str | None
    state: ReservationState  # running if any of them runs, else reserved
    gpus: float
    tpp: float
    operations: float | None  # None when any of them is unbounded
    reserved_at: datetime  # the earliest admission
    started_at: datetime | None
    object_uid: str = field(default="", kw_only=True)  # of the first reservation ("" when unknown)


@dataclass(frozen=True, slots=True)
class ReservationRecord(ReservationTerms):
    """One reservation row as stored, for the reconciler, reports and tests."""

    id: int
    state: ReservationState
    reserved_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    actual_operations: float | None
    reason: str
    releasing_at: datetime | None = field(default=None, kw_only=True)  # when a DELETE was reviewed
    accrued_operations: float = field(default=0.0, kw_only=True)  # measured from its pods' runtime so far
    cluster: str = field(default=DEFAULT_CLUSTER, kw_only=True)  # the cluster that admitted it and settles it

    @property
    def releasing(self) -> bool:
        return self.releasing_at is not None


class RideStatus(StrEnum):
    RIDING = "riding"  # within the owner's budget: recorded, nothing reserved
    DUPLICATE = "duplicate"  # this pod rides already (a retried review): nothing changed
    OVER_BUDGET = "over-budget"  # the owner's GPUs are all taken by live riders: judge the pod on its own
    NO_OWNER = "no-owner"  # no active, not-releasing reservation of that object: judge the pod on its own


@dataclass(frozen=True, slots=True)
class Rider:
    """A controller-made pod passing on its owner's reservation. ``pod_uid`` identifies it (its metadata.uid, or
    ``<namespace>/<name>`` when the review carried none); ``gpus`` is what it takes of the owner's budget."""

    pod_uid: str
    namespace: str
    name: str
    gpus: float


@dataclass(frozen=True, slots=True)
class RideResult:
    status: RideStatus
    budget: float = 0.0  # GPUs the owner's active reservations cover
    riding: float = 0.0  # GPUs of its live riders before this pod


@dataclass(frozen=True, slots=True)
class RiderRecord(Rider):
    reservation_id: int
    admitted_at: datetime


class Ledger(Protocol):
    """What the webhook needs. Every method is safe to call from several threads at once."""

    def usage(self, keys: Iterable[UsageKey], now: datetime) -> dict[UsageKey, float]:
        """Current usage of each key (absent keys count zero). Operations windows are summed from day buckets."""
        ...

    def reserve(self, reservation: Reservation, now: datetime) -> ReserveResult:
        """One transaction: idempotent on ``request_uid``; re-checks every capped charge; writes the reservation,
        its counters and its audit record together, or nothing at all."""
        ...

    def record_decision(self, audit: AuditRecord) -> None:
        """Denials, dry-runs and skipped requests (no reservation)."""
        ...

    def release(self, workload: WorkloadRef, now: datetime, reason: str) -> int:
        """Release every active reservation of the workload now, settling operations to the runtime it had. Only
        for one who knows the GPUs are gone (tests, an operator's repair); a DELETE review calls
        ``mark_releasing``. Returns how many reservations were released."""
        ...

    def mark_releasing(self, workload: WorkloadRef, now: datetime, reason: str) -> int:
        """A DELETE of the workload was reviewed: mark its active reservations releasing (they keep their TPP until
        the reconciler sees their GPUs gone, and no new pod may ride on them). Returns how many were marked."""
        ...

    def find_active(self, workload: WorkloadRef) -> ReservationView | None:
        """The workload's active reservations not marked releasing, or ``None``."""
        ...

    def reserved_by(self, request_uid: str) -> int | None:
        """The reservation a request (AdmissionReview uid) made, if any: how a retry is told from a re-create."""
        ...

    def ride(self, owner: WorkloadRef, owner_uid: str, rider: Rider, now: datetime) -> RideResult:
        """One transaction: record ``rider`` on ``owner``'s active, not-releasing reservations (of the object with
        ``owner_uid`` when both are known) if its GPUs fit in what they cover beside their live riders."""
        ...

    def count_active(self) -> int:
        """How many reservations are reserved or running (``gpuquota_reservations_active``): one COUNT query."""
        ...

    def ping(self) -> None:
        """Raise ``LedgerUnavailable`` when the database cannot be used."""
        ...

    def close(self) -> None: ...


class ReconcilerLedger(Ledger, Protocol):
    """What the reconciler needs on top of the webhook's view: list active work and move it through its states."""

    def active_reservations(self) -> list[ReservationRecord]: ...

    def mark_running(self, reservation_ids: Iterable[int], started: datetime) -> int:
        """reserved → running (keeps the earliest start); returns how many changed."""
        ...

    def finish(
        self,
        reservation_ids: Iterable[int],
        state: ReservationState,
        ended: datetime,
        reason: str,
        started: datetime | None = None,
    ) -> int:
        """active → settled/released/expired: free the concurrent TPP, replace reserved (and accrued) operations by
        actual (``operations_per_second`` × runtime, never clamped to a declared runtime; zero when expired), end
        its riders. Already final reservations are left alone."""
        ...

    def live_riders(self) -> list[RiderRecord]:
        """Riders of active reservations that the reconciler has not seen gone."""
        ...

    def riders_gone(self, riders: Iterable[tuple[int, str]], at: datetime) -> int:
        """(reservation id, pod uid) pairs whose pod is gone or finished: their GPUs go back to the budget."""
        ...

    def accrue(self, measured: Iterable[tuple[int, float]], at: datetime) -> int:
        """(reservation id, operations measured so far) of running reservations: whatever exceeds both the reserved
        operations and what was accrued before is charged now to the reservation's operations counters (today's
        bucket), so cumulative caps see running work. Returns how many reservations changed."""
        ...
