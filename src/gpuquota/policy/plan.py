"""The tenant side of a decision, compiled once per (tenant, day) and memoised on the policy.

Which rules match the tenant, the ledger key each reads, the cap after the tenant's exemptions and the base
metering keys depend only on the tenant and the day — not on the workload — so ``decide()`` computes them once
and then only does the workload-side match and the arithmetic per demand.

A rule with ``excludeExempted`` reads its own counter (subject ``<subject>~<rule id>``) rather than the base
metering counter of its scope; only tenants it applies to are charged there. A tenant it lifts still reads the
counter (its outcome shows what the others hold) but charges only the base counters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from gpuquota.clusters import DEFAULT_CLUSTER
from gpuquota.domain import CONCURRENT_WINDOW, Action, Metric, Scope, Tenant, UsageKey, calendar_year_window
from gpuquota.policy.model import Policy, Rule, cluster_subject, excluded_subject

WORKLOAD_WINDOW = "workload"
"""Window of the key a per-workload operations outcome carries. It names no ledger counter and is never charged."""
UNKNOWN_SUBJECT = "unknown"
"""Subject of a jurisdiction- or tier-scoped rule key when the tenant has no known jurisdiction."""
UNSHARED = -2
"""``PlannedRule.slot`` of a key no base key and no other rule of the plan has: ``decide()`` appends its charge
without looking for it among the charges so far (an ``excludeExempted`` rule's counter is always one)."""
_INF = math.inf
_MEMO_LIMIT = 65536


@dataclass(frozen=True, slots=True)
class PlannedRule:
    rule: Rule
    key: UsageKey
    cap: float  # after exemptions (inf when lifted)
    exempted_by: str | None
    slot: int  # index of ``key`` among the plan's base keys; -1 (another rule may share it) or UNSHARED when not one
    # flags precomputed from the rule, so the per-demand loop reads plain attributes
    counts_tpp: bool
    per_workload: bool
    denies: bool
    charged_cap: float | None  # what the ledger re-checks: the cap of a deny rule that is not lifted
    charged: bool = True  # false for a tenant an excludeExempted rule's exemptions lift: it stays out of the counter


@dataclass(frozen=True, slots=True)
class TenantPlan:
    tier: str | None
    rules: tuple[PlannedRule, ...]
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


def _subject(scope: Scope, tenant: Tenant, tier: str | None, cluster: str) -> str:
    if scope is Scope.TENANT:
        return tenant.name
    if scope is Scope.CLUSTER:
        return cluster
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


def plan_for(policy: Policy, tenant: Tenant, day: date, cluster: str = DEFAULT_CLUSTER) -> TenantPlan:
    """``cluster``: the judging cluster's name — the cluster scope's subject and where a ``perCluster`` rule counts.
    Tenant, jurisdiction and tier counters are the fleet's: every cluster sharing the ledger adds to them."""
    cache = policy.memo
    cache_key = (tenant, day, cluster)
    plan = cache.get(cache_key)
    if isinstance(plan, TenantPlan):
        return plan
    tier = policy.tier_of(tenant.jurisdiction)
    subjects = [(Scope.TENANT, tenant.name)]
    if tier is not None and tenant.jurisdiction is not None:
        subjects += [(Scope.JURISDICTION, tenant.jurisdiction), (Scope.TIER, tier)]
    subjects.append((Scope.CLUSTER, cluster))
    year = calendar_year_window(day)
    base_keys = tuple(UsageKey(s, n, Metric.CONCURRENT_TPP, CONCURRENT_WINDOW) for s, n in subjects) + tuple(
        UsageKey(s, n, Metric.OPERATIONS, year) for s, n in subjects
    )
    rules = policy.rules_for(tenant, tier)
    keys = []
    for rule in rules:
        window = WORKLOAD_WINDOW if rule.per_workload else rule.window_key(day)
        subject = _subject(rule.scope, tenant, tier, cluster)
        if rule.per_cluster:
            subject = cluster_subject(subject, cluster)
        if rule.exclude_exempted:
            subject = excluded_subject(subject, rule.id)
        keys.append(UsageKey(rule.scope, subject, rule.metric, window))
    planned = []
    for rule, made in zip(rules, keys, strict=True):
        slot = base_keys.index(made) if made in base_keys else (UNSHARED if keys.count(made) == 1 else -1)
        key = base_keys[slot] if slot >= 0 else made  # the base tuple's own object: hashed and compared once
        cap, by = _exempt(rule, tenant, day)
        lifted = cap == _INF
        denies = rule.action is Action.DENY
        planned.append(
            PlannedRule(
                rule,
                key,
                cap,
                by,
                slot,
                counts_tpp=rule.metric is Metric.CONCURRENT_TPP,
                per_workload=rule.per_workload,
                denies=denies,
                charged_cap=cap if denies and not lifted else None,
                charged=not (lifted and rule.exclude_exempted),
            )
        )
    plan = TenantPlan(
        tier=tier,
        rules=tuple(planned),
        base_keys=base_keys,
        concurrent=len(subjects),
        who=f"tenant {tenant.name} ({tenant.jurisdiction or 'no jurisdiction'}, {tier or 'no tier'})",
        profile=f"{policy.name}@{policy.version}",
        tier_label=tier or "none",
    )
    if len(cache) > _MEMO_LIMIT:
        cache.clear()
    cache[cache_key] = plan
    return plan
