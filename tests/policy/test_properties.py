"""Invariants of decide(): monotonic in demand and in usage, exemptions never reduce what is allowed, a denial
always carries a reason, and the ledger's caps agree with the verdict."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from gpuquota.domain import Demand, Exemption, Metric, Purpose, Scope, Tenant, UsageKey, Weights
from gpuquota.policy import Policy, decide, load_policy
from tests.policy.builders import NOW, demand, group, profile, rule

POLICIES = {name: load_policy(name) for name in ("ai-diffusion-2025", "unrestricted")}
POLICIES["custom"] = profile(
    rule("ops-year", "operations", 1e25, window="calendar-year", exemptions=["licence"]),
    rule("ops-week", "operations", 1e24, window="rolling-7d", scope="jurisdiction", action="warn"),
    rule("cluster", "concurrent-tpp", 5e7, scope="cluster", exemptions=["veu"]),
    rule("rest-tenant", "concurrent-tpp", 1e6, match={"tiers": ["rest"]}, exemptions=["licence", "veu"], warnAt=0.5),
    rule("big-run", "workload-operations", 1e25, action="audit"),
    rule("country-pool", "concurrent-tpp", 2e7, scope="jurisdiction", exemptions=["veu", "licence"],
         excludeExempted=True, warnAt=0.9),
    unknownJurisdiction={"action": "warn"},
)  # fmt: skip
POOLS = ("tier2-country-allocation", "country-pool")  # the excludeExempted rules' counters (docs/policy.md)
MODELS = ("H100-SXM5-80GB", "A100-SXM4-80GB", "H20", "L40", "L4", "B200", "T4")
JURISDICTIONS = ("US", "JP", "BR", "IN", "AE", "CN", "RU", "HK", "XX", None)

models = st.sampled_from(MODELS)
policies = st.sampled_from(sorted(POLICIES))
jurisdictions = st.sampled_from(JURISDICTIONS)
runtimes = st.one_of(st.none(), st.floats(min_value=60, max_value=5e8))
exemptions = st.lists(
    st.builds(
        Exemption,
        kind=st.sampled_from(["veu", "licence", "other"]),
        id=st.sampled_from(["", "E-1", "E-2"]),
        rules=st.sampled_from(
            [(), ("tier2-tenant-lpp",), ("closed-weights-1e26",), ("ops-year",), ("tier2-country-allocation",)]
        ),
        amount=st.one_of(st.none(), st.floats(min_value=0, max_value=1e27)),
        expires=st.one_of(st.none(), st.dates(min_value=date(2025, 1, 1), max_value=date(2028, 1, 1))),
    ),
    max_size=3,
).map(tuple)


@st.composite
def demands(draw: st.DrawFn, scale: int = 1) -> Demand:
    groups = tuple(
        group(
            draw(st.sampled_from([0.5, 1, 2, 4, 8])) * scale, draw(models), pods=draw(st.integers(1, 400)), role=f"r{i}"
        )
        for i in range(draw(st.integers(1, 3)))
    )
    return demand(
        groups=groups,
        purpose=draw(st.sampled_from(list(Purpose))),
        weights=draw(st.sampled_from(list(Weights))),
        runtime_s=draw(runtimes),
    )


def _usage(tenant: Tenant, tpp: float, country: float, ops: float) -> dict[UsageKey, float]:
    usage = {
        UsageKey(Scope.TENANT, tenant.name, Metric.CONCURRENT_TPP): tpp,
        UsageKey(Scope.CLUSTER, "default", Metric.CONCURRENT_TPP): tpp,
    }
    if tenant.jurisdiction:
        usage[UsageKey(Scope.JURISDICTION, tenant.jurisdiction, Metric.CONCURRENT_TPP)] = country
        for pool in POOLS:  # what the tenants without an exemption hold: part of the country's usage
            usage[UsageKey(Scope.JURISDICTION, f"{tenant.jurisdiction}~{pool}", Metric.CONCURRENT_TPP)] = country / 2
    usage[UsageKey(Scope.TENANT, tenant.name, Metric.OPERATIONS, f"calendar-year:{NOW.year}")] = ops
    return usage


amounts = st.floats(min_value=0, max_value=1e9)
Exemptions = tuple[Exemption, ...]


@given(
    name=policies,
    d=demands(),
    jurisdiction=jurisdictions,
    ex=exemptions,
    used=amounts,
    country=amounts,
    k=st.integers(2, 4),
)
def test_more_gpus_never_turn_a_deny_into_an_allow(
    *, name: str, d: Demand, jurisdiction: str | None, ex: Exemptions, used: float, country: float, k: int
) -> None:
    policy = POLICIES[name]
    who = Tenant("globex", jurisdiction, ex)
    usage = _usage(who, used, country, 0.0)
    bigger = replace(d, groups=tuple(replace(g, pods=g.pods * k) for g in d.groups))
    if not decide(d, who, usage, policy, now=NOW).allowed:
        assert not decide(bigger, who, usage, policy, now=NOW).allowed


@given(
    name=policies, d=demands(), jurisdiction=jurisdictions, ex=exemptions, used=amounts, country=amounts, extra=amounts
)
def test_more_usage_never_turns_a_deny_into_an_allow(
    *, name: str, d: Demand, jurisdiction: str | None, ex: Exemptions, used: float, country: float, extra: float
) -> None:
    policy = POLICIES[name]
    who = Tenant("globex", jurisdiction, ex)
    if not decide(d, who, _usage(who, used, country, 1e20), policy, now=NOW).allowed:
        heavier = _usage(who, used + extra, country + extra, 1e20 + extra * 1e15)
        assert not decide(d, who, heavier, policy, now=NOW).allowed


@given(
    name=policies,
    d=demands(),
    jurisdiction=jurisdictions,
    some=exemptions,
    more=exemptions,
    used=amounts,
    country=amounts,
)
def test_exemptions_never_reduce_what_is_allowed(
    *, name: str, d: Demand, jurisdiction: str | None, some: Exemptions, more: Exemptions, used: float, country: float
) -> None:
    policy = POLICIES[name]
    without = Tenant("globex", jurisdiction, some)
    with_more = Tenant("globex", jurisdiction, some + more)
    usage = _usage(without, used, country, 0.0)
    before = decide(d, without, usage, policy, now=NOW)
    after = decide(d, with_more, usage, policy, now=NOW)
    if before.allowed:
        assert after.allowed
    caps_before = {o.rule_id: o.cap for o in before.outcomes}
    for o in after.outcomes:
        assert o.cap >= caps_before[o.rule_id]


@given(name=policies, d=demands(), jurisdiction=jurisdictions, ex=exemptions, used=amounts, country=amounts)
def test_a_deny_always_carries_a_reason(
    *, name: str, d: Demand, jurisdiction: str | None, ex: Exemptions, used: float, country: float
) -> None:
    who = Tenant("globex", jurisdiction, ex)
    decision = decide(d, who, _usage(who, used, country, 0.0), POLICIES[name], now=NOW)
    assert decision.message
    assert len(decision.message) <= 400
    assert all(len(w) <= 120 for w in decision.warnings)
    if not decision.allowed:
        assert decision.denying_rules
        assert decision.denying_rules[0].message == decision.message
        assert "denied" in decision.message
    else:
        assert not decision.denying_rules


@given(name=policies, d=demands(), jurisdiction=jurisdictions, ex=exemptions, used=amounts, country=amounts)
def test_ledger_caps_agree_with_the_verdict(
    *, name: str, d: Demand, jurisdiction: str | None, ex: Exemptions, used: float, country: float
) -> None:
    """What the ledger re-checks (used + amount ≤ cap for each capped charge) passes for every allowed decision."""
    policy: Policy = POLICIES[name]
    who = Tenant("globex", jurisdiction, ex)
    usage = _usage(who, used, country, 0.0)
    decision = decide(d, who, usage, policy, now=NOW)
    keys = [c.key for c in decision.charges]
    assert len(keys) == len(set(keys))
    if decision.allowed:
        for charge in decision.charges:
            if charge.cap is not None:
                assert usage.get(charge.key, 0.0) + charge.amount <= charge.cap
