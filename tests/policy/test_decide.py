"""decide(): tiers, each rule kind and scope, actions, exemptions, windows, unbounded runtime, unknown
jurisdictions, charges and the messages tenants read."""

from __future__ import annotations

import math
from datetime import date, timedelta

import pytest

from gpuquota.domain import (
    GpuClass,
    Metric,
    ModelSource,
    PodGroup,
    Purpose,
    Scope,
    UsageKey,
    Weights,
    calendar_year_window,
    rolling_window,
)
from gpuquota.policy import (
    MALFORMED_RULE,
    UNKNOWN_JURISDICTION_RULE,
    WORKLOAD_WINDOW,
    Policy,
    decide,
    load_policy,
    usage_keys,
)
from gpuquota.policy import format as fmt
from tests.policy.builders import NOW, TODAY, demand, group, licence, profile, rule, tenant, veu

H100_TPP = 15832.0


@pytest.fixture(scope="module")
def diffusion() -> Policy:
    return load_policy("ai-diffusion-2025")


def tenant_key(name: str = "globex") -> UsageKey:
    return UsageKey(Scope.TENANT, name, Metric.CONCURRENT_TPP)


def country_key(code: str = "BR") -> UsageKey:
    return UsageKey(Scope.JURISDICTION, code, Metric.CONCURRENT_TPP)


def allocation_key(code: str = "BR") -> UsageKey:
    """The country-allocation rule's own counter: the country's usage without the tenants VEU status exempts."""
    return UsageKey(Scope.JURISDICTION, f"{code}~tier2-country-allocation", Metric.CONCURRENT_TPP)


# --- tiers -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "tier"),
    [
        ("US", "tier-1"),
        ("JP", "tier-1"),
        ("NO", "tier-1"),
        ("GB", "tier-1"),
        ("BR", "tier-2"),
        ("IN", "tier-2"),
        ("AE", "tier-2"),
        ("CN", "tier-3"),
        ("HK", "tier-3"),
        ("MO", "tier-3"),
        ("RU", "tier-3"),
        ("XX", None),
        (None, None),
    ],
)
def test_tier_resolution(diffusion: Policy, code: str | None, tier: str | None) -> None:
    assert diffusion.tier_of(code) == tier


def test_tier_1_tenant_is_allowed_and_only_metered(diffusion: Policy) -> None:
    decision = decide(demand(8, pods=256), tenant("JP", "acme"), {}, diffusion, now=NOW)
    assert decision.allowed
    assert decision.tier == "tier-1"
    assert decision.outcomes == ()
    assert decision.message.startswith("PyTorchJob team-ml/llm-pretrain allowed for tenant acme (JP, tier-1)")
    assert all(c.cap is None for c in decision.charges)
    assert {c.key.scope for c in decision.charges} == set(Scope)


# --- the reference example ---------------------------------------------------------------------------------------


def test_2048_h100_from_tier_2_learns_what_fits(diffusion: Policy) -> None:
    decision = decide(demand(8, pods=256), tenant("BR"), {}, diffusion, now=NOW)
    assert not decision.allowed
    (denying,) = decision.denying_rules
    assert denying.rule_id == "tier2-tenant-lpp"
    assert denying.requested == 2048 * H100_TPP
    assert denying.cap == 26_900_000
    assert denying.fits_gpus == 1699
    message = decision.message
    assert len(message) < 400
    assert "\n" not in message
    for part in (
        "PyTorchJob team-ml/llm-pretrain",
        "tenant globex",
        "BR",
        "tier-2",
        "tier2-tenant-lpp",
        "2,048 × H100-SXM5-80GB",
        "32.4M TPP",
        "26.9M TPP tenant cap",
        "up to 1,699 × H100-SXM5-80GB fit",
    ):
        assert part in message, part
    assert denying.message == message
    assert decision.annotations["denied-by"] == "tier2-tenant-lpp"


def test_1699_h100_fit_and_1700_do_not(diffusion: Policy) -> None:
    assert decide(demand(1699), tenant("BR"), {}, diffusion, now=NOW).allowed
    assert not decide(demand(1700), tenant("BR"), {}, diffusion, now=NOW).allowed


def test_what_is_already_used_counts(diffusion: Policy) -> None:
    usage = {tenant_key(): 20_000_000.0}
    decision = decide(demand(8, pods=64), tenant("BR"), usage, diffusion, now=NOW)
    assert not decision.allowed
    (denying,) = decision.denying_rules
    assert denying.used == 20_000_000
    assert denying.fits_gpus == math.floor(6_900_000 / H100_TPP)
    assert "20M TPP already held by globex" in decision.message


def test_country_allocation_binds_all_tenants_of_a_country(diffusion: Policy) -> None:
    usage = {allocation_key(): 789_500_000.0}
    decision = decide(demand(8, pods=8), tenant("BR"), usage, diffusion, now=NOW)
    assert not decision.allowed
    assert [o.rule_id for o in decision.denying_rules] == ["tier2-country-allocation"]
    assert "country cap" in decision.message
    other = decide(demand(8, pods=8), tenant("AR"), usage, diffusion, now=NOW)
    assert other.allowed  # another country's counter is untouched


def test_tier_3_may_not_use_3a090_gpus(diffusion: Policy) -> None:
    decision = decide(demand(1), tenant("CN", "wei"), {}, diffusion, now=NOW)
    assert not decision.allowed
    assert decision.denying_rules[0].rule_id == "tier3-no-3a090"
    assert "no H100-SXM5-80GB fits" in decision.message
    h20 = decide(demand(8, "H20"), tenant("CN", "wei"), {}, diffusion, now=NOW)  # uncontrolled part
    assert h20.allowed


def test_a_single_controlled_group_makes_the_rule_match(diffusion: Policy) -> None:
    mixed = demand(groups=(group(8, "H20", pods=4), group(1, "L40", role="eval")))
    decision = decide(mixed, tenant("CN", "wei"), {}, diffusion, now=NOW)
    assert not decision.allowed  # L40 is 3A090.b
    assert decision.denying_rules[0].rule_id == "tier3-no-3a090"


def test_warns_at_80_percent(diffusion: Policy) -> None:
    below = decide(demand(8), tenant("BR"), {tenant_key(): 21_000_000.0}, diffusion, now=NOW)
    assert below.allowed
    assert below.warnings == ()
    above = decide(demand(8), tenant("BR"), {tenant_key(): 21_500_000.0}, diffusion, now=NOW)
    assert above.allowed
    (warning,) = above.warnings
    assert warning.startswith("tier2-tenant-lpp: tenant globex would be at 80 % of its cap")
    assert len(warning) <= 120


# --- exemptions --------------------------------------------------------------------------------------------------


def test_veu_lifts_the_tier_2_caps(diffusion: Policy) -> None:
    usage = {tenant_key(): 20_000_000.0, country_key(): 790_000_000.0}
    decision = decide(demand(8, pods=256), tenant("BR", "globex", veu()), usage, diffusion, now=NOW)
    assert decision.allowed
    lifted = {o.rule_id: o for o in decision.outcomes}
    for rule_id in ("tier2-tenant-lpp", "tier2-country-allocation"):
        assert lifted[rule_id].exempted_by == "VEU-2025-0042"
        assert math.isinf(lifted[rule_id].cap)
        assert lifted[rule_id].fits_gpus is None
    assert all(c.cap is None for c in decision.charges if c.key.metric is Metric.CONCURRENT_TPP)


def test_expired_veu_does_nothing(diffusion: Policy) -> None:
    expired = veu(expires=TODAY - timedelta(days=1))
    decision = decide(demand(8, pods=256), tenant("BR", "globex", expired), {}, diffusion, now=NOW)
    assert not decision.allowed
    assert decision.denying_rules[0].exempted_by is None
    last_day = veu(expires=TODAY)
    assert decide(demand(8, pods=256), tenant("BR", "globex", last_day), {}, diffusion, now=NOW).allowed


def test_licence_raises_the_cap_by_its_amount(diffusion: Policy) -> None:
    holder = tenant("BR", "globex", licence(10_000_000, rules=("tier2-tenant-lpp",)))
    decision = decide(demand(8, pods=256), holder, {}, diffusion, now=NOW)
    assert decision.allowed
    raised = next(o for o in decision.outcomes if o.rule_id == "tier2-tenant-lpp")
    assert raised.cap == 36_900_000
    assert raised.exempted_by == "LIC-7"
    charge = next(c for c in decision.charges if c.key == tenant_key())
    assert charge.cap == 36_900_000
    assert charge.rule_id == "tier2-tenant-lpp"
    too_big = decide(demand(8, pods=300), holder, {}, diffusion, now=NOW)
    assert not too_big.allowed
    assert too_big.denying_rules[0].fits_gpus == math.floor(36_900_000 / H100_TPP)


def test_expired_or_misdirected_licence_does_nothing(diffusion: Policy) -> None:
    expired = tenant("BR", "globex", licence(10_000_000, expires=date(2026, 1, 1)))
    assert not decide(demand(8, pods=256), expired, {}, diffusion, now=NOW).allowed
    elsewhere = tenant("BR", "globex", licence(10_000_000, rules=("tier3-no-3a090",)))
    assert not decide(demand(8, pods=256), elsewhere, {}, diffusion, now=NOW).allowed


def test_licence_without_amount_lifts_and_licences_add_up(diffusion: Policy) -> None:
    assert decide(demand(1), tenant("CN", "wei", licence(None)), {}, diffusion, now=NOW).allowed
    two = tenant("BR", "globex", licence(3_000_000), licence(3_000_000))
    decision = decide(demand(8, pods=256), two, {}, diffusion, now=NOW)
    assert next(o for o in decision.outcomes if o.rule_id == "tier2-tenant-lpp").cap == 32_900_000


def test_exemption_kind_must_be_accepted_by_the_rule(diffusion: Policy) -> None:
    # VEU is not among tier3-no-3a090's exemptions
    assert not decide(demand(1), tenant("CN", "wei", veu()), {}, diffusion, now=NOW).allowed


# --- operations and unbounded runtime ----------------------------------------------------------------------------


def test_operations_formula(diffusion: Policy) -> None:
    decision = decide(demand(8), tenant("JP"), {}, diffusion, now=NOW)
    tpp = 8 * H100_TPP
    assert decision.operations_per_second == pytest.approx(tpp / 16 * 1e12)
    assert decision.operations == pytest.approx(tpp / 16 * 1e12 * 72 * 3600)


def test_bit_length_and_utilisation_are_profile_settings() -> None:
    fp8 = profile(operations={"bitLength": 8, "utilisation": 0.5})
    decision = decide(demand(8), tenant("US"), {}, fp8, now=NOW)
    assert decision.operations_per_second == pytest.approx(8 * H100_TPP / 8 * 1e12 * 0.5)


YEAR_S = 8760 * 3600.0


def test_one_unbounded_gpu_is_admitted_outside_tier_1(diffusion: Policy) -> None:
    """Judged over the bundled one-year horizon, one GPU (or a 8 x T4 server) is ordinary work, not a 1e26 run."""
    for code in ("BR", "IN", "AE"):
        decision = decide(demand(1, runtime_s=None), tenant(code), {}, diffusion, now=NOW)
        assert decision.allowed, decision.message
        assert decision.operations == pytest.approx(H100_TPP / 16 * 1e12 * YEAR_S)
    t4 = decide(demand(8, runtime_s=None, model="T4"), tenant("BR"), {}, diffusion, now=NOW)
    assert t4.allowed, t4.message


def test_unbounded_run_that_could_pass_1e26_within_the_horizon_is_refused(diffusion: Policy) -> None:
    per_gpu_year = H100_TPP / 16 * 1e12 * YEAR_S  # ~3.1e22
    fits = math.floor(1e26 / per_gpu_year)
    holder = tenant("BR", "globex", veu())  # VEU lifts the Tier 2 TPP caps, not the 1e26 line
    allowed = decide(demand(1, pods=fits, runtime_s=None), holder, {}, diffusion, now=NOW)
    assert allowed.allowed, allowed.message
    decision = decide(demand(1, pods=fits + 1, runtime_s=None), holder, {}, diffusion, now=NOW)
    assert not decision.allowed
    (denying,) = decision.denying_rules
    assert denying.rule_id == "closed-weights-1e26"
    assert denying.requested == pytest.approx((fits + 1) * per_gpu_year)
    assert denying.fits_gpus == fits
    assert "with no runtime bound, judged over 365d = 1e26 operations" in decision.message
    assert "gpuquota.io/max-runtime" in decision.message
    assert len(decision.message) < 400
    # Tier 1 is not matched by the rule at all
    assert decide(demand(1, pods=fits + 1, runtime_s=None), tenant("US"), {}, diffusion, now=NOW).allowed


def test_an_infinite_horizon_denies_unbounded_training_with_a_hint() -> None:
    policy = profile(rule("ops", "workload-operations", 1e26), operations={"unboundedRuntime": {"horizon": "infinite"}})
    decision = decide(demand(1, runtime_s=None), tenant("BR"), {}, policy, now=NOW)
    assert not decision.allowed
    assert decision.operations is None
    (denying,) = decision.denying_rules
    assert math.isinf(denying.requested)
    assert "activeDeadlineSeconds" in decision.message
    # base metering reserves concurrent TPP only: operations are settled from operations_per_second
    assert {c.key.metric for c in decision.charges} == {Metric.CONCURRENT_TPP}


@pytest.mark.parametrize(
    ("purpose", "weights", "jurisdiction"),
    [
        (Purpose.INFERENCE, Weights.CLOSED, "BR"),
        (Purpose.TRAINING, Weights.OPEN, "BR"),
        (Purpose.TRAINING, Weights.CLOSED, "US"),
    ],
)
def test_unbounded_runs_the_1e26_rule_does_not_cover(
    diffusion: Policy, purpose: Purpose, weights: Weights, jurisdiction: str
) -> None:
    decision = decide(
        demand(8, runtime_s=None, purpose=purpose, weights=weights), tenant(jurisdiction), {}, diffusion, now=NOW
    )
    assert decision.allowed


def test_bounded_run_above_1e26_operations_is_denied(diffusion: Policy) -> None:
    per_gpu_second = H100_TPP / 16 * 1e12
    runtime = 1e26 / (1600 * per_gpu_second) * 1.01  # 1,600 H100s just past 1e26
    decision = decide(demand(8, pods=200, runtime_s=runtime), tenant("BR"), {}, diffusion, now=NOW)
    assert [o.rule_id for o in decision.denying_rules] == ["closed-weights-1e26"]
    assert decision.denying_rules[0].key.window == WORKLOAD_WINDOW
    assert decision.denying_rules[0].fits_gpus == 1584
    assert "per-workload cap of 1e26 operations" in decision.message
    fine_tuning = decide(demand(8, pods=200, runtime_s=runtime * 0.98), tenant("BR"), {}, diffusion, now=NOW)
    assert fine_tuning.allowed


@pytest.mark.parametrize("spelling", ["horizon", "assume"])
def test_the_horizon_bounds_unbounded_runs(spelling: str) -> None:
    policy = profile(
        rule("ops", "workload-operations", 1e24),
        operations={"unboundedRuntime": {spelling: "1h"}},
    )
    decision = decide(demand(8, runtime_s=None), tenant("BR"), {}, policy, now=NOW)
    assert decision.operations == pytest.approx(8 * H100_TPP / 16 * 1e12 * 3600)
    assert decision.allowed


# --- rule kinds, scopes and windows with a custom profile --------------------------------------------------------


def test_operations_cap_in_the_calendar_year() -> None:
    policy = profile(rule("yearly", "operations", 1e24, window="calendar-year", scope="tenant"))
    key = UsageKey(Scope.TENANT, "globex", Metric.OPERATIONS, calendar_year_window(TODAY))
    ops = decide(demand(8), tenant("BR"), {}, policy, now=NOW).operations
    assert ops is not None
    assert decide(demand(8), tenant("BR"), {key: 1e24 - ops}, policy, now=NOW).allowed
    denied = decide(demand(8), tenant("BR"), {key: 1e24 - ops + 1e20}, policy, now=NOW)
    assert not denied.allowed
    assert denied.denying_rules[0].key == key
    assert "calendar-year" in denied.message
    last_year = UsageKey(Scope.TENANT, "globex", Metric.OPERATIONS, calendar_year_window(date(2025, 6, 1)))
    assert decide(demand(8), tenant("BR"), {last_year: 1e30}, policy, now=NOW).allowed


def test_operations_cap_in_a_rolling_window() -> None:
    policy = profile(rule("monthly", "operations", 1e23, window="rolling-30d", scope="jurisdiction"))
    decision = decide(demand(8, runtime_s=3600), tenant("BR"), {}, policy, now=NOW)
    (outcome,) = decision.outcomes
    assert outcome.key == UsageKey(Scope.JURISDICTION, "BR", Metric.OPERATIONS, rolling_window(30, TODAY))
    charge = next(c for c in decision.charges if c.key == outcome.key)
    assert charge.cap == 1e23
    assert charge.rule_id == "monthly"
    assert charge.amount == decision.operations


@pytest.mark.parametrize(
    ("scope", "subject"), [("tenant", "globex"), ("jurisdiction", "BR"), ("tier", "rest"), ("cluster", "default")]
)
def test_scopes_name_their_subject(scope: str, subject: str) -> None:
    policy = profile(rule("cap", "concurrent-tpp", 100_000, scope=scope))
    decision = decide(demand(8), tenant("BR"), {}, policy, now=NOW)
    (outcome,) = decision.outcomes
    assert outcome.key == UsageKey(Scope(scope), subject, Metric.CONCURRENT_TPP)
    assert outcome.exceeded == (8 * H100_TPP > 100_000)


def test_warn_and_audit_actions_allow() -> None:
    policy = profile(
        rule("soft", "concurrent-tpp", 1000, action="warn"),
        rule("watch", "concurrent-tpp", 1000, action="audit", scope="cluster"),
    )
    decision = decide(demand(8), tenant("BR"), {}, policy, now=NOW)
    assert decision.allowed
    assert [w.split(":")[0] for w in decision.warnings] == ["soft"]
    assert decision.annotations["audit"] == "watch"
    assert all(c.cap is None for c in decision.charges)  # only deny rules give the ledger a cap


def test_two_deny_rules_on_one_counter_charge_the_smaller_cap() -> None:
    policy = profile(rule("loose", "concurrent-tpp", 9e6), rule("tight", "concurrent-tpp", 5e6))
    decision = decide(demand(8), tenant("BR"), {}, policy, now=NOW)
    charges = [c for c in decision.charges if c.key == tenant_key()]
    assert len(charges) == 1
    assert (charges[0].cap, charges[0].rule_id) == (5e6, "tight")


def test_several_denials_are_all_named() -> None:
    policy = profile(rule("a", "concurrent-tpp", 10), rule("b", "concurrent-tpp", 10, scope="cluster"))
    decision = decide(demand(8), tenant("BR"), {}, policy, now=NOW)
    assert [o.rule_id for o in decision.denying_rules] == ["a", "b"]
    assert "(also exceeds: b)" in decision.message
    assert decision.annotations["denied-by"] == "a,b"


@pytest.mark.parametrize(
    ("match", "who", "matches"),
    [
        ({"jurisdictions": ["BR"]}, tenant("BR"), True),
        ({"jurisdictions": ["BR"]}, tenant("AR"), False),
        ({"excludeJurisdictions": ["BR"]}, tenant("BR"), False),
        ({"tiers": ["gold"]}, tenant("JP"), True),
        ({"tiers": ["gold"]}, tenant("BR"), False),
        ({"excludeTiers": ["gold"]}, tenant("BR"), True),
        ({"tenants": ["globex"]}, tenant("BR"), True),
        ({"tenants": ["initech"]}, tenant("BR"), False),
        ({"excludeTenants": ["globex"]}, tenant("BR"), False),
    ],
)
def test_tenant_side_matching(match: dict[str, list[str]], who: object, matches: bool) -> None:
    policy = profile(rule("cap", "concurrent-tpp", 1, match=match))
    decision = decide(demand(1), who, {}, policy, now=NOW)  # type: ignore[arg-type]
    assert bool(decision.outcomes) == matches
    assert decision.allowed == (not matches)


@pytest.mark.parametrize(
    ("match", "matches"),
    [
        ({"purposes": ["inference"]}, False),
        ({"purposes": ["training", "fine-tuning"]}, True),
        ({"weights": ["open"]}, False),
        ({"gpuClasses": ["uncontrolled"]}, False),
        ({"gpuClasses": ["3A090.a"]}, True),
    ],
)
def test_workload_side_matching(match: dict[str, list[str]], matches: bool) -> None:
    policy = profile(rule("cap", "concurrent-tpp", 1, match=match))
    decision = decide(demand(1), tenant("BR"), {}, policy, now=NOW)
    assert bool(decision.outcomes) == matches


# --- unknown jurisdiction ----------------------------------------------------------------------------------------


def test_unknown_jurisdiction_is_denied_with_the_label_to_set(diffusion: Policy) -> None:
    decision = decide(demand(1), tenant(None, "mystery"), {}, diffusion, now=NOW)
    assert not decision.allowed
    (outcome,) = decision.denying_rules
    assert outcome.rule_id == UNKNOWN_JURISDICTION_RULE
    assert "gpuquota.io/jurisdiction" in decision.message
    assert "tenant mystery (no jurisdiction, no tier)" in decision.message
    assert len(decision.message) < 400


def test_invalid_code_is_reported_as_such(diffusion: Policy) -> None:
    decision = decide(demand(1), tenant("XX"), {}, diffusion, now=NOW)
    assert not decision.allowed
    assert "'XX' is not an ISO 3166-1 alpha-2 country code" in decision.message


def test_unknown_jurisdiction_under_unrestricted_is_allowed_and_audited() -> None:
    decision = decide(demand(8), tenant(None), {}, load_policy("unrestricted"), now=NOW)
    assert decision.allowed
    assert decision.annotations["audit"] == UNKNOWN_JURISDICTION_RULE
    assert {c.key.scope for c in decision.charges} == {Scope.TENANT, Scope.CLUSTER}


def test_unknown_jurisdiction_warn_mode() -> None:
    policy = profile(unknownJurisdiction={"action": "warn"})
    decision = decide(demand(8), tenant(None), {}, policy, now=NOW)
    assert decision.allowed
    assert decision.warnings[0].startswith(UNKNOWN_JURISDICTION_RULE)
    assert len(decision.warnings[0]) <= 120


def test_unrestricted_meters_everything() -> None:
    decision = decide(demand(8, pods=10_000), tenant("CN"), {}, load_policy("unrestricted"), now=NOW)
    assert decision.allowed
    assert len(decision.charges) == 8
    assert all(c.cap is None and c.amount > 0 for c in decision.charges)


# --- malformed demands, warnings, purity -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        PodGroup("worker", -1, 8, "H100-SXM5-80GB", ModelSource.SELECTOR, H100_TPP, GpuClass.A090_A),
        PodGroup("worker", 1, float("nan"), "H100-SXM5-80GB", ModelSource.SELECTOR, H100_TPP, GpuClass.A090_A),
        PodGroup("worker", 1, 8, "H100-SXM5-80GB", ModelSource.SELECTOR, float("inf"), GpuClass.A090_A),
    ],
)
def test_malformed_demand_is_denied(diffusion: Policy, bad: PodGroup) -> None:
    decision = decide(demand(groups=(bad, group(1))), tenant("JP"), {}, diffusion, now=NOW)
    assert not decision.allowed
    assert decision.denying_rules[0].rule_id == MALFORMED_RULE
    assert decision.message


def test_negative_runtime_is_malformed(diffusion: Policy) -> None:
    assert not decide(demand(8, runtime_s=-5), tenant("JP"), {}, diffusion, now=NOW).allowed


def test_demand_warnings_are_passed_on_and_clipped(diffusion: Policy) -> None:
    long = "estimated: unknown GPU 'Mystery-9000' counted as GB200 " + "x" * 200
    decision = decide(demand(1, warnings=(long,)), tenant("JP"), {}, diffusion, now=NOW)
    assert decision.allowed
    assert decision.warnings[0].startswith("estimated: unknown GPU")
    assert len(decision.warnings[0]) == 120
    assert "1 warning(s)" in decision.message


def test_long_names_keep_the_message_under_400(diffusion: Policy) -> None:
    d = demand(8, pods=256, name="n" * 253)
    decision = decide(d, tenant("BR", "t" * 63), {}, diffusion, now=NOW)
    assert len(decision.message) <= 400


def test_decide_is_pure(diffusion: Policy) -> None:
    usage = {tenant_key(): 1e6}
    snapshot = dict(usage)
    first = decide(demand(8, pods=300), tenant("BR"), usage, diffusion, now=NOW)
    second = decide(demand(8, pods=300), tenant("BR"), usage, diffusion, now=NOW)
    assert first == second
    assert usage == snapshot


def test_usage_keys_cover_every_counter_read_or_charged(diffusion: Policy) -> None:
    d = demand(8)
    keys = usage_keys(diffusion, d, tenant("BR"), NOW)
    decision = decide(d, tenant("BR"), {}, diffusion, now=NOW)
    read = {o.key for o in decision.outcomes if o.key.window != WORKLOAD_WINDOW}
    charged = {c.key for c in decision.charges}
    assert read | charged == keys
    assert all(k.window != WORKLOAD_WINDOW for k in keys)
    # judged over a horizon, an unbounded run reserves operations like a bounded one
    assert usage_keys(diffusion, demand(8, runtime_s=None), tenant("BR"), NOW) == keys
    forever = profile(operations={"unboundedRuntime": {"horizon": "infinite"}})
    unbounded = usage_keys(forever, demand(8, runtime_s=None), tenant("BR"), NOW)
    assert all(k.metric is Metric.CONCURRENT_TPP for k in unbounded)


def test_profile_identity_is_recorded(diffusion: Policy) -> None:
    decision = decide(demand(8), tenant("BR"), {}, diffusion, now=NOW)
    assert (decision.profile, decision.profile_version) == ("ai-diffusion-2025", "2025.6")
    assert decision.annotations["profile"] == "ai-diffusion-2025@2025.6"
    assert decision.annotations["tier"] == "tier-2"
    assert decision.annotations["tpp"] == f"{8 * H100_TPP:.0f}"
    assert decision.annotations["rules"] == "tier2-tenant-lpp,tier2-country-allocation,closed-weights-1e26"
    assert all(len(v) < 256 for v in decision.annotations.values())


def test_a_scale_up_is_held_to_per_workload_rules_on_the_whole_workload(diffusion: Policy) -> None:
    per_gpu_second = H100_TPP / 16 * 1e12
    runtime = 1e26 / (1600 * per_gpu_second) * 1.01  # 1,600 H100s just past 1e26
    whole = demand(8, pods=200, runtime_s=runtime)
    growth = demand(8, pods=100, runtime_s=runtime)  # the 100 pods an UPDATE adds: half of 1e26 on their own
    assert decide(growth, tenant("BR"), {}, diffusion, now=NOW).allowed
    decision = decide(growth, tenant("BR"), {}, diffusion, now=NOW, whole=whole)
    assert not decision.allowed
    [denying] = decision.denying_rules
    assert denying.rule_id == "closed-weights-1e26"
    assert denying.requested == pytest.approx(whole_ops := 1600 * per_gpu_second * runtime)
    assert "per-workload cap of 1e26 operations" in decision.message
    assert "1,600 × " in decision.message  # the whole workload's GPUs and operations, not the growth's
    assert f"= {fmt.operations(whole_ops)} operations" in decision.message
    assert fmt.operations(800 * per_gpu_second * runtime) not in decision.message
    # caps on what is held or spent still see only the growth: it is all the ledger reserves
    assert decision.operations == pytest.approx(800 * per_gpu_second * runtime)
    assert max(c.amount for c in decision.charges if c.key.metric is Metric.CONCURRENT_TPP) == pytest.approx(
        800 * H100_TPP)


def test_the_whole_workload_changes_nothing_when_it_fits_or_is_the_demand(diffusion: Policy) -> None:
    growth = demand(8, pods=2)
    plain = decide(growth, tenant("BR"), {}, diffusion, now=NOW)
    assert decide(growth, tenant("BR"), {}, diffusion, now=NOW, whole=growth) == plain
    fits = decide(growth, tenant("BR"), {}, diffusion, now=NOW, whole=demand(8, pods=4))
    assert fits.allowed
    assert fits.charges == plain.charges
    [ops_rule] = [o for o in fits.outcomes if o.rule_id == "closed-weights-1e26"]
    assert plain.operations is not None
    assert ops_rule.requested == pytest.approx(2 * plain.operations)  # judged on the whole: 32 GPUs, not 16
