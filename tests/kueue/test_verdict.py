"""The check's pure decisions: reading a Workload (PodSets × the flavour's node labels → the demand), what a
Workload calls for (``step``), and the state its check gets (``verdict``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuquota.catalog import load_catalog
from gpuquota.domain import Demand, Metric, Scope, Tenant, UsageKey
from gpuquota.kueue.verdict import CheckState, Reason, Step, invalid, made_for, request_uid, step, verdict
from gpuquota.kueue.workload import owner_demand, podset_shape, read_workload
from gpuquota.policy import Policy, parse_policy_text
from gpuquota.workloads import ExtractContext, WorkloadError
from tests.kueue.objects import CHECK, KUEUE_POLICY, flavor, workload

NOW = datetime(2026, 12, 3, 11, 0, tzinfo=UTC)
H100_TPP = 15832.0
CAP = 253312.0  # the tier-2 tenant cap: 16 H100
LABELS = {"h100": flavor()["spec"]["nodeLabels"], "l4": {"nvidia.com/gpu.product": "NVIDIA-L4"}}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy_text(KUEUE_POLICY, "test")


@pytest.fixture(scope="module")
def ctx(policy: Policy) -> ExtractContext:
    return ExtractContext(load_catalog(), (), policy.default_model, policy.shared_gpu_fraction,
                          policy.unknown_model_tpp)


def demand_of(obj: dict[str, object], ctx: ExtractContext) -> Demand:
    demand = owner_demand(read_workload(obj), LABELS, ctx)
    assert demand is not None
    return demand


def tenant_key(name: str) -> UsageKey:
    return UsageKey(Scope.TENANT, name, Metric.CONCURRENT_TPP)


# --- reading -----------------------------------------------------------------------------------------------------


def test_the_flavour_kueue_assigned_gives_the_model_and_the_owner_names_the_demand(ctx: ExtractContext) -> None:
    demand = demand_of(workload("a", "acme", pods=2, gpus=4), ctx)
    assert (demand.kind, demand.namespace, demand.name, demand.api_version) == ("Job", "acme", "a", "batch/v1")
    assert demand.gpus == 8
    assert demand.model == "H100-SXM5-80GB"
    assert demand.tpp == pytest.approx(8 * H100_TPP)


def test_a_weaker_flavour_counts_as_that_model(ctx: ExtractContext) -> None:
    weak = demand_of(workload("a", "acme", gpus=8, flavor="l4"), ctx)
    assert weak.model == "L4"
    assert weak.tpp < 8 * H100_TPP


def test_no_flavour_yet_counts_at_the_profile_default_never_less(ctx: ExtractContext) -> None:
    unassigned = demand_of(workload("a", "acme", gpus=8, flavor=None), ctx)
    assert unassigned.tpp >= 8 * H100_TPP


def test_partial_admission_counts_the_pods_kueue_admitted(ctx: ExtractContext) -> None:
    obj = workload("a", "acme", pods=4, gpus=1)
    obj["status"]["admission"]["podSetAssignments"][0]["count"] = 2
    assert demand_of(obj, ctx).gpus == 2


def test_podsets_without_gpus_ask_nothing(ctx: ExtractContext) -> None:
    obj = workload("a", "acme")
    obj["spec"]["podSets"][0]["template"]["spec"]["containers"][0]["resources"] = {}
    assert owner_demand(read_workload(obj), LABELS, ctx) is None


@pytest.mark.parametrize("breakage", [
    lambda o: o["spec"].update(podSets="nope"),
    lambda o: o["spec"]["podSets"][0].update(count=-1),
    lambda o: o["spec"]["podSets"][0]["template"].update(spec=[]),
])
def test_malformed_podsets_are_a_workload_error(ctx: ExtractContext, breakage: object) -> None:
    obj = workload("a", "acme")
    breakage(obj)  # type: ignore[operator]
    with pytest.raises(WorkloadError):
        owner_demand(read_workload(obj), LABELS, ctx)


def test_a_workload_without_identity_is_refused() -> None:
    with pytest.raises(WorkloadError):
        read_workload({"metadata": {"name": "x"}})


def test_the_node_labels_join_the_templates_own_selector() -> None:
    obj = workload("a", "acme")
    obj["spec"]["podSets"][0]["template"]["spec"]["nodeSelector"] = {"zone": "a"}
    template = podset_shape(read_workload(obj), LABELS).templates[0]
    assert template.spec["nodeSelector"] == {"zone": "a", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert "nodeSelector" not in obj["spec"]["podSets"][0]["template"]["spec"] or \
        obj["spec"]["podSets"][0]["template"]["spec"]["nodeSelector"] == {"zone": "a"}  # the object is not touched


# --- step --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("state", "conditions", "holds", "expected"), [
    ("Pending", {"QuotaReserved": "True"}, False, Step.JUDGE),
    ("Retry", {"QuotaReserved": "True"}, False, Step.JUDGE),
    ("Ready", {"QuotaReserved": "True"}, True, Step.NOTHING),
    ("Rejected", {"QuotaReserved": "True"}, False, Step.NOTHING),
    # evicted but its pods may still run: Kueue keeps the quota until they are gone
    ("Pending", {"QuotaReserved": "True", "Evicted": "True"}, True, Step.NOTHING),
    # Kueue dropped the quota (its pods are gone): release what the check reserved
    ("Pending", {"QuotaReserved": "False", "Evicted": "True"}, True, Step.RELEASE),
    ("Pending", {"QuotaReserved": "False"}, False, Step.NOTHING),
    # finished: the reconciler settles the owner's reservation from the pods' real run times
    ("Ready", {"QuotaReserved": "True", "Finished": "True"}, True, Step.NOTHING),
])
def test_step(state: str, conditions: dict[str, str], holds: bool, expected: Step) -> None:
    w = read_workload(workload("a", "acme", checks={CHECK: state}, conditions=conditions))
    assert step(w, CHECK, holds) is expected


def test_a_check_not_listed_on_the_workload_is_not_ours_to_act_on() -> None:
    w = read_workload(workload("a", "acme", checks={"provisioning": "Pending"}))
    assert step(w, CHECK, holds=False) is Step.NOTHING


def test_the_reservation_key_changes_with_each_quota_reservation() -> None:
    first = read_workload(workload("a", "acme"))
    again = workload("a", "acme")
    again["status"]["conditions"][0]["lastTransitionTime"] = "2026-12-03T12:00:00Z"
    second = read_workload(again)
    assert request_uid(first) != request_uid(second)
    assert made_for(first.uid, request_uid(second))
    assert not made_for("uid-acme-a2", request_uid(first))


# --- verdict -----------------------------------------------------------------------------------------------------


def test_room_under_the_cap_is_ready(policy: Policy, ctx: ExtractContext) -> None:
    decided, decision = verdict(demand_of(workload("a", "br"), ctx), Tenant("br", "BR"), {}, policy, NOW)
    assert decided.state is CheckState.READY
    assert decided.reserves
    assert decision is not None
    assert decision.allowed
    assert decision.charges


def test_no_room_yet_is_pending_with_what_is_used_asked_and_what_fits(policy: Policy, ctx: ExtractContext) -> None:
    usage = {tenant_key("br"): 12 * H100_TPP}
    decided, _ = verdict(demand_of(workload("a", "br", gpus=8), ctx), Tenant("br", "BR"), usage, policy, NOW)
    assert decided.state is CheckState.PENDING
    assert decided.reason is Reason.CAP
    assert "waiting for room" in decided.message
    assert "190k TPP already held by br" in decided.message
    assert "8 × H100-SXM5-80GB" in decided.message
    assert "up to 4" in decided.message


def test_tier3_asking_for_3a090_parts_is_rejected_whatever_the_usage(policy: Policy, ctx: ExtractContext) -> None:
    decided, _ = verdict(demand_of(workload("a", "cn", gpus=1), ctx), Tenant("cn", "CN"), {}, policy, NOW)
    assert decided.state is CheckState.REJECTED
    assert decided.reason is Reason.NEVER_FITS
    assert "tier3-no-3a090" in decided.message


def test_more_than_the_cap_on_its_own_is_rejected(policy: Policy, ctx: ExtractContext) -> None:
    decided, _ = verdict(demand_of(workload("a", "br", pods=3, gpus=8), ctx), Tenant("br", "BR"), {}, policy, NOW)
    assert decided.state is CheckState.REJECTED


def test_an_unassigned_namespace_is_rejected_as_the_webhook_denies_it(policy: Policy, ctx: ExtractContext) -> None:
    decided, _ = verdict(demand_of(workload("a", "x"), ctx), Tenant("x", None), {}, policy, NOW)
    assert decided.state is CheckState.REJECTED
    assert decided.reason is Reason.NO_TENANT


def test_no_gpus_is_ready_without_a_reservation(policy: Policy) -> None:
    decided, decision = verdict(None, Tenant("br", "BR"), {}, policy, NOW)
    assert decided.state is CheckState.READY
    assert not decided.reserves
    assert decision is None


def test_an_unreadable_workload_is_rejected_with_the_reason() -> None:
    assert invalid("spec.podSets: bad").state is CheckState.REJECTED


@given(used=st.floats(0, 2 * CAP), less=st.floats(0, 1), gpus=st.integers(1, 24))
def test_a_verdict_never_gets_worse_with_less_usage(policy: Policy, ctx: ExtractContext, used: float, less: float,
                                                     gpus: int) -> None:
    """Monotone in usage: what is Ready at some usage is Ready at any lower one, and Rejected does not depend on
    usage at all (a Workload is never rejected because another one holds room)."""
    demand = demand_of(workload("a", "br", gpus=1, pods=gpus), ctx)
    tenant = Tenant("br", "BR")
    high, _ = verdict(demand, tenant, {tenant_key("br"): used}, policy, NOW)
    low, _ = verdict(demand, tenant, {tenant_key("br"): used * less}, policy, NOW)
    if high.state is CheckState.READY:
        assert low.state is CheckState.READY
    assert (high.state is CheckState.REJECTED) == (low.state is CheckState.REJECTED) == (gpus > 16)
