"""Judging one review: from the request to an ``Outcome`` — no HTTP, metrics or audit line in here.

Work is split in two so the server can keep the event loop free where it matters: ``begin`` does everything that
needs no database (routing, the owner caches, the no-GPU fast path, demand extraction, tenant lookup) and either
returns an outcome at once or a ``Deferred`` whose ``run`` touches the ledger (and, for a scale-up or an LWS claim,
the API server). ``decide`` is the ledger part for one case; ``gpuquota check`` calls it too, on an in-memory
ledger, so offline answers are the webhook's by construction.

Failure rules (see docs/webhook.md): bad input is ``Invalid`` — nothing is written; an unreachable ledger is
``LedgerDown`` (fail closed for GPU workloads only); anything unexpected is ``Internal``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, Final

from gpuquota.admission.live import Snapshot
from gpuquota.admission.namespaces import NamespaceCache
from gpuquota.admission.outcome import (
    Case,
    Decided,
    Deferred,
    Internal,
    Invalid,
    LedgerDown,
    Outcome,
    Owned,
    Passed,
    Released,
    Skipped,
    Unjudgeable,
    Unresolved,
)
from gpuquota.admission.owners import OwnerRef
from gpuquota.admission.review import AdmissionRequest, ReviewError, decode_object
from gpuquota.admission.routing import Route
from gpuquota.admission.suspension import Suspension, suspension
from gpuquota.admission.trust import NO_CLAIMS, Trust
from gpuquota.clusters import DEFAULT_CLUSTER
from gpuquota.domain import Decision, Tenant, Usage
from gpuquota.errors import UserError
from gpuquota.kube import KubeApi, KubeError
from gpuquota.kube.api import JsonObject
from gpuquota.ledger import (
    AuditRecord,
    Ledger,
    LedgerError,
    LedgerFull,
    Reservation,
    ReserveResult,
    ReserveStatus,
    Rider,
    RideStatus,
    WorkloadRef,
)
from gpuquota.policy import Policy, decide, usage_keys
from gpuquota.policy.format import clip
from gpuquota.reconcile.resources import RESOURCES
from gpuquota.workloads import (
    DEFAULT_ALL_DEVICES,
    SCALE_SUBRESOURCES,
    ClaimSource,
    ExtractContext,
    GpuResources,
    ReferenceSource,
    UnreadableError,
    WorkloadError,
    extract,
    requests_gpu,
    resolves,
    scale_delta,
    scale_replicas,
    with_replicas,
)
from gpuquota.workloads import gpu_resources as gpu_resources_table
from gpuquota.workloads.registry import BY_KEY
from gpuquota.workloads.suspension import kueue_queue

log = logging.getLogger("gpuquota.admission")

MAX_RESERVE_ATTEMPTS: Final = 3
SKIPPED: Final = Skipped()
SUSPENDING: Final = Passed("suspended: nothing is charged or released by this request; the reservation it holds goes "
                           "when its GPUs do (docs/webhook.md, 'Suspended workloads')")


def audit_record(case: Case, decision: Decision, time: datetime, cluster: str = DEFAULT_CLUSTER) -> AuditRecord:
    """The compliance record of a decision (the ledger keeps it; the audit line repeats it)."""
    return AuditRecord(
        time=time,
        request_uid=case.uid,
        operation=case.operation,
        user=case.user,
        namespace=case.workload.namespace,
        kind=case.workload.kind,
        name=case.workload.name,
        tenant=case.tenant.name,
        jurisdiction=case.tenant.jurisdiction,
        tier=decision.tier,
        allowed=decision.allowed,
        dry_run=case.dry_run,
        message=decision.message,
        rules=tuple(o.rule_id for o in decision.outcomes),
        warnings=decision.warnings,
        gpus=case.demand.gpus,
        model=case.demand.model,
        tpp=case.demand.tpp,
        operations=decision.operations,
        profile=decision.profile,
        profile_version=decision.profile_version,
        cluster=cluster,
    )


def reservation_of(case: Case, decision: Decision, record: AuditRecord) -> Reservation:
    demand = case.demand
    return Reservation(
        request_uid=case.uid,
        workload=case.workload,
        tenant=case.tenant.name,
        jurisdiction=case.tenant.jurisdiction,
        tier=decision.tier,
        model=demand.model,
        gpus=demand.gpus,
        tpp=demand.tpp,
        operations=decision.operations,
        operations_per_second=decision.operations_per_second,
        max_runtime_s=demand.max_runtime_s,
        profile=decision.profile,
        profile_version=decision.profile_version,
        charges=decision.charges,
        audit=record,
        object_uid=case.object_uid,
    )


def guarded(work: Callable[[], Outcome], uid: str) -> Outcome:
    """``work``'s outcome; a ledger failure is ``LedgerDown``, anything unexpected ``Internal`` (logged)."""
    try:
        return work()
    except LedgerFull as exc:
        log.error("ledger full on request %s: %s", uid, exc)
        return LedgerDown(str(exc), full=True)
    except LedgerError as exc:
        log.error("ledger unavailable on request %s: %s", uid, exc)
        return LedgerDown(str(exc))
    except Exception:
        log.exception("internal error on admission request %s", uid)
        return Internal()


def _counted_alike(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
    """Whether an UPDATE leaves what demand is read from (spec, annotations) as it was: nothing can grow, so nothing
    need be read — a TrainJob whose runtime is gone can still lose its finalizers."""
    if old is None:
        return False
    notes = (obj.get("metadata") or {}).get("annotations"), (old.get("metadata") or {}).get("annotations")
    return bool(obj.get("spec") == old.get("spec") and notes[0] == notes[1])


def screened(request: AdmissionRequest, work: Callable[[], Outcome | Deferred]) -> Outcome | Deferred:
    """``work``'s result for ``request``; bad input is ``Invalid``, an object it names that cannot be read
    ``Unresolved``, anything unexpected ``Internal`` (logged)."""
    try:
        return work()
    except ReviewError as exc:
        return Invalid(request.kind.kind, exc.message)
    except WorkloadError as exc:
        return Invalid(request.kind.kind, str(exc))
    except UnreadableError as exc:
        return Unresolved(request.kind.kind, str(exc), exc.missing)
    except Exception:
        log.exception("internal error on admission request %s", request.uid)
        return Internal()


class Judge:
    """The webhook's judgement. One instance per server process; every method is thread-safe."""

    def __init__(
        self,
        ledger: Ledger,
        trust: Trust | None = None,
        *,
        clock: Callable[[], datetime],
        namespaces: NamespaceCache | None = None,
        inventory_models: Callable[[], tuple[str, ...]] = lambda: (),
        kube: KubeApi | None = None,
        gpu_resources: GpuResources | None = None,
        all_devices: int = DEFAULT_ALL_DEVICES,
        claims: ClaimSource | None = None,
        references: ReferenceSource | None = None,
        cluster: str = DEFAULT_CLUSTER,
    ) -> None:
        self.ledger = ledger
        self.cluster = cluster  # this cluster's name: the cluster scope's subject, where perCluster rules count
        self.trust = trust  # None: no owner claims are believed (``gpuquota check``)
        self.kube = kube  # reads the parent of a ``/scale`` request; None: no cluster access (scale-ups refused)
        self.namespaces = namespaces
        self.clock = clock
        self._inventory_models = inventory_models
        self._ctx: ExtractContext | None = None
        self._ctx_policy: Policy | None = None  # the policy ``_ctx`` was built for (a reload rebuilds it)
        self.gpu_resources = gpu_resources or gpu_resources_table()  # which resource names are GPUs
        self.all_devices = all_devices  # what a DRA "All" request or an unreadable claim counts as
        self.claims = claims  # the DRA claims pods name (None: --kube none, every claim counts as unreadable)
        self.references = references  # what a TrainJob's pods are built from (None: counted from the object alone)

    # --- the part without I/O -------------------------------------------------------------------------------------

    def begin(self, step: Route, request: AdmissionRequest, snap: Snapshot) -> Outcome | Deferred:
        """``request`` routed as ``step`` (a ``/scale`` request already turned into one on its parent)."""
        if step is Route.OBJECT:
            return screened(request, lambda: self._object(request, snap))
        if step is Route.SCALE:
            return screened(request, lambda: self._scale(request, snap))
        return Deferred(lambda: self._release(request)) if step is Route.RELEASE else SKIPPED

    def _object(self, request: AdmissionRequest, snap: Snapshot) -> Outcome | Deferred:
        """CREATE/UPDATE of a workload kind: the owned and no-GPU fast paths, then demand and tenant."""
        obj = decode_object(request.object, "object", request.uid)
        if obj is None:
            raise ReviewError(f"{request.operation} of {request.kind.kind} carries no object", request.uid)
        # Controller-made objects of an admitted workload: decided by the owner, so before any counting (a burst of
        # a big job's pods is the hottest path there is).
        claims = self.trust.claims(request, obj) if self.trust is not None else NO_CLAIMS
        if claims.owned is not None:
            return Owned(claims.owned, cached=True)
        if self.references is not None and resolves(obj):
            if request.operation == "UPDATE" and _counted_alike(obj, decode_object(request.old_object, "oldObject",
                                                                                 request.uid)):
                return SKIPPED  # nothing it is counted from changed (a finalizer, a label): nothing to read or refuse
            # Its pods come from objects it names (a TrainJob's runtime), GPUs or not: read them off the event loop.
            return Deferred(lambda: self._resolved(request, snap, obj, claims.unchecked), blocking=True)
        if not requests_gpu(obj, self.gpu_resources):
            return SKIPPED
        old = decode_object(request.old_object, "oldObject", request.uid) if request.operation == "UPDATE" else None
        return self._case(request, snap, obj, old, claims.unchecked, reads=claims.reads)

    def _resolved(self, request: AdmissionRequest, snap: Snapshot, obj: Mapping[str, Any],
                  owners: tuple[OwnerRef, ...]) -> Outcome:
        """``_case`` of a workload whose demand reads the API server; an object it cannot read refuses it."""
        def case() -> Outcome | Deferred:
            old = decode_object(request.old_object, "oldObject", request.uid) if request.operation == "UPDATE" else None
            return self._case(request, snap, obj, old, owners)
        step = screened(request, case)
        return step.run() if isinstance(step, Deferred) else step

    def _case(self, request: AdmissionRequest, snap: Snapshot, obj: Mapping[str, Any], old: Mapping[str, Any] | None,
              owners: tuple[OwnerRef, ...], *, reads: bool = False) -> Outcome | Deferred:
        """Demand (for an UPDATE, its growth over ``old``) and tenant of a GPU object, then the ledger's part. A
        suspended object, or one being un-suspended, is judged whole (``admission.suspension``)."""
        step = suspension((request.kind.group, request.kind.kind), obj, old)
        if step is Suspension.SUSPENDING:
            return SUSPENDING
        if step is Suspension.QUEUED:
            return Passed(f"suspended and managed by Kueue (queue {kueue_queue(obj)!r}): nothing is reserved; "
                          "gpuquota's AdmissionCheck admits it when Kueue does")
        ctx = self.context(snap)
        demand = whole = extract(obj, ctx, self.claims, self.references)
        if demand is not None and old is not None and step is Suspension.NONE:
            before = extract(old, ctx, self.claims, self.references)
            if before is not None:
                demand = scale_delta(before, demand)  # only growth needs new room
        if demand is None or not demand.groups:
            return SKIPPED
        metadata = obj.get("metadata") or {}
        name = request.name or str(metadata.get("name") or "")
        uid = metadata.get("uid")
        case = Case(
            uid=request.uid,
            operation=request.operation,
            user=request.user_info.username,
            dry_run=request.dry_run,
            policy=snap.policy,
            demand=demand,
            whole=whole if whole is not demand else None,
            tenant=self.tenant(snap, request.namespace),
            workload=WorkloadRef(request.namespace, request.kind.kind, name, request.kind.group),
            owners=owners,
            suspension=step,
            queue=kueue_queue(obj) or "",
            object_uid=uid if isinstance(uid, str) else "",
        )
        return Deferred(lambda: guarded(lambda: self.decide(case), case.uid), blocking=reads)

    def context(self, snap: Snapshot) -> ExtractContext:
        policy = snap.policy
        models = self._inventory_models()
        ctx = self._ctx
        if (ctx is None or self._ctx_policy is not policy or ctx.catalog is not snap.catalog
                or ctx.inventory_models != models):
            ctx = ExtractContext(
                snap.catalog, models, policy.default_model, policy.shared_gpu_fraction, policy.unknown_model_tpp,
                resources=self.gpu_resources, all_devices=self.all_devices,
            )
            self._ctx, self._ctx_policy = ctx, policy
        return ctx

    def tenant(self, snap: Snapshot, namespace: str) -> Tenant:
        """From the namespace's labels (cluster view) or the tenants file — never from the workload's labels."""
        labels: Mapping[str, str] | None = None
        if self.namespaces is not None:
            labels = self.namespaces.labels(namespace)
        # A namespace nobody assigned is its own tenant with no jurisdiction: unknownJurisdiction applies.
        return snap.tenants.resolve_or_unknown(namespace, labels)

    # --- the scale subresource ------------------------------------------------------------------------------------

    def _scale(self, request: AdmissionRequest, snap: Snapshot) -> Outcome | Deferred:
        """``<resource>/scale`` of a kind with a scale subresource (``request`` names the parent's kind, its objects
        are the Scales): judged as an UPDATE of the parent.

        The Scale objects alone tell growth from shrinking, so a scale-down (or no change) passes without any I/O.
        A scale-up needs the parent (its pod templates): it is read from the API server off the event loop.
        """
        before = scale_replicas(decode_object(request.old_object, "oldObject", request.uid), "oldObject")
        after = scale_replicas(decode_object(request.object, "object", request.uid), "object")
        if after <= before:
            return SKIPPED  # shrinking is settled by the reconciler, never blocked
        return Deferred(lambda: self._scale_up(request, snap, before, after), blocking=True)

    def _scale_up(self, request: AdmissionRequest, snap: Snapshot, before: int, after: int) -> Outcome:
        try:
            stored = self._read_parent(request)
            if isinstance(stored, str):
                return Unjudgeable(before, after, stored)
            field = SCALE_SUBRESOURCES[(request.kind.group, request.kind.kind)]
            old, new = with_replicas(stored, field, before), with_replicas(stored, field, after)
            if not requests_gpu(new, self.gpu_resources):
                return SKIPPED
            step = self._case(request, snap, new, old, ())
        except WorkloadError as exc:
            return Invalid(request.kind.kind, str(exc))
        except Exception:
            log.exception("internal error on admission request %s", request.uid)
            return Internal()
        return step.run() if isinstance(step, Deferred) else step

    def _read_parent(self, request: AdmissionRequest) -> JsonObject | str:
        """The workload a Scale belongs to, as stored, or why it cannot be read."""
        kind = request.kind.kind
        if self.kube is None:
            return (f"this webhook runs without cluster access (--kube none), so it cannot read the {kind} the Scale "
                    "belongs to")
        resource = RESOURCES[(request.kind.group, kind)]
        version = request.kind.version or resource.versions[0]  # the version the Scale was asked through
        try:
            stored = self.kube.get(f"{resource.collection(version, request.namespace)}/{request.name}")
        except (KubeError, UserError) as exc:  # UserError: the client's credentials (token file) are unreadable
            log.error("cannot read %s %s/%s to judge its scale-up: %s", kind, request.namespace, request.name, exc)
            return f"reading the {kind} from the API server failed ({exc})"
        if stored is None:
            return f"the API server does not have that {kind}"
        return stored

    # --- the part with the ledger ---------------------------------------------------------------------------------

    def _release(self, request: AdmissionRequest) -> Released:
        """A DELETE frees nothing by itself: the workload's reservations are marked releasing and keep their TPP
        until the reconciler sees no pod of the workload's tree holding GPUs (an orphaning delete, a long grace
        period or a finalizer leave pods running; a DELETE refused later in the chain leaves everything running).
        Never refused, not even with the ledger down (the reconciler settles what was missed)."""
        ref = WorkloadRef(request.namespace, request.kind.kind, request.name, request.kind.group)
        if self.trust is not None:
            self.trust.forget(ref)
        try:
            return Released(self.ledger.mark_releasing(ref, self.clock(), "deleted"))
        except LedgerError as exc:
            log.error("could not mark %s releasing (the reconciler settles it when it is gone): %s", ref, exc)
            return Released(0, str(exc))

    def decide(self, case: Case) -> Outcome:
        """Owner claims, usage, the policy's decision, and the reservation (or the record of a refusal).
        Raises ``LedgerError`` when the ledger cannot be used."""
        if case.owners and self.trust is not None:
            # A GPU pod beyond its owner's budget (a replacement while old pods still hold GPUs, a second run) is
            # judged on its own below.
            rides = case.workload.kind == "Pod" and not case.dry_run
            owner = self.trust.verified_owner(case.workload.namespace, case.owners, self.ledger,
                                              (lambda ref, uid: self._ride(case, ref, uid)) if rides else None)
            if owner is not None:
                return Owned(owner)
        settled = self._held(case) if case.suspension is Suspension.HELD else (
            self._holding(case) if case.suspension is Suspension.RESUMING else None)
        if settled is not None:
            return settled
        now = self.clock()
        usage, decision = self._on_usage(case, now)
        if not decision.allowed and self._already_admitted(case):
            return Owned(OwnerRef(case.workload.group, case.workload.kind, case.workload.name), retry=True)
        if case.dry_run or not BY_KEY[(case.workload.group, case.workload.kind)].reserves:
            # sideEffects: NoneOnDryRun — judged on the real figures, but nothing is written (the audit line is kept).
            # A kind that reserves nothing (a CronJob) is judged to tell the tenant whether a run fits; each run is
            # judged and charged when its controller creates it.
            return Decided(case=case, decision=decision, usage=usage,
                           record=audit_record(case, decision, now, self.cluster))
        if not decision.allowed or not decision.charges:
            record = audit_record(case, decision, now, self.cluster)
            self.ledger.record_decision(record)
            return Decided(case=case, decision=decision, usage=usage, record=record)
        return self._reserve(case, decision, usage, now)

    def _on_usage(self, case: Case, now: datetime) -> tuple[Usage, Decision]:
        """What the ledger counts now for ``case``'s rules, and the policy's decision on it."""
        usage = self.ledger.usage(usage_keys(case.policy, case.demand, case.tenant, now, self.cluster), now)
        return usage, decide(case.demand, case.tenant, usage, case.policy, now=now, whole=case.whole,
                             cluster=self.cluster)

    def _held(self, case: Case) -> Decided:
        """A suspended workload: judged as if nothing else were held or spent — so only what could never be admitted
        (a per-workload rule, a cap its demand alone exceeds, an unknown jurisdiction) is refused — and reserved
        nowhere. When it would not fit now, the tenant is warned that un-suspending it would be refused."""
        now = self.clock()
        alone = decide(case.demand, case.tenant, {}, case.policy, now=now, cluster=self.cluster)
        usage: Usage = {}
        decision = alone
        if alone.allowed:
            usage = self.ledger.usage(usage_keys(case.policy, case.demand, case.tenant, now, self.cluster), now)
            current = decide(case.demand, case.tenant, usage, case.policy, now=now, cluster=self.cluster)
            warnings = alone.warnings
            if not current.allowed:
                warnings = (*warnings, clip(f"un-suspending it now would be refused: {current.message}", 400))
            decision = replace(alone, message=f"{alone.message}; suspended: nothing is reserved until it is "
                                              "un-suspended, when it is judged against the caps", warnings=warnings)
        record = audit_record(case, decision, now, self.cluster)
        if not case.dry_run:
            self.ledger.record_decision(record)
        return Decided(case=case, decision=decision, usage=usage, record=record)

    def _holding(self, case: Case) -> Passed | None:
        """An un-suspended workload that already holds an active reservation covering it — gpuquota's Kueue
        AdmissionCheck's, made when Kueue admitted it, or its own from before it was suspended: it passes on that
        one. ``None``: it holds none, one of another object of that name (deleted and re-created: another
        workload, by uid as the Kueue contract and riding pods have it), or one too small (grown while suspended):
        judged whole, like a new workload. The view's uid is its oldest reservation's, so a leftover of an earlier
        object of that name makes this one judged (over-counted until the reconciler settles the leftover, never
        under-counted)."""
        view = self.ledger.find_active(case.workload)
        if view is None or view.tpp < case.demand.tpp * (1 - 1e-9):
            return None
        if case.object_uid and view.object_uid and view.object_uid != case.object_uid:
            return None
        by = (f"gpuquota's Kueue AdmissionCheck admitted it (queue {case.queue!r})" if case.queue
              else "it was reserved before it was suspended")
        ids = ", ".join(map(str, view.reservation_ids))
        return Passed(f"un-suspended onto the active reservation it holds ({ids}: {by}); nothing is charged twice",
                      reservation=view.reservation_ids, ledger=True)

    def _reserve(self, case: Case, decision: Decision, usage: Mapping[Any, float], now: datetime) -> Decided:
        """Reserve; if the ledger's in-transaction re-check refuses, decide again on fresh usage (a race lost)."""
        for _attempt in range(MAX_RESERVE_ATTEMPTS):
            record = audit_record(case, decision, now, self.cluster)
            result = self.ledger.reserve(reservation_of(case, decision, record), now)
            if result.status is not ReserveStatus.CAP_EXCEEDED:
                return Decided(case=case, decision=decision, usage=usage, status=result.status, record=record)
            # Another admission took the room between our read and our reserve: judge again on fresh figures.
            now = self.clock()
            usage, decision = self._on_usage(case, now)
            if not decision.allowed:
                record = audit_record(case, decision, now, self.cluster)
                self.ledger.record_decision(record)
                return Decided(case=case, decision=decision, usage=usage, status=ReserveStatus.CAP_EXCEEDED,
                               record=record)
        return self._raced_out(case, decision, result, now)

    def _ride(self, case: Case, owner: WorkloadRef, owner_uid: str) -> RideStatus:
        """Record a controller-made GPU pod on its owner's reservation if it fits in the owner's GPU budget beside
        the pods already riding there (the ledger decides, in one transaction). A retried review of the same pod
        rides again at no cost."""
        workload = case.workload
        rider = Rider(case.object_uid or f"{workload.namespace}/{workload.name}", workload.namespace, workload.name,
                      case.demand.gpus)
        result = self.ledger.ride(owner, owner_uid, rider, self.clock())
        if result.status is RideStatus.OVER_BUDGET:
            log.info("%s: %s GPUs beyond %s's budget (%s of %s riding): counted on its own", workload,
                     case.demand.gpus, owner, result.riding, result.budget)
        return result.status

    def _already_admitted(self, case: Case) -> bool:
        """The API server retrying a request we admitted (the same AdmissionReview uid): its own reservation now
        counts as usage, so it must not be judged again — answer as before, reserve nothing. Only the request's
        identity says so: an object re-created under the same name is a new workload, judged like any other."""
        if case.dry_run:
            return False
        return self.ledger.reserved_by(case.uid) is not None

    def _raced_out(self, case: Case, decision: Decision, result: ReserveResult, now: datetime) -> Decided:
        """The ledger kept refusing although fresh usage said it fits (figures moving under heavy contention)."""
        charge = result.exceeded
        figures = ""
        if charge is not None and charge.cap is not None:
            figures = (f" ({charge.key.scope.value} {charge.key.subject} {charge.key.metric.value}: "
                       f"{result.used or 0:,.0f} used + {charge.amount:,.0f} requested > cap {charge.cap:,.0f})")
        denial = Decision(
            allowed=False,
            message=f"{case.workload} was denied: the cap filled up while it was being admitted{figures}; retry in a "
                    "moment.",
            tier=decision.tier,
            profile=decision.profile,
            profile_version=decision.profile_version,
            outcomes=decision.outcomes,
        )
        record = audit_record(case, denial, now, self.cluster)
        self.ledger.record_decision(record)
        return Decided(case=case, decision=denial, usage={}, status=ReserveStatus.CAP_EXCEEDED, record=record)
