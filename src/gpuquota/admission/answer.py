"""The one place an ``Outcome`` becomes the AdmissionReview reply, the metrics and the audit line.

Every audit line has one schema: the ledger's ``AuditRecord`` fields, then ``decision`` (allowed, warned, denied),
``reservation`` (what the ledger did), ``demand`` and ``owner`` (the admitted workload a pod rides on) — null where
they do not apply.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import msgspec

from gpuquota.admission import outcome as out
from gpuquota.admission.audit import AuditLog
from gpuquota.admission.metrics import WebhookMetrics
from gpuquota.admission.review import AdmissionRequest, build_response
from gpuquota.admission.suspension import Suspension
from gpuquota.domain import Action, Decision, Demand, ModelSource, Tenant
from gpuquota.ledger import AuditRecord
from gpuquota.reconcile.resources import RESOURCES

UNKNOWN: Final = "unknown"


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer. ``status`` 200 carries an AdmissionReview; 400 a JSON error for an unusable body."""

    status: int
    body: bytes


_error_encoder: Final = msgspec.json.Encoder()


def bad_request(message: str) -> Reply:
    return Reply(400, _error_encoder.encode({"error": "bad_request", "message": message}))


def ledger_down_message(error: str) -> str:
    return (
        f"gpuquota cannot reach its ledger ({error}); GPU workloads are refused until it is back (fail closed). "
        "Objects that request no GPU are not affected. Ask your cluster admin to check the gpuquota ledger database."
    )


def ledger_full_message(error: str) -> str:
    return (
        f"gpuquota's ledger has no space left ({error}); GPU workloads are refused until space returns (fail closed). "
        "Objects that request no GPU are not affected. Ask your cluster admin to free or grow the gpuquota ledger's "
        "storage (docs/ledger.md, 'Growth and sizing')."
    )


def _annotation_key(key: str) -> str:
    """Audit annotation keys get the webhook's name as prefix, so they must not carry one of their own."""
    return key.rpartition("/")[2] or key


def rule_label(decision: Decision, tenant: Tenant) -> str:
    """The ``rule`` metric label: the rule that denied or warned, ``unknown-jurisdiction``, or ``none``."""
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


def decision_label(decision: Decision) -> str:
    return "denied" if not decision.allowed else ("warned" if decision.warnings else "allowed")


def demand_json(demand: Demand) -> dict[str, Any]:
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


def audit_line(record: AuditRecord, *, decision: str, reservation: str | None = None,
               demand: Demand | None = None, owner: str | None = None) -> dict[str, object]:
    """The audit log's one schema (see the module docstring)."""
    line = record.to_json()
    line["decision"] = decision
    line["reservation"] = reservation
    line["demand"] = demand_json(demand) if demand is not None else None
    line["owner"] = owner
    return line


_BLANK_LINE: Final = audit_line(
    AuditRecord(time=datetime(1970, 1, 1), request_uid="", operation="", user="", namespace="", kind="", name="",
                tenant=None, jurisdiction=None, tier=None, allowed=True, dry_run=False, message="", rules=(),
                warnings=(), gpus=0.0, model=None, tpp=0.0, operations=None, profile="", profile_version=""),
    decision="allowed",
)
"""An audit line with every key of the schema and nothing in it: owner lines are filled in from it (the same keys,
in the same order, without building a record per pod of a burst)."""


class Answer:
    """Turns outcomes into replies, metrics and audit lines. Thread-safe (the metrics and the log are)."""

    def __init__(self, metrics: WebhookMetrics, audit: AuditLog, clock: Callable[[], datetime]) -> None:
        self.metrics = metrics
        self.audit = audit
        self.clock = clock

    def reply(self, request: AdmissionRequest, outcome: out.Outcome, started: float) -> Reply:  # noqa: PLR0911
        """``request`` as judged (a ``/scale`` request as one on its parent)."""
        if isinstance(outcome, out.Decided):
            return self._decided(request, outcome, started)
        if isinstance(outcome, out.Skipped):
            self._count(request, "skipped", "none", started)
            return Reply(200, build_response(request.uid, True))
        if isinstance(outcome, out.Owned):
            return self._owned(request, outcome, started)
        if isinstance(outcome, out.Passed):
            return self._passed(request, outcome, started)
        if isinstance(outcome, out.Released):
            if outcome.error is not None:
                self.metrics.errors.labels("ledger_unavailable").inc()
            self.metrics.ledger_up.set(0 if outcome.error is not None else 1)
            self._count(request, "allowed" if outcome.count else "skipped", "none", started)
            return Reply(200, build_response(request.uid, True))
        if isinstance(outcome, out.Invalid):
            self.metrics.errors.labels("bad_request").inc()
            self._count(request, "error", "none", started, kind=outcome.kind or UNKNOWN)
            text = f"gpuquota cannot count the GPUs of this {outcome.kind or UNKNOWN}: {outcome.message}"
            return Reply(200, build_response(request.uid, False, text, code=400))
        if isinstance(outcome, out.LedgerDown) and outcome.full:  # reads work, writes do not: say so
            self.metrics.errors.labels("ledger_full").inc()
            self.metrics.ledger_full.set(1)
            self._count(request, "error", "ledger-full", started)
            return Reply(200, build_response(request.uid, False, ledger_full_message(outcome.error), code=503))
        if isinstance(outcome, out.LedgerDown):
            self.metrics.errors.labels("ledger_unavailable").inc()
            self.metrics.ledger_up.set(0)
            self._count(request, "error", "ledger-unavailable", started)
            return Reply(200, build_response(request.uid, False, ledger_down_message(outcome.error), code=503))
        if isinstance(outcome, out.Unjudgeable):
            return self._unjudgeable(request, outcome, started)
        if isinstance(outcome, out.Unresolved):
            return self._unresolved(request, outcome, started)
        assert isinstance(outcome, out.Internal)
        self.metrics.errors.labels("internal").inc()
        self._count(request, "error", "none", started)
        return Reply(200, build_response(request.uid, False, "gpuquota hit an internal error judging this request; "
                                         "GPU workloads are refused until it is fixed (see the webhook's log).",
                                         code=500))

    def bad_review(self, uid: str | None, message: str, started: float) -> Reply:
        """An envelope that is not a usable AdmissionReview: a denial when its uid could be read, else a 400."""
        self.metrics.errors.labels("bad_request").inc()
        self.metrics.observe_request(UNKNOWN, UNKNOWN, "error", "none", time.perf_counter() - started)
        if uid:
            return Reply(200, build_response(uid, False, f"gpuquota: bad AdmissionReview: {message}", code=400))
        return bad_request(message)

    def _decided(self, request: AdmissionRequest, outcome: out.Decided, started: float) -> Reply:
        decision, case = outcome.decision, outcome.case
        label = decision_label(decision)
        self.metrics.ledger_up.set(1)
        if not request.dry_run:  # a write went through: the ledger's storage has room again
            self.metrics.ledger_full.set(0)
        self._count(request, label, rule_label(decision, case.tenant), started)
        # A suspended workload's decision compares it with empty counters (admission.suspension): its cap figures are
        # not the cluster's, so only the usage it read is shown.
        held = case.suspension is Suspension.HELD
        self.metrics.observe_usage(outcome.usage, None if held else decision, outcome.admitted)
        if any(g.model_source is ModelSource.UNKNOWN for g in case.demand.groups):
            self.metrics.unknown_gpu_models.inc()  # the admin's cue to add a catalog row (GpuQuotaUnknownGpuModel)
        if self.audit.enabled:
            reservation = outcome.status.value if outcome.status is not None else None
            self.audit.write(audit_line(outcome.record, decision=label, reservation=reservation, demand=case.demand))
        annotations = {_annotation_key(k): v for k, v in decision.annotations.items()}
        return Reply(200, build_response(request.uid, decision.allowed, decision.message, decision.warnings,
                                         annotations))

    def _owned(self, request: AdmissionRequest, outcome: out.Owned, started: float) -> Reply:
        if not outcome.cached:
            self.metrics.ledger_up.set(1)
        self._count(request, "allowed", "none", started)
        if self.audit.enabled:
            why = "a retry of an admitted create" if outcome.retry else "part of an admitted workload"
            self._pass_line(request, f"{why}: its GPUs are already reserved",
                            owner=f"{outcome.owner.kind} {request.namespace}/{outcome.owner.name}")
        return Reply(200, build_response(request.uid, True))

    def _passed(self, request: AdmissionRequest, outcome: out.Passed, started: float) -> Reply:
        if outcome.ledger:
            self.metrics.ledger_up.set(1)
        self._count(request, "allowed", "none", started)
        if self.audit.enabled:
            reserved = ",".join(map(str, outcome.reservation)) or None
            self._pass_line(request, outcome.why, reservation=reserved and f"held:{reserved}")
        return Reply(200, build_response(request.uid, True))

    def _pass_line(self, request: AdmissionRequest, message: str, *, owner: str | None = None,
                   reservation: str | None = None) -> None:
        """The audit line of a request allowed without a decision of its own (the schema's keys, from a blank)."""
        line = dict(_BLANK_LINE)
        line.update(time=self.clock().isoformat(), request_uid=request.uid, operation=request.operation,
                    user=request.user_info.username, namespace=request.namespace, kind=request.kind.kind,
                    name=request.name, dry_run=request.dry_run, message=message, owner=owner,
                    reservation=reservation)
        self.audit.write(line)

    def _unresolved(self, request: AdmissionRequest, outcome: out.Unresolved, started: float) -> Reply:
        """An object the workload's pods depend on cannot be read: refused (fail closed), saying what and why."""
        self.metrics.errors.labels("bad_request" if outcome.missing else "kube_unavailable").inc()
        self._count(request, "error", "none", started, kind=outcome.kind)
        text = (f"gpuquota cannot count the GPUs of this {outcome.kind} {request.namespace}/{request.name}, so it is "
                f"refused: {outcome.message}.")
        return Reply(200, build_response(request.uid, False, text, code=400 if outcome.missing else 503))

    def _unjudgeable(self, request: AdmissionRequest, outcome: out.Unjudgeable, started: float) -> Reply:
        """A scale-up whose parent cannot be read: refused (fail closed), saying why and what to do instead."""
        self.metrics.errors.labels("kube_unavailable").inc()
        self._count(request, "error", "none", started)
        kind = request.kind.kind
        plural = RESOURCES[(request.kind.group, kind)].plural
        message = (f"gpuquota cannot judge this scale-up of {kind} {request.namespace}/{request.name} "
                   f"({outcome.before} → {outcome.after} replicas): {outcome.why}. Scale-ups are refused until they "
                   f"can be judged (scaling down always passes). Retry in a moment, or change the replicas on the "
                   f"{kind} itself (kubectl edit/patch/apply), which is judged without that read; if it persists, ask "
                   f"your cluster admin to check the gpuquota webhook's access to {plural} (RBAC get).")
        return Reply(200, build_response(request.uid, False, message, code=503))

    def _count(self, request: AdmissionRequest, decision: str, rule: str, started: float, *,
               kind: str | None = None) -> None:
        self.metrics.observe_request(request.operation or UNKNOWN, kind or request.kind.kind or UNKNOWN, decision,
                                     rule, time.perf_counter() - started)
