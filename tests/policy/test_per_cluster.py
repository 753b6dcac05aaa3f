"""Caps across a fleet: tenant, jurisdiction and tier counters are the fleet's; the cluster scope counts the judging
cluster; a ``perCluster`` rule caps a tenant (or country, or tier) in each cluster — both at once in one profile."""

from __future__ import annotations

from typing import Any

import pytest

from gpuquota.domain import Decision, Metric, Scope, UsageKey
from gpuquota.policy import PolicyError, decide
from tests.ledger.builders import H100_TPP
from tests.policy.builders import NOW, demand, profile, rule, tenant

FLEET = 48 * H100_TPP
PER_CLUSTER = 32 * H100_TPP


def both() -> Any:
    return profile(
        rule("fleet", "concurrent-tpp", FLEET),
        rule("per-cluster", "concurrent-tpp", PER_CLUSTER, perCluster=True),
        rule("small-cluster", "concurrent-tpp", 64 * H100_TPP, scope="cluster"),
    )


def admit(usage: dict[UsageKey, float], decision: Decision) -> None:
    assert decision.allowed, decision.message
    for charge in decision.charges:
        usage[charge.key] = usage.get(charge.key, 0.0) + charge.amount


def test_per_cluster_and_fleet_caps_at_once() -> None:
    policy, usage = both(), dict[UsageKey, float]()
    admit(usage, decide(demand(32), tenant(), usage, policy, now=NOW, cluster="a"))
    refused = decide(demand(8), tenant(), usage, policy, now=NOW, cluster="a")  # a is at its per-cluster cap
    assert not refused.allowed
    assert "per-cluster" in refused.message
    assert "globex in cluster a" in refused.message
    admit(usage, decide(demand(16), tenant(), usage, policy, now=NOW, cluster="b"))  # b has room, the fleet too
    fleet_full = decide(demand(8), tenant(), usage, policy, now=NOW, cluster="c")  # c has room; the fleet has not
    assert not fleet_full.allowed
    assert [o.rule_id for o in fleet_full.denying_rules] == ["fleet"]
    assert usage[UsageKey(Scope.TENANT, "globex", Metric.CONCURRENT_TPP)] == FLEET
    assert usage[UsageKey(Scope.TENANT, "globex@a", Metric.CONCURRENT_TPP)] == PER_CLUSTER
    assert usage[UsageKey(Scope.CLUSTER, "b", Metric.CONCURRENT_TPP)] == 16 * H100_TPP


def test_the_cluster_scope_counts_the_judging_cluster_only() -> None:
    policy = profile(rule("pool", "concurrent-tpp", 8 * H100_TPP, scope="cluster"))
    usage = {UsageKey(Scope.CLUSTER, "a", Metric.CONCURRENT_TPP): 8 * H100_TPP}
    assert not decide(demand(8), tenant(), usage, policy, now=NOW, cluster="a").allowed
    assert decide(demand(8), tenant(), usage, policy, now=NOW, cluster="b").allowed
    assert decide(demand(8), tenant(), {}, policy, now=NOW).outcomes[0].key.subject == "default"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"scope": "cluster", "perCluster": True}, "the cluster scope already counts one cluster"),
        ({"perCluster": "yes please"}, "perCluster"),
    ],
)
def test_bad_per_cluster_rules_are_clear_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        profile(rule("x", "concurrent-tpp", 1.0, **fields))


def test_per_cluster_needs_usage_to_count() -> None:
    with pytest.raises(PolicyError, match="workload-operations"):
        profile(rule("x", "workload-operations", 1.0, perCluster=True))


def test_tier_names_may_not_hold_the_cluster_separator() -> None:
    with pytest.raises(PolicyError, match="'@'"):
        profile(tiers=[{"name": "t@x", "jurisdictions": ["BR"]}], defaultTier="t@x")
