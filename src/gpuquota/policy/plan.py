"""The tenant side of a decision, compiled once per (tenant, day) and memoised on the policy.

Which rules match the tenant, the ledger key each reads, the cap after the tenant's exemptions and the base
metering keys depend only on the tenant and the day — not on the workload — so ``decide()`` computes them once
and then only does the workload-side match and the arithmetic per demand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from gpuquota.domain import CONCURRENT_WINDOW, Action, Metric, Scope, Tenant, UsageKey, calendar_year_window
from gpuquota.policy.model import Policy, Rule

WORKLOAD_WINDOW = "workload"
"""Window of the key a per-workload operations outcome carries. It names no ledger counter and is never charged."""
UNKNOWN_SUBJECT = "unknown"
"""Subject of a jurisdiction- or tier-scoped rule key when the tenant has no known jurisdiction."""
_INF = math.inf
_MEMO_LIMIT = 65536


@dataclass(frozen=True, slots=True)
class PlannedRule:
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


def plan_for(policy: Policy, tenant: Tenant, day: date) -> TenantPlan:
    cache = policy.memo
    cache_key = (tenant, day)
    plan = cache.get(cache_key)
    if isinstance(plan, TenantPlan):
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
            PlannedRule(
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
