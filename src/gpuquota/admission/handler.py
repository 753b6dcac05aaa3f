"""One admission review, from bytes to bytes: parse, count the demand, find the tenant, decide, reserve.

Work is split in two so the server can keep the event loop free where it matters: ``begin`` does everything that
needs no database (parsing, the no-GPU fast path, demand extraction, tenant lookup, the owner cache) and either
answers at once or returns a ``Pending`` whose ``run`` touches the ledger. The server runs ``Pending.run`` inline
for SQLite (a local file: a thread hop would cost more than the query) and in a thread pool for PostgreSQL.

Failure rules (see docs/webhook.md): bad input is answered with a 400 or, when the review's uid can be read, a
denial saying what is wrong — nothing is written either way; an unreachable ledger fails closed for GPU workloads
only; anything unexpected is an ``internal`` error that denies the GPU workload and keeps the server serving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from gpuquota.admission.audit import AuditLog
from gpuquota.admission.live import LiveConfig, Snapshot
from gpuquota.admission.lws import LwsStatefulSets
from gpuquota.admission.metrics import WebhookMetrics
from gpuquota.admission.namespaces import NamespaceCache
from gpuquota.admission.owners import OwnerCache, OwnerRef, candidate_owners
from gpuquota.admission.review import (
    AdmissionRequest,
    GroupVersionKind,
    ReviewError,
    build_response,
    decode_object,
    parse_review,
    resource_of,
)
from gpuquota.domain import Action, Decision, Demand, ModelSource, Tenant, Usage
from gpuquota.errors import UserError
from gpuquota.kube import KubeApi, KubeError
from gpuquota.kube.api import JsonObject
from gpuquota.ledger import (
    AuditRecord,
    Ledger,
    LedgerError,
    Reservation,
    ReserveResult,
    ReserveStatus,
    WorkloadRef,
)
from gpuquota.policy import Policy, decide, usage_keys
from gpuquota.reconcile.resources import RESOURCES
from gpuquota.workloads import (
    SCALE_SUBRESOURCES,
    SUPPORTED_KINDS,
    ExtractContext,
    WorkloadError,
    extract,
    requests_gpu,
    scale_delta,
    scale_replicas,
    with_replicas,
)

log = logging.getLogger("gpuquota.admission")

MAX_RESERVE_ATTEMPTS: Final = 3
UNKNOWN: Final = "unknown"
# Who may make an object "part of an admitted workload" (see ``Admission.controller_made``): the controller manager,
# under its own identity or (--use-service-account-credentials) the service accounts of the built-in controllers that
# make the pods and Jobs gpuquota reviews, and the operators named with ``--trusted-controller``. Nobody else — not
# every kube-system account, not a service account because its namespace belongs to no tenant.
CONTROLLER_MANAGER: Final = "system:kube-controller-manager"
BUILTIN_CONTROLLERS: Final = frozenset({
    CONTROLLER_MANAGER,
    *(f"system:serviceaccount:kube-system:{name}" for name in (
        "job-controller", "cronjob-controller", "replicaset-controller", "statefulset-controller",
        "daemon-set-controller",
    )),
})
# (apiGroup, plural) of a ``<resource>/scale`` request → the parent kind whose replicas it sets.
SCALE_PARENTS: Final = {(RESOURCES[key].group, RESOURCES[key].plural): key for key in SCALE_SUBRESOURCES}


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer. ``status`` 200 carries an AdmissionReview; 400 a JSON error for an unusable body."""

    status: int
    body: bytes


_error_encoder: Final = msgspec.json.Encoder()


def bad_request(message: str) -> Reply:
    return Reply(400, _error_encoder.encode({"error": "bad_request", "message": message}))


def ledger_down_message(exc: Exception) -> str:
    return (
        f"gpuquota cannot reach its ledger ({exc}); GPU workloads are refused until it is back (fail closed). "
        "Objects that request no GPU are not affected. Ask your cluster admin to check the gpuquota ledger database."
    )


@dataclass(slots=True)
class Pending:
    """The ledger part of a review; ``run`` is sync and safe to call from a worker thread. ``blocking``: it also
    calls the API server, so it must leave the event loop even where ledger calls run inline (SQLite)."""

    run: Callable[[], Reply]
    blocking: bool = False


@dataclass(frozen=True, slots=True)
class _Job:
    """Everything ``Pending.run`` needs, computed before the ledger is touched."""

    request: AdmissionRequest
    snap: Snapshot
    demand: Demand  # for an UPDATE, only its growth: caps on what is held or spent need room for that alone
    whole: Demand | None  # the whole workload an UPDATE grows, for per-workload rules (None: ``demand`` is whole)
    tenant: Tenant
    workload: WorkloadRef
    owners: tuple[OwnerRef, ...]
    started: float


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _annotation_key(key: str) -> str:
    """Audit annotation keys get the webhook's name as prefix, so they must not carry one of their own."""
    return key.rpartition("/")[2] or key


class Admission:
    """The webhook's decision path. One instance per server process; every method is thread-safe."""

    def __init__(
        self,
        live: LiveConfig,
        ledger: Ledger,
        metrics: WebhookMetrics,
        audit: AuditLog,
        *,
        namespaces: NamespaceCache | None = None,
        inventory_models: Callable[[], tuple[str, ...]] | None = None,
        owners: OwnerCache | None = None,
        clock: Callable[[], datetime] = _utcnow,
        trusted_controllers: Iterable[str] = (),
        kube: KubeApi | None = None,
    ) -> None:
        self.live = live
        self.kube = kube  # reads the parent of a ``/scale`` request; None: no cluster access (scale-ups refused)
        # checks the StatefulSet an LWS pod's claim rests on (None kube: such claims are never believed)
        self.lws = LwsStatefulSets(kube, on_error=lambda: self.metrics.errors.labels("kube_unavailable").inc())
        self.ledger = ledger
        self.metrics = metrics
        self.audit = audit
        self.namespaces = namespaces
        self.owners = owners or OwnerCache()
        self.trusted = BUILTIN_CONTROLLERS | frozenset(trusted_controllers)
        self._inventory_models = inventory_models or (lambda: ())
        self._clock = clock
        self._ctx: ExtractContext | None = None
        self._ctx_policy: Policy | None = None  # the policy ``_ctx`` was built for (a reload rebuilds it)

    # --- the part without I/O -------------------------------------------------------------------------------------

    def begin(self, body: bytes, started: float | None = None) -> Reply | Pending:
        started = time.perf_counter() if started is None else started
        try:
            request = parse_review(body)
        except ReviewError as exc:
            self.metrics.errors.labels("bad_request").inc()
            self._count(UNKNOWN, UNKNOWN, "error", "none", started)
            if exc.uid:
                return Reply(200, build_response(exc.uid, False, f"gpuquota: bad AdmissionReview: {exc.message}",
                                                 code=400))
            return bad_request(exc.message)
        kind = request.kind.kind or UNKNOWN
        try:
            return self._begin(request, started)
        except ReviewError as exc:
            return self._invalid(request, kind, exc.message, started)
        except WorkloadError as exc:
            return self._invalid(request, kind, str(exc), started)
        except Exception:
            log.exception("internal error on admission request %s", request.uid)
            return self._internal(request, started)

    def _begin(self, request: AdmissionRequest, started: float) -> Reply | Pending:
        kind = request.kind.kind
        if (request.kind.group, kind) not in SUPPORTED_KINDS or request.operation == "CONNECT":
            if request.sub_resource == "scale" and request.operation == "UPDATE":
                return self._begin_scale(request, started)
            return self._skip(request, started)
        if request.operation == "DELETE":
            if request.dry_run:
                return self._skip(request, started)
            return Pending(lambda: self._release(request, started))
        return self._begin_object(request, started)

    def _begin_object(self, request: AdmissionRequest, started: float) -> Reply | Pending:
        """CREATE/UPDATE of a supported kind: the no-GPU and owned fast paths, then demand and tenant."""
        kind = request.kind.kind
        obj = decode_object(request.object, "object", request.uid)
        if obj is None:
            raise ReviewError(f"{request.operation} of {kind} carries no object", request.uid)
        # Controller-made objects of an admitted workload: decided by the owner, so before any counting (a burst of
        # a big job's pods is the hottest path there is). Only owners of kinds gpuquota reserves for can hold a
        # reservation (a ReplicaSet never does). Only a controller's request may claim one: a tenant can write any
        # owner reference or label on its own objects, so its claims are never looked up (nor their cached answers).
        snap = self.live.current
        unchecked: list[OwnerRef] = []
        reads = False  # an LWS claim whose StatefulSet must be read from the API server (never on the event loop)
        if self.controller_made(request):
            for ref in candidate_owners(obj):
                if (ref.group, ref.kind) not in SUPPORTED_KINDS:
                    continue
                if ref.via is not None and not self.lws.cached(request.namespace, ref):
                    # An LWS claim through a StatefulSet: believed only once that StatefulSet's owner chain is read
                    # back (admission.lws); without cluster access never — the pod is judged on its own.
                    if self.kube is not None and self.owners.get(request.namespace, ref) is not False:
                        unchecked.append(ref)
                        reads = True
                    continue
                cached = self.owners.get(request.namespace, ref)
                if cached:
                    return self._owned(request, ref, started)
                if cached is None:
                    unchecked.append(ref)
        if not requests_gpu(obj):
            return self._skip(request, started)
        old = decode_object(request.old_object, "oldObject", request.uid) if request.operation == "UPDATE" else None
        return self._judge(request, snap, obj, old, unchecked=tuple(unchecked), started=started, reads=reads)

    def _judge(self, request: AdmissionRequest, snap: Snapshot, obj: Mapping[str, Any], old: Mapping[str, Any] | None,
               *, unchecked: tuple[OwnerRef, ...], started: float, reads: bool = False) -> Reply | Pending:
        """Demand (for an UPDATE, its growth over ``old``) and tenant of a GPU object, then the ledger's part."""
        ctx = self._context(snap)
        demand = whole = extract(obj, ctx)
        if demand is not None and old is not None:
            before = extract(old, ctx)
            if before is not None:
                demand = scale_delta(before, demand)  # only growth needs new room
        if demand is None or not demand.groups:
            return self._skip(request, started)
        if any(g.model_source is ModelSource.UNKNOWN for g in demand.groups):
            self.metrics.unknown_gpu_models.inc()  # the admin's cue to add a catalog row (GpuQuotaUnknownGpuModel)
        job = _Job(request, snap, demand, whole if whole is not demand else None, self._tenant(snap, request.namespace),
                   self._workload(request, obj), unchecked, started)
        return Pending(lambda: self._guarded(job), blocking=reads)

    # --- the scale subresource ------------------------------------------------------------------------------------

    def _begin_scale(self, request: AdmissionRequest, started: float) -> Reply | Pending:
        """``<resource>/scale`` of a kind with a scale subresource: judged as an UPDATE of its parent.

        The Scale objects alone tell growth from shrinking, so a scale-down (or no change) passes without any I/O.
        A scale-up needs the parent (its pod templates): it is read from the API server off the event loop.
        """
        resource = resource_of(request)
        parent = SCALE_PARENTS.get((resource.group, resource.resource))
        if parent is None:
            return self._skip(request, started)
        as_parent = msgspec.structs.replace(request, kind=GroupVersionKind(parent[0], resource.version, parent[1]))
        before = scale_replicas(decode_object(request.old_object, "oldObject", request.uid), "oldObject")
        after = scale_replicas(decode_object(request.object, "object", request.uid), "object")
        if after <= before:
            return self._skip(as_parent, started)  # shrinking is settled by the reconciler, never blocked
        return Pending(lambda: self._scale_up(as_parent, before, after, started), blocking=True)

    def _scale_up(self, request: AdmissionRequest, before: int, after: int, started: float) -> Reply:
        key = (request.kind.group, request.kind.kind)
        try:
            stored = self._read_parent(request)
            if isinstance(stored, str):
                return self._unjudged(request, before, after, why=stored, started=started)
            field = SCALE_SUBRESOURCES[key]
            old, new = with_replicas(stored, field, before), with_replicas(stored, field, after)
            if not requests_gpu(new):
                return self._skip(request, started)
            result = self._judge(request, self.live.current, new, old, unchecked=(), started=started)
        except WorkloadError as exc:
            return self._invalid(request, request.kind.kind, str(exc), started)
        except Exception:
            log.exception("internal error on admission request %s", request.uid)
            return self._internal(request, started)
        return result.run() if isinstance(result, Pending) else result

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

    def _unjudged(self, request: AdmissionRequest, before: int, after: int, *, why: str, started: float) -> Reply:
        """A scale-up whose parent cannot be read: refused (fail closed), saying why and what to do instead."""
        self.metrics.errors.labels("kube_unavailable").inc()
        self._count(request.operation, request.kind.kind, "error", "none", started)
        what = f"{request.kind.kind} {request.namespace}/{request.name}"
        message = (f"gpuquota cannot judge this scale-up of {what} ({before} → {after} replicas): {why}. Scale-ups "
                   "are refused until they can be judged (scaling down always passes). Retry in a moment, or change "
                   f"the replicas on the {request.kind.kind} itself (kubectl edit/patch/apply), which is judged "
                   "without that read; if it persists, ask your cluster admin to check the gpuquota webhook's "
                   f"access to {RESOURCES[(request.kind.group, request.kind.kind)].plural} (RBAC get).")
        return Reply(200, build_response(request.uid, False, message, code=503))

    def controller_made(self, request: AdmissionRequest) -> bool:
        """Whether the request comes from a workload controller, whose owner claims may be believed.

        Trust is explicit: the built-in controllers (``BUILTIN_CONTROLLERS``) and the ``--trusted-controller`` names
        (the chart's ``webhook.trustedControllers``: the Kubeflow, JobSet, KubeRay, LWS operators). A service account
        is never trusted for where it lives — ``default:default`` of a namespace no tenant owns would otherwise ride
        on any tenant's reservation. Everyone else's objects are judged on their own.
        """
        return request.user_info.username in self.trusted

    def _context(self, snap: Snapshot) -> ExtractContext:
        models = self._inventory_models()
        ctx = self._ctx
        if (ctx is None or self._ctx_policy is not snap.policy or ctx.catalog is not snap.catalog
                or ctx.inventory_models != models):
            policy = snap.policy
            ctx = ExtractContext(
                snap.catalog, models, policy.default_model, policy.shared_gpu_fraction, policy.unknown_model_tpp
            )
            self._ctx, self._ctx_policy = ctx, snap.policy
        return ctx

    def _tenant(self, snap: Snapshot, namespace: str) -> Tenant:
        """From the namespace's labels (cluster view) or the tenants file — never from the workload's labels."""
        labels: Mapping[str, str] | None = None
        if self.namespaces is not None:
            labels = self.namespaces.labels(namespace)
        # A namespace nobody assigned is its own tenant with no jurisdiction: unknownJurisdiction applies.
        return snap.tenants.resolve_or_unknown(namespace, labels)

    @staticmethod
    def _workload(request: AdmissionRequest, obj: Mapping[str, Any]) -> WorkloadRef:
        name = request.name or str((obj.get("metadata") or {}).get("name") or "")
        return WorkloadRef(request.namespace, request.kind.kind, name, request.kind.group)

    # --- the part with the ledger ---------------------------------------------------------------------------------

    def _guarded(self, job: _Job) -> Reply:
        try:
            reply = self._decide(job)
        except LedgerError as exc:
            self.metrics.errors.labels("ledger_unavailable").inc()
            self.metrics.ledger_up.set(0)
            log.error("ledger unavailable on request %s: %s", job.request.uid, exc)
            self._count(job.request.operation, job.request.kind.kind, "error", "ledger-unavailable", job.started)
            return Reply(200, build_response(job.request.uid, False, ledger_down_message(exc), code=503))
        except Exception:
            log.exception("internal error on admission request %s", job.request.uid)
            return self._internal(job.request, job.started)
        self.metrics.ledger_up.set(1)
        return reply

    def _decide(self, job: _Job) -> Reply:
        request = job.request
        owner = self._verified_owner(job)
        if owner is not None:
            return self._owned(request, owner, job.started)
        policy = job.snap.policy
        now = self._clock()
        usage: Usage = self.ledger.usage(usage_keys(policy, job.demand, job.tenant, now), now)
        decision = decide(job.demand, job.tenant, usage, policy, now=now, whole=job.whole)
        if not decision.allowed and self._already_admitted(job):
            return self._owned(request, OwnerRef(request.kind.group, request.kind.kind, job.workload.name),
                               job.started, retry=True)
        if request.dry_run:
            # sideEffects: NoneOnDryRun — judged on the real figures, but nothing is written (the JSON line is kept).
            return self._answer(job, decision, usage, reserved=False, status=None)
        if not decision.allowed or not decision.charges:
            record = self._audit(job, decision)
            self.ledger.record_decision(record)
            return self._answer(job, decision, usage, reserved=False, status=None, record=record)
        return self._reserve(job, decision, usage, now)

    def _reserve(self, job: _Job, decision: Decision, usage: Usage, now: datetime) -> Reply:
        """Reserve; if the ledger's in-transaction re-check refuses, decide again on fresh usage (a race lost)."""
        policy = job.snap.policy
        for _attempt in range(MAX_RESERVE_ATTEMPTS):
            reservation = self._reservation(job, decision)
            result = self.ledger.reserve(reservation, now)
            if result.status is not ReserveStatus.CAP_EXCEEDED:
                return self._answer(job, decision, usage, reserved=True, status=result.status,
                                    record=reservation.audit)
            # Another admission took the room between our read and our reserve: judge again on fresh figures.
            now = self._clock()
            usage = self.ledger.usage(usage_keys(policy, job.demand, job.tenant, now), now)
            decision = decide(job.demand, job.tenant, usage, policy, now=now, whole=job.whole)
            if not decision.allowed:
                record = self._audit(job, decision)
                self.ledger.record_decision(record)
                return self._answer(job, decision, usage, reserved=False, status=ReserveStatus.CAP_EXCEEDED,
                                    record=record)
        return self._raced_out(job, decision, result)

    def _verified_owner(self, job: _Job) -> OwnerRef | None:
        """The first claimed owner the ledger holds an active reservation for (answers cached either way) — for an LWS
        claim through a StatefulSet, also that the StatefulSet belongs to that LWS (read from the API server)."""
        namespace = job.request.namespace
        for ref in job.owners:
            active = self.ledger.find_active(WorkloadRef(namespace, ref.kind, ref.name, ref.group)) is not None
            self.owners.put(namespace, ref, active)
            if active and (ref.via is None or self.lws.verify(namespace, ref)):
                return ref
        return None

    def _already_admitted(self, job: _Job) -> bool:
        """A CREATE of a workload that already holds an active reservation covering it is the API server retrying a
        request we admitted (a create of an existing name cannot succeed otherwise): its own reservation now counts
        as usage, so it must not be judged again — answer as before, reserve nothing."""
        if job.request.operation != "CREATE" or job.request.dry_run:
            return False
        view = self.ledger.find_active(job.workload)
        # A retry asks for exactly what was reserved. A bigger object under the same name is a re-create after a
        # delete the webhook never saw (the release hook is allowed to fail): it is judged like any other.
        return view is not None and view.tpp >= job.demand.tpp * (1 - 1e-9)

    def _raced_out(self, job: _Job, decision: Decision, result: ReserveResult) -> Reply:
        """The ledger kept refusing although fresh usage said it fits (figures moving under heavy contention)."""
        charge = result.exceeded
        figures = ""
        if charge is not None and charge.cap is not None:
            figures = (f" ({charge.key.scope.value} {charge.key.subject} {charge.key.metric.value}: "
                       f"{result.used or 0:,.0f} used + {charge.amount:,.0f} requested > cap {charge.cap:,.0f})")
        denial = Decision(False, f"{job.workload} was denied: the cap filled up while it was being admitted{figures}; "
                                 "retry in a moment.", decision.tier, decision.profile, decision.profile_version,
                          outcomes=decision.outcomes)
        record = self._audit(job, denial)
        self.ledger.record_decision(record)
        return self._answer(job, denial, {}, reserved=False, status=ReserveStatus.CAP_EXCEEDED, record=record)

    def _release(self, request: AdmissionRequest, started: float) -> Reply:
        ref = WorkloadRef(request.namespace, request.kind.kind, request.name, request.kind.group)
        self.owners.forget(request.namespace, ref.kind, ref.name)
        try:
            released = self.ledger.release(ref, self._clock(), "deleted")
        except LedgerError as exc:
            # Never block a delete: the reconciler settles the reservation when it sees the workload gone.
            self.metrics.errors.labels("ledger_unavailable").inc()
            self.metrics.ledger_up.set(0)
            log.error("could not release %s (the reconciler will): %s", ref, exc)
            released = 0
        else:
            self.metrics.ledger_up.set(1)
        self._count(request.operation, request.kind.kind, "allowed" if released else "skipped", "none", started)
        return Reply(200, build_response(request.uid, True))

    # --- answers --------------------------------------------------------------------------------------------------

    def _answer(self, job: _Job, decision: Decision, usage: Usage, *, reserved: bool,
                status: ReserveStatus | None, record: AuditRecord | None = None) -> Reply:
        """The review answer, with its metrics and JSON audit line (``record``: the one the ledger got, if any)."""
        request = job.request
        label = "denied" if not decision.allowed else ("warned" if decision.warnings else "allowed")
        self._count(request.operation, request.kind.kind, label, self._rule_label(decision, job.tenant), job.started)
        admitted = reserved and status is ReserveStatus.RESERVED
        self.metrics.observe_usage(usage, decision, admitted)
        if self.audit.enabled:
            line = (record or self._audit(job, decision)).to_json()
            line["decision"] = label
            line["reservation"] = status.value if status is not None else None
            line["demand"] = _demand_json(job.demand)
            self.audit.write(line)
        annotations = {_annotation_key(k): v for k, v in decision.annotations.items()}
        return Reply(200, build_response(request.uid, decision.allowed, decision.message, decision.warnings,
                                         annotations))

    @staticmethod
    def _rule_label(decision: Decision, tenant: Tenant) -> str:
        for outcome in decision.outcomes:
            if outcome.exceeded and (outcome.action is Action.DENY or decision.allowed):
                return outcome.rule_id
        if not decision.allowed and tenant.jurisdiction is None:
            return "unknown-jurisdiction"
        if decision.warnings:  # approaching a cap: name the rule whose warning line was crossed
            for outcome in decision.outcomes:
                threshold = outcome.warn_threshold
                if threshold is not None and outcome.utilisation_after >= threshold:
                    return outcome.rule_id
        return "none"

    def _audit(self, job: _Job, decision: Decision) -> AuditRecord:
        request = job.request
        return AuditRecord(
            time=self._clock(),
            request_uid=request.uid,
            operation=request.operation,
            user=request.user_info.username,
            namespace=request.namespace,
            kind=request.kind.kind,
            name=job.workload.name,
            tenant=job.tenant.name,
            jurisdiction=job.tenant.jurisdiction,
            tier=decision.tier,
            allowed=decision.allowed,
            dry_run=request.dry_run,
            message=decision.message,
            rules=tuple(o.rule_id for o in decision.outcomes),
            warnings=decision.warnings,
            gpus=job.demand.gpus,
            model=job.demand.model,
            tpp=job.demand.tpp,
            operations=decision.operations,
            profile=decision.profile,
            profile_version=decision.profile_version,
        )

    def _reservation(self, job: _Job, decision: Decision) -> Reservation:
        demand = job.demand
        return Reservation(
            request_uid=job.request.uid,
            workload=job.workload,
            tenant=job.tenant.name,
            jurisdiction=job.tenant.jurisdiction,
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
            audit=self._audit(job, decision),
        )

    def _owned(self, request: AdmissionRequest, ref: OwnerRef, started: float, *, retry: bool = False) -> Reply:
        """Part of a workload whose GPUs were reserved when it was admitted (or a retried create of that workload):
        pass without reserving again."""
        self._count(request.operation, request.kind.kind, "allowed", "none", started)
        if self.audit.enabled:
            why = "a retry of an admitted create" if retry else "part of an admitted workload"
            self.audit.write({"time": self._clock().isoformat(), "request_uid": request.uid,
                              "operation": request.operation, "user": request.user_info.username,
                              "namespace": request.namespace, "kind": request.kind.kind, "name": request.name,
                              "allowed": True, "decision": "allowed", "dry_run": request.dry_run,
                              "owner": f"{ref.kind} {request.namespace}/{ref.name}",
                              "message": f"{why}: its GPUs are already reserved"})
        return Reply(200, build_response(request.uid, True))

    def _skip(self, request: AdmissionRequest, started: float) -> Reply:
        self._count(request.operation, request.kind.kind or UNKNOWN, "skipped", "none", started)
        return Reply(200, build_response(request.uid, True))

    def _invalid(self, request: AdmissionRequest, kind: str, message: str, started: float) -> Reply:
        self.metrics.errors.labels("bad_request").inc()
        self._count(request.operation, kind, "error", "none", started)
        text = f"gpuquota cannot count the GPUs of this {kind}: {message}"
        return Reply(200, build_response(request.uid, False, text, code=400))

    def _internal(self, request: AdmissionRequest, started: float) -> Reply:
        self.metrics.errors.labels("internal").inc()
        self._count(request.operation, request.kind.kind or UNKNOWN, "error", "none", started)
        return Reply(200, build_response(request.uid, False, "gpuquota hit an internal error judging this request; "
                                         "GPU workloads are refused until it is fixed (see the webhook's log).",
                                         code=500))

    def _count(self, operation: str, kind: str, decision: str, rule: str, started: float) -> None:
        self.metrics.observe_request(operation or UNKNOWN, kind, decision, rule, time.perf_counter() - started)


def _demand_json(demand: Demand) -> dict[str, Any]:
    return {
        "pods": demand.pods,
        "gpus": demand.gpus,
        "tpp": demand.tpp,
        "model": demand.model,
        "gpu_class": demand.gpu_class.value,
        "purpose": demand.purpose.value,
        "weights": demand.weights.value,
        "max_runtime_s": demand.max_runtime_s,
        "groups": [{"role": g.role, "pods": g.pods, "gpus_per_pod": g.gpus_per_pod, "model": g.model,
                    "model_source": g.model_source.value, "tpp_per_gpu": g.tpp_per_gpu} for g in demand.groups],
    }
