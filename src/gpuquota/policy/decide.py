"""``decide()``: the pure verdict on one demand. No I/O, no clock — ``now`` and ``usage`` come in as arguments.

What the tenant side of a decision needs (tier, the rules that match the tenant, their ledger keys and the caps
after exemptions) depends only on the tenant and the day, so it is compiled once into a ``_Plan`` and memoised
on the policy; per demand only the workload-side match and the arithmetic remain. That keeps a full decision in
the tens of microseconds (bench/bench_decide.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime

from gpuquota.domain import (
    CONCURRENT_WINDOW,
    Action,
    Charge,
    Decision,
    Demand,
    Metric,
    RuleOutcome,
    Scope,
    Tenant,
    Usage,
    UsageKey,
    calendar_year_window,
)
from gpuquota.policy import format as fmt
from gpuquota.policy.model import Policy, Rule

WORKLOAD_WINDOW = "workload"
"""Window of the key a per-workload operations outcome carries. It names no ledger counter and is never charged."""
UNKNOWN_SUBJECT = "unknown"
"""Subject of a jurisdiction- or tier-scoped rule key when the tenant has no known jurisdiction."""
UNKNOWN_JURISDICTION_RULE = "unknown-jurisdiction"
MALFORMED_RULE = "malformed-workload"
MESSAGE_LIMIT = 400
WARNING_LIMIT = 120
_SCOPE_NOUN = {Scope.TENANT: "tenant", Scope.JURISDICTION: "country", Scope.TIER: "tier", Scope.CLUSTER: "cluster"}
_INF = math.inf


@dataclass(frozen=True, slots=True)
class _PlannedRule:
    rule: Rule
    key: UsageKey
    cap: float  # after exemptions (inf when lifted)
    exempted_by: str | None
    slot: int  # index of ``key`` among the plan's base keys, -1 when it is not one of them
    # flags precomputed from the rule, so the per-demand loop reads plain attributes
    counts_tpp: bool
    per_workload: bool
    denies: bool
    charged_cap: float | None  # what the ledger re-checks: the cap of a deny rule that is not lifted


@dataclass(frozen=True, slots=True)
class _Plan:
    tier: str | None
    rules: tuple[_PlannedRule, ...]
    base_keys: tuple[UsageKey, ...]  # concurrent-TPP keys, then the calendar-year operations keys, per scope
    concurrent: int  # how many of base_keys are concurrent-TPP keys
    who: str  # "tenant globex (BR, tier-2)" for messages
    profile: str  # "ai-diffusion-2025@2025.1" for the audit annotations
    tier_label: str

    @property
    def concurrent_keys(self) -> tuple[UsageKey, ...]:
        return self.base_keys[: self.concurrent]

    @property
    def operations_keys(self) -> tuple[UsageKey, ...]:
        return self.base_keys[self.concurrent :]


def _subject(scope: Scope, tenant: Tenant, tier: str | None) -> str:
    if scope is Scope.TENANT:
        return tenant.name
    if scope is Scope.CLUSTER:
        return "cluster"
    if tier is None:
        return UNKNOWN_SUBJECT
    if scope is Scope.JURISDICTION:
        return tenant.jurisdiction or UNKNOWN_SUBJECT
    return tier


def _exempt(rule: Rule, tenant: Tenant, day: date) -> tuple[float, str | None]:
    """The rule's cap after the tenant's active exemptions: lifted (inf) by one without an amount, raised by
    the sum of licence amounts. Exemptions only ever raise a cap."""
    if not rule.exemptions or not tenant.exemptions:
        return rule.cap, None
    cap = rule.cap
    by: list[str] = []
    for ex in tenant.exemptions:
        if ex.kind not in rule.exemptions or (ex.rules and rule.id not in ex.rules) or not ex.active_on(day):
            continue
        label = ex.id or ex.kind
        if ex.amount is None:
            return _INF, label
        if ex.amount > 0:
            cap += ex.amount
            by.append(label)
    return cap, (",".join(by) or None)


def _plan(policy: Policy, tenant: Tenant, day: date) -> _Plan:
    cache = policy.memo
    cache_key = (tenant, day)
    plan = cache.get(cache_key)
    if isinstance(plan, _Plan):
        return plan
    tier = policy.tier_of(tenant.jurisdiction)
    subjects = [(Scope.TENANT, tenant.name)]
    if tier is not None and tenant.jurisdiction is not None:
        subjects += [(Scope.JURISDICTION, tenant.jurisdiction), (Scope.TIER, tier)]
    subjects.append((Scope.CLUSTER, "cluster"))
    year = calendar_year_window(day)
    base_keys = tuple(UsageKey(s, n, Metric.CONCURRENT_TPP, CONCURRENT_WINDOW) for s, n in subjects) + tuple(
        UsageKey(s, n, Metric.OPERATIONS, year) for s, n in subjects
    )
    planned = []
    for rule in policy.rules_for(tenant, tier):
        window = WORKLOAD_WINDOW if rule.per_workload else rule.window_key(day)
        key = UsageKey(rule.scope, _subject(rule.scope, tenant, tier), rule.metric, window)
        slot = base_keys.index(key) if key in base_keys else -1
        key = base_keys[slot] if slot >= 0 else key
        cap, by = _exempt(rule, tenant, day)
        denies = rule.action is Action.DENY
        planned.append(
            _PlannedRule(
                rule,
                key,
                cap,
                by,
                slot,
                counts_tpp=rule.metric is Metric.CONCURRENT_TPP,
                per_workload=rule.per_workload,
                denies=denies,
                charged_cap=cap if denies and cap < _INF else None,
            )
        )
    plan = _Plan(
        tier=tier,
        rules=tuple(planned),
        base_keys=base_keys,
        concurrent=len(subjects),
        who=f"tenant {tenant.name} ({tenant.jurisdiction or 'no jurisdiction'}, {tier or 'no tier'})",
        profile=f"{policy.name}@{policy.version}",
        tier_label=tier or "none",
    )
    if len(cache) > 65536:
        cache.clear()
    cache[cache_key] = plan
    return plan


def _operations(demand: Demand, tpp: float, policy: Policy) -> float | None:
    runtime = demand.max_runtime_s if demand.max_runtime_s is not None else policy.assume_runtime_s
    return None if runtime is None else policy.operations_per_second(tpp) * runtime


def usage_keys(policy: Policy, demand: Demand, tenant: Tenant, now: datetime) -> frozenset[UsageKey]:
    """Every ledger counter ``decide()`` reads or charges for this demand: the matching rules' keys (per-workload
    rules have none) and the base metering keys (concurrent TPP, and calendar-year operations when bounded)."""
    plan = _plan(policy, tenant, now.date())
    keys = {p.key for p in plan.rules if not p.rule.per_workload and p.rule.matches_demand(demand)}
    keys.update(plan.concurrent_keys)
    if _operations(demand, 1.0, policy) is not None:
        keys.update(plan.operations_keys)
    return frozenset(keys)


def _requested_phrase(demand: Demand, v: _Verdict, metric: Metric) -> str:
    text = f"requested {fmt.count(v.gpus)} × {v.model} = {fmt.tpp(v.tpp)} TPP"
    if metric is Metric.OPERATIONS:
        if v.operations is None:
            text += " with no runtime bound"
        else:
            text += f" for {_runtime(demand)} = {fmt.operations(v.operations)} operations"
    return text


def _runtime(demand: Demand) -> str:
    seconds = demand.max_runtime_s
    if seconds is None:
        return "the assumed runtime"
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{seconds / 86400:.0f}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.4g}h"
    return f"{seconds:.0f}s"


def _cap_phrase(o: RuleOutcome, rule: Rule) -> str:
    noun = _SCOPE_NOUN[rule.scope]
    if rule.metric is Metric.CONCURRENT_TPP:
        return f"against a {fmt.tpp(o.cap)} TPP {noun} cap ({fmt.tpp(o.used)} TPP already held by {o.key.subject})"
    if rule.per_workload:
        return f"against a per-workload cap of {fmt.operations(o.cap)} operations"
    return (
        f"against a {fmt.operations(o.cap)}-operation {noun} cap per {rule.window_name} "
        f"({fmt.operations(o.used)} already spent)"
    )


def _denial(demand: Demand, v: _Verdict, o: RuleOutcome, rule: Rule, policy: Policy) -> str:
    head = f"{demand.kind} {demand.namespace}/{demand.name} denied for {v.plan.who} by rule {rule.id}"
    if rule.description and rule.description != rule.id:
        head += f" ({rule.description})"
    requested = _requested_phrase(demand, v, rule.metric)
    body = f"{requested} {_cap_phrase(o, rule)}"
    unbounded = rule.metric is Metric.OPERATIONS and v.operations is None
    if unbounded:
        body += f": {policy.unbounded_hint}"
    elif o.fits_gpus is not None:
        body += f"; up to {fmt.count(o.fits_gpus)} × {v.model} fit" if o.fits_gpus >= 1 else f"; no {v.model} fits"
    if rule.hint and not unbounded:
        body += f"; {rule.hint}"
    return f"{head}: {body}"


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

    plan: _Plan
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

    def charge(self, planned: _PlannedRule, amount: float, cap: float | None) -> None:
        slot = planned.slot
        if slot < 0 or slot >= len(self.keys):
            try:
                slot = self.keys.index(planned.key)
            except ValueError:
                self.keys.append(planned.key)
                self.amounts.append(amount)
                self.caps.append(cap)
                self.cap_rules.append(planned.rule.id if cap is not None else None)
                return
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
        UNKNOWN_JURISDICTION_RULE,
        "tenant jurisdiction unknown",
        action,
        key,
        v.tpp,
        usage.get(key, 0.0),
        0.0,
        True,
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


def _judge(planned: _PlannedRule, usage: Usage, v: _Verdict) -> None:
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
        rule.id,
        rule.description,
        rule.action,
        key,
        requested,
        used,
        cap,
        exceeded,
        rule.warn_at,
        _fits(cap, used, per_gpu),
        planned.exempted_by,
    )
    v.outcomes.append(outcome)
    if exceeded:
        if planned.denies:
            v.denials.append((outcome, rule))
        elif rule.action is Action.WARN:
            amount = fmt.tpp(requested) if rule.metric is Metric.CONCURRENT_TPP else fmt.operations(requested)
            v.warnings.append(
                fmt.clip(
                    f"{rule.id}: {amount} requested exceeds the {_SCOPE_NOUN[rule.scope]} cap "
                    f"({_short(used, cap, rule)})",
                    WARNING_LIMIT,
                )
            )
        else:
            v.notes.append(rule.id)
    elif rule.warn_at is not None and 0 < cap < _INF and (used + requested) / cap >= rule.warn_at:
        v.warnings.append(
            fmt.clip(
                f"{rule.id}: {_SCOPE_NOUN[rule.scope]} {key.subject} would be at "
                f"{fmt.percent((used + requested) / cap)} of its cap ({_short(used + requested, cap, rule)})",
                WARNING_LIMIT,
            )
        )
    if per_workload or requested == _INF:
        return  # nothing cumulative to reserve: the ledger settles unbounded runs from operations_per_second
    v.charge(planned, requested, planned.charged_cap)


def decide(demand: Demand, tenant: Tenant, usage: Usage, policy: Policy, *, now: datetime) -> Decision:
    """Judge one demand for one tenant against the usage already counted. Pure: same inputs, same decision.

    ``allowed`` is false iff a matching deny rule is exceeded, the tenant's jurisdiction is unknown and the
    profile's ``unknownJurisdiction.action`` is deny, or the demand is malformed. Every matching rule appears in
    ``outcomes``; ``charges`` holds the base metering counters and the matching rules' counters, with the cap of
    deny rules for the ledger to re-check inside its transaction.
    """
    plan = _plan(policy, tenant, now.date())
    tpp = gpus = 0.0
    top = -1.0
    model = "GPU"
    sane = True
    classes = set()
    for g in demand.groups:  # one pass: totals, the model of the largest group (messages), classes, sanity
        n = g.pods * g.gpus_per_pod
        t = n * g.tpp_per_gpu
        sane = sane and n >= 0 and t >= 0
        gpus += n
        tpp += t
        if t > top:
            top, model = t, g.model
        classes.add(g.gpu_class)
    problem = None if sane and tpp < _INF else _malformed(demand, tpp, gpus)
    if problem is None and demand.max_runtime_s is not None and not demand.max_runtime_s >= 0:
        problem = _malformed(demand, tpp, gpus)
    if problem is not None:
        return _malformed_decision(demand, tenant, policy, plan, problem)
    rate = tpp / policy.bit_length * 1e12 * policy.utilisation  # = policy.operations_per_second(tpp)
    runtime = demand.max_runtime_s if demand.max_runtime_s is not None else policy.assume_runtime_s
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
    for planned in plan.rules:
        if planned.rule.matches_workload(purpose, weights, classes):
            _judge(planned, usage, v)
    return _finish(demand, policy, v)


def _finish(demand: Demand, policy: Policy, v: _Verdict) -> Decision:
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
            message = _denial(demand, v, first, rule, policy)
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
    return Decision(  # positional: the field order of domain.Decision
        not v.denials,
        message,
        v.plan.tier,
        policy.name,
        policy.version,
        tuple(outcomes),
        tuple(v.warnings),
        tuple(map(Charge, v.keys, v.amounts, v.caps, v.cap_rules)),
        v.operations,
        v.rate,
        annotations,
    )


def _malformed_decision(demand: Demand, tenant: Tenant, policy: Policy, plan: _Plan, problem: str) -> Decision:
    key = UsageKey(Scope.TENANT, tenant.name, Metric.CONCURRENT_TPP)
    message = fmt.clip(f"{demand.kind} {demand.namespace}/{demand.name} denied: {problem}", MESSAGE_LIMIT)
    outcome = RuleOutcome(MALFORMED_RULE, "malformed workload", Action.DENY, key, 0.0, 0.0, 0.0, True, message=message)
    return Decision(
        False,
        message,
        plan.tier,
        policy.name,
        policy.version,
        outcomes=(outcome,),
        warnings=tuple(fmt.clip(w, WARNING_LIMIT) for w in demand.warnings),
        annotations={"profile": plan.profile, "denied-by": MALFORMED_RULE},
    )


def _with_message(o: RuleOutcome, message: str) -> RuleOutcome:
    """``dataclasses.replace(o, message=message)``, without its per-call field introspection."""
    return RuleOutcome(
        o.rule_id,
        o.description,
        o.action,
        o.key,
        o.requested,
        o.used,
        o.cap,
        o.exceeded,
        o.warn_threshold,
        o.fits_gpus,
        o.exempted_by,
        message,
    )


def _short(used: float, cap: float, rule: Rule) -> str:
    if rule.metric is Metric.CONCURRENT_TPP:
        return f"{fmt.tpp(used)} of {fmt.tpp(cap)} TPP"
    return f"{fmt.operations(used)} of {fmt.operations(cap)} operations"
