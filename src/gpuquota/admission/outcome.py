"""What judging a review can come to — plain values, no HTTP, metrics or audit in them.

``gpuquota.admission.judge`` returns one of these; ``gpuquota.admission.answer`` is the one place that turns it into
the AdmissionReview reply, the metrics and the audit line. ``gpuquota check`` reads ``Decided`` directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gpuquota.admission.owners import OwnerRef
from gpuquota.admission.suspension import Suspension
from gpuquota.domain import Decision, Demand, Tenant, Usage
from gpuquota.ledger import AuditRecord, ReserveStatus, WorkloadRef
from gpuquota.policy import Policy


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """A GPU workload to decide: everything the ledger part needs, found before the ledger is touched."""

    uid: str  # the review's uid: the reservation's idempotency key
    operation: str
    user: str
    dry_run: bool
    policy: Policy
    demand: Demand  # for an UPDATE, only its growth: caps on what is held or spent need room for that alone
    whole: Demand | None  # the whole workload an UPDATE grows, for per-workload rules (None: ``demand`` is whole)
    tenant: Tenant
    workload: WorkloadRef
    owners: tuple[OwnerRef, ...] = ()  # claimed owners the ledger must still confirm (controllers' objects only)
    suspension: Suspension = Suspension.NONE  # HELD: judged alone, reserves nothing; RESUMING: see admission.suspension
    queue: str = ""  # the Kueue LocalQueue its label names ("": not Kueue-managed)
    object_uid: str = ""  # the object's metadata.uid: a re-created object of the same name is another workload


@dataclass(frozen=True, slots=True)
class Skipped:
    """Not ours to judge: no GPU, a kind gpuquota does not read, a shrink, a dry-run delete."""


@dataclass(frozen=True, slots=True)
class Released:
    """A DELETE: ``count`` reservations marked releasing (they hold their TPP until the reconciler sees their GPUs
    gone); ``error`` when the ledger could not be reached (the reconciler settles it later: a delete is never
    refused)."""

    count: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Owned:
    """Part of a workload whose GPUs were reserved when it was admitted (``retry``: the API server retrying a create
    that was admitted): passes without reserving again. ``cached``: the owner cache answered, the ledger was not
    asked."""

    owner: OwnerRef
    retry: bool = False
    cached: bool = False


@dataclass(frozen=True, slots=True)
class Passed:
    """Allowed without judging the caps or reserving, for the reason ``why`` (the audit line's message): a suspended
    Kueue-managed object, a workload being suspended, one un-suspended onto the reservation it already holds
    (``reservation``: its ids). ``ledger``: the ledger was read to know it."""

    why: str
    reservation: tuple[int, ...] = ()
    ledger: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Decided:
    """The policy's decision on a case. ``status``: what the ledger did (``None``: nothing reserved — a denial, a dry
    run, nothing charged); ``record``: the decision's audit record (the ledger's, except for a dry run, which writes
    nothing); ``usage``: the figures decided on."""

    case: Case
    decision: Decision
    usage: Usage
    record: AuditRecord
    status: ReserveStatus | None = None

    @property
    def admitted(self) -> bool:
        return self.status is ReserveStatus.RESERVED


@dataclass(frozen=True, slots=True)
class Invalid:
    """The object cannot be counted (a malformed field, a bad envelope): refused, nothing written."""

    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class LedgerDown:
    """The ledger could not be used: GPU workloads are refused (fail closed). ``full``: it is reachable but has no
    room for a write (disk, volume or database quota full)."""

    error: str
    full: bool = False


@dataclass(frozen=True, slots=True)
class Unjudgeable:
    """A scale-up whose parent could not be read from the API server: refused (fail closed), saying why."""

    before: int
    after: int
    why: str


@dataclass(frozen=True, slots=True)
class Unresolved:
    """A workload whose pods depend on an object the webhook cannot read (a TrainJob's runtime): refused (fail
    closed). ``message`` says what is missing and what to do; ``missing``: the object does not exist."""

    kind: str
    message: str
    missing: bool


@dataclass(frozen=True, slots=True)
class Internal:
    """A bug: the GPU workload is refused and the server keeps serving (the traceback is in the log)."""


Outcome = Skipped | Released | Owned | Passed | Decided | Invalid | LedgerDown | Unjudgeable | Unresolved | Internal


@dataclass(frozen=True, slots=True)
class Deferred:
    """The part of judging that needs the ledger (or the API server): ``run`` is sync and safe in a worker thread.
    ``blocking``: it calls the API server, so it must leave the event loop even where ledger calls run inline."""

    run: Callable[[], Outcome]
    blocking: bool = False
