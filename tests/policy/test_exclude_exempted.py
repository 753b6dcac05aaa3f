"""``excludeExempted``: a rule whose exemptions lift a tenant leaves that tenant's usage out of its own counter.

The reference: "Compute held under VEU status does not count against the country allocation." These tests admit
workloads one after another, adding each allowed decision's charges to the usage (what the ledger does), and
check that a VEU tenant's GPUs no longer shrink what other tenants of its country may still use, while the base
jurisdiction counter (metering) still counts everyone.
"""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuquota.domain import Decision, Demand, Metric, Scope, Tenant, UsageKey
from gpuquota.ledger import ReserveStatus, open_ledger
from gpuquota.policy import Policy, PolicyError, decide, load_policy, parse_policy, usage_keys
from tests.ledger.builders import reservation
from tests.policy.builders import BASE_PROFILE, NOW, TODAY, demand, licence, profile, rule, tenant, veu

H100_TPP = 15_832.0
COUNTRY_RULE = "tier2-country-allocation"
POOL = UsageKey(Scope.JURISDICTION, f"BR~{COUNTRY_RULE}", Metric.CONCURRENT_TPP)
COUNTRY = UsageKey(Scope.JURISDICTION, "BR", Metric.CONCURRENT_TPP)


@pytest.fixture(scope="module")
def diffusion() -> Policy:
    return load_policy("ai-diffusion-2025")


def admit(usage: dict[UsageKey, float], decision: Decision) -> None:
    """What the ledger does with an allowed decision: add every charge to its counter."""
    assert decision.allowed, decision.message
    for charge in decision.charges:
        usage[charge.key] = usage.get(charge.key, 0.0) + charge.amount


def country_outcome(decision: Decision, rule_id: str = COUNTRY_RULE) -> Any:
    return next(o for o in decision.outcomes if o.rule_id == rule_id)


def filled(pool: float) -> dict[UsageKey, float]:
    """A Brazil whose non-exempted tenants hold ``pool`` TPP (so the base counter holds at least as much)."""
    return {POOL: pool, COUNTRY: pool}


# --- the shipped profile -------------------------------------------------------------------------------------------


def test_the_country_rule_reads_its_own_counter(diffusion: Policy) -> None:
    (country,) = [r for r in diffusion.rules if r.id == COUNTRY_RULE]
    assert country.exclude_exempted
    assert diffusion.version == "2025.6"
    lpp = next(r for r in diffusion.rules if r.id == "tier2-tenant-lpp")
    assert not lpp.exclude_exempted  # tenant-scoped: nothing to exclude
    keys = usage_keys(diffusion, demand(8), tenant("BR"), NOW)
    assert {POOL, COUNTRY} <= keys  # the rule's counter, and the base metering counter
    assert POOL in usage_keys(diffusion, demand(8), tenant("BR", "initech", veu()), NOW)  # read for the outcome
    assert POOL not in usage_keys(diffusion, demand(8, "T4"), tenant("BR"), NOW)  # no match: uncontrolled


def test_a_veu_reservation_no_longer_reduces_what_fits_for_others(diffusion: Policy) -> None:
    usage = filled(780_000_000.0)  # 10M TPP of room left: 631 H100
    globex = tenant("BR", "globex")
    before = country_outcome(decide(demand(8), globex, usage, diffusion, now=NOW))
    assert before.fits_gpus == math.floor(10_000_000 / H100_TPP)

    initech = tenant("BR", "initech", veu())
    veu_run = decide(demand(8, pods=256), initech, usage, diffusion, now=NOW)  # 2,048 H100 = 32.4M TPP
    assert country_outcome(veu_run).exempted_by == "VEU-2025-0042"
    assert POOL not in {c.key for c in veu_run.charges}
    admit(usage, veu_run)

    assert usage[POOL] == 780_000_000.0  # the VEU compute stays out of the allocation…
    assert usage[COUNTRY] == 780_000_000.0 + 2048 * H100_TPP  # …but is metered for the country
    after = decide(demand(8, pods=64), globex, usage, diffusion, now=NOW)  # 512 H100 = 8.1M TPP
    assert after.allowed, after.message
    assert country_outcome(after).fits_gpus == before.fits_gpus
    assert country_outcome(after).used == 780_000_000.0
    admit(usage, after)
    assert usage[POOL] == 780_000_000.0 + 512 * H100_TPP
    assert usage[COUNTRY] == 780_000_000.0 + 2560 * H100_TPP  # metering counts both tenants


def test_the_country_cap_still_binds_non_exempted_tenants(diffusion: Policy) -> None:
    usage = filled(789_500_000.0)
    decision = decide(demand(8, pods=8), tenant("BR"), usage, diffusion, now=NOW)
    assert [o.rule_id for o in decision.denying_rules] == [COUNTRY_RULE]
    assert "already held by BR, exempted tenants not counted" in decision.message
    charge = next(c for c in decide(demand(8), tenant("BR"), usage, diffusion, now=NOW).charges if c.key == POOL)
    assert (charge.cap, charge.rule_id) == (790_000_000, COUNTRY_RULE)  # the ledger re-checks this counter
    # the base counter alone (VEU tenants' compute) no longer fills the allocation
    assert decide(demand(8, pods=8), tenant("BR"), {COUNTRY: 790_000_000.0}, diffusion, now=NOW).allowed


def test_an_expired_veu_counts_again(diffusion: Policy) -> None:
    lapsed = tenant("BR", "initech", veu(expires=TODAY - timedelta(days=1)))
    decision = decide(demand(8), lapsed, {}, diffusion, now=NOW)
    assert next(c for c in decision.charges if c.key == POOL).cap == 790_000_000


def test_a_licence_that_raises_the_cap_stays_in_the_pool(diffusion: Policy) -> None:
    holder = tenant("BR", "hooli", licence(50_000_000, rules=(COUNTRY_RULE,)))
    usage = filled(780_000_000.0)
    decision = decide(demand(8, pods=64), holder, usage, diffusion, now=NOW)
    outcome = country_outcome(decision)
    assert (outcome.cap, outcome.exempted_by, outcome.used) == (840_000_000, "LIC-7", 780_000_000.0)
    assert next(c for c in decision.charges if c.key == POOL).cap == 840_000_000
    admit(usage, decision)
    assert usage[POOL] == 780_000_000.0 + 512 * H100_TPP  # it fills the allocation for everyone else
    fits = country_outcome(decide(demand(8), tenant("BR"), usage, diffusion, now=NOW)).fits_gpus
    assert fits == math.floor((10_000_000 - 512 * H100_TPP) / H100_TPP)


def test_a_licence_that_lifts_the_cap_leaves_the_pool(diffusion: Policy) -> None:
    holder = tenant("BR", "hooli", licence(None, rules=(COUNTRY_RULE,)))
    decision = decide(demand(8, pods=64), holder, filled(789_000_000.0), diffusion, now=NOW)
    assert decision.allowed
    assert math.isinf(country_outcome(decision).cap)
    assert POOL not in {c.key for c in decision.charges}
    assert COUNTRY in {c.key for c in decision.charges}


def test_the_warning_threshold_reads_the_rules_counter(diffusion: Policy) -> None:
    # Brazil is full of VEU compute, but the tenants the allocation applies to hold 10 %: no warning.
    quiet = decide(demand(8), tenant("BR"), {COUNTRY: 780_000_000.0, POOL: 79_000_000.0}, diffusion, now=NOW)
    assert not [w for w in quiet.warnings if w.startswith(COUNTRY_RULE)]
    loud = decide(demand(8), tenant("BR"), {COUNTRY: 0.0, POOL: 640_000_000.0}, diffusion, now=NOW)
    (warning,) = [w for w in loud.warnings if w.startswith(COUNTRY_RULE)]
    assert warning.startswith(f"{COUNTRY_RULE}: country BR would be at 81 % of its cap")


# --- the ledger re-checks the rule's counter -----------------------------------------------------------------------

POOL_RULE = rule("country-pool", "concurrent-tpp", 16 * H100_TPP, scope="jurisdiction", exemptions=["veu", "licence"],
                 excludeExempted=True)  # fmt: skip


def test_the_ledger_rechecks_the_rules_counter(tmp_path: Path) -> None:
    policy = profile(POOL_RULE)
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:

        def reserve(uid: str, who: Tenant, d: Demand, seen: dict[UsageKey, float] | None = None) -> ReserveStatus:
            usage = ledger.usage(usage_keys(policy, d, who, NOW), NOW) if seen is None else seen
            decision = decide(d, who, usage, policy, now=NOW)
            assert decision.allowed, decision.message
            r = reservation(uid, tenant=who.name, jurisdiction="BR", tier="rest", gpus=d.gpus, tpp=d.tpp,
                            charges=decision.charges)  # fmt: skip
            return ledger.reserve(r, NOW).status

        pool = UsageKey(Scope.JURISDICTION, "BR~country-pool", Metric.CONCURRENT_TPP)
        assert reserve("veu-1", tenant("BR", "initech", veu()), demand(8, pods=8)) is ReserveStatus.RESERVED
        stale = ledger.usage(usage_keys(policy, demand(8), tenant("BR", "acme"), NOW), NOW)
        assert stale.get(pool, 0.0) == 0.0  # 64 VEU GPUs, none in the pool
        assert reserve("globex-1", tenant("BR", "globex"), demand(8, pods=2)) is ReserveStatus.RESERVED
        # acme judged on usage read before globex reserved: decide() allows, the ledger's re-check refuses
        result = reserve("acme-1", tenant("BR", "acme"), demand(8), stale)
        assert result is ReserveStatus.CAP_EXCEEDED
        after = ledger.usage([pool, COUNTRY], NOW)
        assert after[pool] == 16 * H100_TPP
        assert after[COUNTRY] == 80 * H100_TPP  # metering: the VEU tenant's 64 GPUs and globex's 16
    finally:
        ledger.close()


# --- the profile format --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"scope": "jurisdiction"}, "excludeExempted needs exemptions"),
        ({"scope": "tenant", "exemptions": ["veu"]}, "shared scope"),
        ({"scope": "cluster", "exemptions": ["veu"], "cap": {"kind": "workload-operations", "amount": 1}},
         "counts no usage"),
    ],
)  # fmt: skip
def test_exclude_exempted_is_refused_where_it_would_do_nothing(fields: dict[str, Any], expected: str) -> None:
    spec = {**rule("pool", "concurrent-tpp", 1e6), **fields, "excludeExempted": True}
    with pytest.raises(PolicyError, match=expected):
        parse_policy({**BASE_PROFILE, "rules": [spec]}, "my-profile.yaml")


def test_tier_names_may_not_contain_the_separator() -> None:
    tiers = [{"name": "rest~pool", "jurisdictions": []}]
    with pytest.raises(PolicyError, match="may not contain '~'"):
        parse_policy({**BASE_PROFILE, "tiers": tiers, "defaultTier": "rest~pool"}, "my-profile.yaml")


def test_without_the_flag_a_lifted_tenant_still_fills_the_shared_counter() -> None:
    policy = profile(rule("cluster-pool", "concurrent-tpp", 16 * H100_TPP, scope="cluster", exemptions=["veu"]))
    cluster = UsageKey(Scope.CLUSTER, "default", Metric.CONCURRENT_TPP)
    usage: dict[UsageKey, float] = {}
    admit(usage, decide(demand(8, pods=8), tenant("BR", "initech", veu()), usage, policy, now=NOW))
    assert not decide(demand(8), tenant("BR"), usage, policy, now=NOW).allowed
    assert usage[cluster] == 64 * H100_TPP
    assert country_outcome(decide(demand(8), tenant("BR"), usage, policy, now=NOW), "cluster-pool").key == cluster


# --- property: a lifted tenant's reservation never moves another tenant's verdict on the rule ------------------------

POLICY = profile(POOL_RULE, rule("tier-pool", "operations", 1e24, window="rolling-30d", scope="tier",
                                 exemptions=["veu", "licence"], excludeExempted=True, warnAt=0.5))  # fmt: skip


@given(
    first=st.tuples(st.integers(1, 64), st.sampled_from(["H100-SXM5-80GB", "A100-SXM4-80GB", "L4"])),
    second=st.tuples(st.integers(1, 64), st.sampled_from(["H100-SXM5-80GB", "A100-SXM4-80GB", "L4"])),
    held=st.floats(min_value=0, max_value=32 * H100_TPP),
    runtime=st.one_of(st.none(), st.floats(min_value=60, max_value=1e7)),
    raised=st.one_of(st.none(), st.floats(min_value=0, max_value=1e7)),
)
def test_a_lifted_tenants_usage_never_changes_anothers_decision(
    *, first: tuple[int, str], second: tuple[int, str], held: float, runtime: float | None, raised: float | None
) -> None:
    other = tenant("BR", "globex", *(() if raised is None else (licence(raised),)))
    usage = {UsageKey(Scope.JURISDICTION, "BR~country-pool", Metric.CONCURRENT_TPP): held}
    d = demand(first[0], first[1], runtime_s=runtime)
    before = decide(d, other, usage, POLICY, now=NOW)
    lifted = decide(demand(second[0], second[1], runtime_s=runtime), tenant("BR", "initech", veu()), usage, POLICY,
                    now=NOW)  # fmt: skip
    assert lifted.allowed
    heavier = dict(usage)
    admit(heavier, lifted)
    after = decide(d, other, heavier, POLICY, now=NOW)
    assert (after.allowed, after.warnings, after.outcomes) == (before.allowed, before.warnings, before.outcomes)
