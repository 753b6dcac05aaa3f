"""``decide()``: the pure verdict on one demand. No I/O, no clock — ``now`` and ``usage`` come in as arguments.

The tenant side (tier, matching rules, ledger keys, caps after exemptions) comes precompiled from ``plan.py``;
per demand only the workload-side match and the arithmetic remain, in one pass, so that a full decision stays
near 16 µs (bench/bench_decide.py). The sentences tenants read are built in ``messages.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from gpuquota.clusters import DEFAULT_CLUSTER
from gpuquota.domain import (
    Action,
    Charge,
    Decision,
    Demand,
    GpuClass,
    Metric,
    RuleOutcome,
    Scope,
    Tenant,
    Usage,
    UsageKey,
)
from gpuquota.policy import format as fmt
from gpuquota.policy.messages import SCOPE_NOUN, denial, short
from gpuquota.policy.model import Policy, Rule, holder
from gpuquota.policy.plan import UNKNOWN_SUBJECT, UNSHARED, WORKLOAD_WINDOW, PlannedRule, TenantPlan, plan_for

UNKNOWN_JURISDICTION_RULE = "unknown-jurisdiction"
MALFORMED_RULE = "malformed-workload"
MESSAGE_LIMIT = 400
WARNING_LIMIT = 120
_INF = math.inf

__all__ = ["MALFORMED_RULE", "UNKNOWN_JURISDICTION_RULE", "UNKNOWN_SUBJECT", "WORKLOAD_WINDOW", "decide", "usage_keys"]


def _operations(demand: Demand, tpp: float, policy: Policy) -> float | None:
    runtime = demand.max_runtime_s if demand.max_runtime_s is not None else policy.horizon_s
    return None if runtime is None else policy.operations_per_second(tpp) * runtime


def usage_keys(
    policy: Policy, demand: Demand, tenant: Tenant, now: datetime, cluster: str = DEFAULT_CLUSTER
) -> frozenset[UsageKey]:
    """Every ledger counter ``decide()`` reads or charges for this demand: the matching rules' keys (per-workload
    rules have none; an ``excludeExempted`` rule's is its own ``<subject>~<rule id>`` counter, read even when the
    tenant is lifted) and the base metering keys (concurrent TPP, and calendar-year operations when bounded)."""
    plan = plan_for(policy, tenant, now.date(), cluster)
    keys = {p.key for p in plan.rules if not p.rule.per_workload and p.rule.matches_demand(demand)}
    keys.update(plan.concurrent_keys)
    if _operations(demand, 1.0, policy) is not None:
        keys.update(plan.operations_keys)
    return frozenset(keys)


def _fits(cap: float, used: float, per_gpu: float | None) -> float | None:
    if cap == _INF:
        return None
    if per_gpu is None:  # unbounded operations per GPU: no count of GPUs fits an operations cap
        return 0.0
    if per_gpu <= 0:
        return None
    room = (cap - used) / per_gpu + 1e-9
    return float(math.floor(room)) if room > 0 else 0.0


def _malformed(demand: Demand, tpp: float, gpus: float) -> str | None:
    if not math.isfinite(tpp) or tpp < 0 or not math.isfinite(gpus) or gpus < 0:
        return f"the workload's GPU demand is not a finite, non-negative amount ({gpus!r} GPUs, {tpp!r} TPP)"
    if demand.max_runtime_s is not None and not (demand.max_runtime_s >= 0):
        return f"the workload's maximum runtime is negative ({demand.max_runtime_s!r} s)"
    for group in demand.groups:
        if group.pods < 0 or not (group.gpus_per_pod >= 0) or not (group.tpp_per_gpu >= 0):
            return f"pod group {group.role!r} has a negative or undefined count"
    return None


@dataclass(slots=True)
class _Verdict:
    """The demand's totals and what ``decide()`` accumulates while it walks the matching rules. Charges are
    parallel lists indexed like the plan's base keys (rule keys that are not base keys are appended), so no key
    is hashed per decision."""

    plan: TenantPlan
    tpp: float
    gpus: float
    model: str
    operations: float | None
    rate: float  # operations per second
    tpp_per_gpu: float | None
    ops_per_gpu: float | None
    outcomes: list[RuleOutcome]
    warnings: list[str]
    denials: list[tuple[RuleOutcome, Rule | None]]
    notes: list[str]
    keys: list[UsageKey]
    amounts: list[float]
    caps: list[float | None]
    cap_rules: list[str | None]
    whole: _Verdict | None = None  # the whole workload an UPDATE grows, when it is more than the demand

    def charge(self, planned: PlannedRule, amount: float, cap: float | None) -> None:
        slot = planned.slot
        if slot == UNSHARED or ((slot < 0 or slot >= len(self.keys)) and planned.key not in self.keys):
            self.keys.append(planned.key)
            self.amounts.append(amount)
            self.caps.append(cap)
            self.cap_rules.append(planned.rule.id if cap is not None else None)
            return
        if slot < 0 or slot >= len(self.keys):
            slot = self.keys.index(planned.key)
        current = self.caps[slot]
        if cap is not None and (current is None or cap < current):
            self.caps[slot] = cap
            self.cap_rules[slot] = planned.rule.id


def _unknown_jurisdiction(tenant: Tenant, usage: Usage, policy: Policy, v: _Verdict) -> None:
    key = v.plan.base_keys[0]
    reason = policy.unknown_message
    if tenant.jurisdiction is not None:
        reason = (
            f"jurisdiction {tenant.jurisdiction!r} is not an ISO 3166-1 alpha-2 country code: ask a cluster admin "
            "to correct the Namespace label gpuquota.io/jurisdiction or the tenants file"
        )
    action = policy.unknown_action
    outcome = RuleOutcome(
        rule_id=UNKNOWN_JURISDICTION_RULE,
        description="tenant jurisdiction unknown",
        action=action,
        key=key,
        requested=v.tpp,
        used=usage.get(key, 0.0),
        cap=0.0,
        exceeded=True,
        fits_gpus=0.0,
        message=reason,
    )
    v.outcomes.append(outcome)
    if action is Action.DENY:
        v.denials.append((outcome, None))
    elif action is Action.WARN:
        v.warnings.append(fmt.clip(f"{UNKNOWN_JURISDICTION_RULE}: {reason}", WARNING_LIMIT))
    else:
        v.notes.append(UNKNOWN_JURISDICTION_RULE)


def _judge(planned: PlannedRule, usage: Usage, v: _Verdict) -> None:
    """Evaluate one matching rule: its outcome, a warning or denial, and its charge."""
    rule, key, cap = planned.rule, planned.key, planned.cap
    if planned.counts_tpp:
        requested, per_gpu = v.tpp, v.tpp_per_gpu
    else:
        requested = _INF if v.operations is None else v.operations
        per_gpu = v.ops_per_gpu
    per_workload = planned.per_workload
    used = 0.0 if per_workload else usage.get(key, 0.0)
    exceeded = requested > 0 and used + requested > cap
    outcome = RuleOutcome(
        rule_id=rule.id,
        description=rule.description,
        action=rule.action,
        key=key,
        requested=requested,
        used=used,
        cap=cap,
        exceeded=exceeded,
        warn_threshold=rule.warn_at,
        fits_gpus=_fits(cap, used, per_gpu),
        exempted_by=planned.exempted_by,
    )
    v.outcomes.append(outcome)
    if exceeded:
        if planned.denies:
            v.denials.append((outcome, rule))
        elif rule.action is Action.WARN:
            amount = fmt.tpp(requested) if rule.metric is Metric.CONCURRENT_TPP else fmt.operations(requested)
            v.warnings.append(
                fmt.clip(
                    f"{rule.id}: {amount} requested exceeds the {SCOPE_NOUN[rule.scope]} cap "
                    f"({short(used, cap, rule)})",
                    WARNING_LIMIT,
                )
            )
        else:
            v.notes.append(rule.id)
    elif rule.warn_at is not None and 0 < cap < _INF and (used + requested) / cap >= rule.warn_at:
        v.warnings.append(
            fmt.clip(
                f"{rule.id}: {SCOPE_NOUN[rule.scope]} {holder(key.subject)} would be at "
                f"{fmt.percent((used + requested) / cap)} of its cap ({short(used + requested, cap, rule)})",
                WARNING_LIMIT,
            )
        )
    # Nothing cumulative to reserve (the ledger settles unbounded runs from operations_per_second), or an
    # excludeExempted rule lifted for this tenant: its usage stays out of the rule's counter.
    if per_workload or requested == _INF or not planned.charged:
        return
    v.charge(planned, requested, planned.charged_cap)


def _totals(demand: Demand) -> tuple[float, float, str, set[GpuClass], bool]:
    """One pass over the groups: TPP, GPUs, the model of the largest group (messages), classes, sanity."""
    tpp = gpus = 0.0
    top = -1.0
    model = "GPU"
    sane = True
    classes = set()
    for g in demand.groups:
        n = g.pods * g.gpus_per_pod
        t = n * g.tpp_per_gpu
        sane = sane and n >= 0 and t >= 0
        gpus += n
        tpp += t
        if t > top:
            top, model = t, g.model
        classes.add(g.gpu_class)
    return tpp, gpus, model, classes, sane and tpp < _INF


def _whole_verdict(whole: Demand, policy: Policy, v: _Verdict) -> tuple[_Verdict, set[GpuClass]] | None:
    """The figures per-workload rules judge when ``decide()`` is given the whole workload an UPDATE grows. It shares
    ``v``'s outcome, warning and denial lists; it is never charged (per-workload rules reserve nothing)."""
    tpp, gpus, model, classes, sane = _totals(whole)
    if not sane or (whole.max_runtime_s is not None and not whole.max_runtime_s >= 0):
        return None  # the demand itself is judged (and would be malformed too)
    rate = tpp / policy.bit_length * 1e12 * policy.utilisation
    runtime = whole.max_runtime_s if whole.max_runtime_s is not None else policy.horizon_s
    operations = None if runtime is None else rate * runtime
    w = _Verdict(v.plan, tpp, gpus, model, operations, rate, tpp / gpus if gpus > 0 else None,
                 None if operations is None or gpus <= 0 else operations / gpus,
                 v.outcomes, v.warnings, v.denials, v.notes, [], [], [], [])
    return w, classes


def decide(
    demand: Demand,
    tenant: Tenant,
    usage: Usage,
    policy: Policy,
    *,
    now: datetime,
    whole: Demand | None = None,
    cluster: str = DEFAULT_CLUSTER,
) -> Decision:
    """Judge one demand for one tenant against the usage already counted. Pure: same inputs, same decision.

    ``allowed`` is false iff a matching deny rule is exceeded, the tenant's jurisdiction is unknown and the
    profile's ``unknownJurisdiction.action`` is deny, or the demand is malformed. Every matching rule appears in
    ``outcomes``; ``charges`` holds the base metering counters and the matching rules' counters, with the cap of
    deny rules for the ledger to re-check inside its transaction.

    ``whole``: the whole workload when ``demand`` is only the growth of an UPDATE. Caps on what is held or spent
    need new room only for the growth, but a per-workload rule (a cap on one training run's operations) is about
    the workload, so it judges ``whole`` (default: the demand itself).

    ``cluster``: the judging cluster's name (the cluster scope's subject; where ``perCluster`` rules count).
    """
    plan = plan_for(policy, tenant, now.date(), cluster)
    tpp, gpus, model, classes, sane = _totals(demand)
    problem = None if sane else _malformed(demand, tpp, gpus)
    if problem is None and demand.max_runtime_s is not None and not demand.max_runtime_s >= 0:
        problem = _malformed(demand, tpp, gpus)
    if problem is not None:
        return _malformed_decision(demand, tenant, policy, plan, problem)
    rate = tpp / policy.bit_length * 1e12 * policy.utilisation  # = policy.operations_per_second(tpp)
    runtime = demand.max_runtime_s if demand.max_runtime_s is not None else policy.horizon_s
    operations = None if runtime is None else rate * runtime
    n = plan.concurrent
    if operations is None:
        keys, amounts = list(plan.base_keys[:n]), [tpp] * n
    else:
        keys, amounts = list(plan.base_keys), [tpp] * n + [operations] * n
    v = _Verdict(
        plan,
        tpp,
        gpus,
        model,
        operations,
        rate,
        tpp / gpus if gpus > 0 else None,
        None if operations is None or gpus <= 0 else operations / gpus,
        [],
        [fmt.clip(w, WARNING_LIMIT) for w in demand.warnings] if demand.warnings else [],
        [],
        [],
        keys,
        amounts,
        [None] * len(keys),
        [None] * len(keys),
    )
    if plan.tier is None and tpp > 0:
        _unknown_jurisdiction(tenant, usage, policy, v)
    purpose, weights = demand.purpose, demand.weights
    grown = None if whole is None or whole is demand else _whole_verdict(whole, policy, v)
    if whole is None or grown is None:
        for planned in plan.rules:
            if planned.rule.matches_workload(purpose, weights, classes):
                _judge(planned, usage, v)
        return _finish(demand, policy, v)
    v.whole, whole_classes = grown
    for planned in plan.rules:
        if planned.per_workload:
            if planned.rule.matches_workload(whole.purpose, whole.weights, whole_classes):
                _judge(planned, usage, v.whole)
        elif planned.rule.matches_workload(purpose, weights, classes):
            _judge(planned, usage, v)
    return _finish(demand, policy, v, whole)


def _finish(demand: Demand, policy: Policy, v: _Verdict, whole: Demand | None = None) -> Decision:
    annotations = {
        "profile": v.plan.profile,
        "tier": v.plan.tier_label,
        "tpp": f"{v.tpp:.0f}",
        "operations": "unbounded" if v.operations is None else f"{v.operations:.3g}",
        "rules": ",".join([o.rule_id for o in v.outcomes]) or "none",
    }
    outcomes = v.outcomes
    if v.denials:
        first, rule = v.denials[0]
        if rule is None:
            message = f"{demand.kind} {demand.namespace}/{demand.name} denied for {v.plan.who}: {first.message}"
        else:
            # A per-workload rule on a grown workload names the whole workload's figures, not the growth's.
            s, subject = (v.whole, whole) if rule.per_workload and v.whole is not None and whole is not None else (
                v, demand)
            message = denial(
                subject,
                first,
                rule,
                who=v.plan.who,
                tpp=s.tpp,
                gpus=s.gpus,
                model=s.model,
                operations=s.operations,
                unbounded_hint=policy.unbounded_hint,
                horizon_s=policy.horizon_s,
            )
        if len(v.denials) > 1:
            message += f" (also exceeds: {', '.join(o.rule_id for o, _ in v.denials[1:])})"
        message = fmt.clip(message, MESSAGE_LIMIT)
        annotations["denied-by"] = ",".join(o.rule_id for o, _ in v.denials)
        outcomes = [_with_message(o, message) if o is first else o for o in outcomes]
    else:
        message = (
            f"{demand.kind} {demand.namespace}/{demand.name} allowed for {v.plan.who}: "
            f"{fmt.count(v.gpus)} × {v.model} = {fmt.tpp(v.tpp)} TPP"
        )
        if v.warnings:
            message = fmt.clip(f"{message}, {len(v.warnings)} warning(s)", MESSAGE_LIMIT)
    if v.notes:
        annotations["audit"] = ",".join(v.notes)
    return Decision(
        allowed=not v.denials,
        message=message,
        tier=v.plan.tier,
        profile=policy.name,
        profile_version=policy.version,
        outcomes=tuple(outcomes),
        warnings=tuple(v.warnings),
        charges=tuple(map(Charge, v.keys, v.amounts, v.caps, v.cap_rules)),
        operations=v.operations,
        operations_per_second=v.rate,
        annotations=annotations,
    )


def _malformed_decision(demand: Demand, tenant: Tenant, policy: Policy, plan: TenantPlan, problem: str) -> Decision:
    key = UsageKey(Scope.TENANT, tenant.name, Metric.CONCURRENT_TPP)
    message = fmt.clip(f"{demand.kind} {demand.namespace}/{demand.name} denied: {problem}", MESSAGE_LIMIT)
    outcome = RuleOutcome(rule_id=MALFORMED_RULE, description="malformed workload", action=Action.DENY, key=key,
                          requested=0.0, used=0.0, cap=0.0, exceeded=True, message=message)
    return Decision(
        allowed=False,
        message=message,
        tier=plan.tier,
        profile=policy.name,
        profile_version=policy.version,
        outcomes=(outcome,),
        warnings=tuple(fmt.clip(w, WARNING_LIMIT) for w in demand.warnings),
        annotations={"profile": plan.profile, "denied-by": MALFORMED_RULE},
    )


def _with_message(o: RuleOutcome, message: str) -> RuleOutcome:
    """``dataclasses.replace(o, message=message)``, without its per-call field introspection."""
    return RuleOutcome(
        rule_id=o.rule_id,
        description=o.description,
        action=o.action,
        key=o.key,
        requested=o.requested,
        used=o.used,
        cap=o.cap,
        exceeded=o.exceeded,
        warn_threshold=o.warn_threshold,
        fits_gpus=o.fits_gpus,
        exempted_by=o.exempted_by,
        message=message,
    )
