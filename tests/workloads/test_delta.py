"""scale_delta: what an UPDATE adds to what was admitted."""

from __future__ import annotations

from dataclasses import replace

from gpuquota.domain import Demand, Purpose
from gpuquota.workloads import ExtractContext, extract, scale_delta
from tests.workloads.conftest import manifest


def pytorchjob(ctx: ExtractContext, workers: int, gpus: int = 8) -> Demand:
    obj = manifest("pytorchjob-llama-finetune")
    worker = obj["spec"]["pytorchReplicaSpecs"]["Worker"]
    worker["replicas"] = workers
    worker["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = gpus
    demand = extract(obj, ctx)
    assert demand is not None
    return demand


def test_no_change_is_no_growth(ctx: ExtractContext) -> None:
    assert scale_delta(pytorchjob(ctx, 7), pytorchjob(ctx, 7)) is None


def test_scaling_down_is_no_growth(ctx: ExtractContext) -> None:
    assert scale_delta(pytorchjob(ctx, 7), pytorchjob(ctx, 3)) is None


def test_scaling_up_charges_the_added_pods(ctx: ExtractContext) -> None:
    delta = scale_delta(pytorchjob(ctx, 7), pytorchjob(ctx, 15))
    assert delta is not None
    assert [(g.role, g.pods, g.gpus_per_pod) for g in delta.groups] == [("Worker", 8, 8.0)]
    assert delta.name == "llama3-70b-sft"


def test_bigger_pods_charge_the_whole_group(ctx: ExtractContext) -> None:
    delta = scale_delta(pytorchjob(ctx, 7, gpus=4), pytorchjob(ctx, 7, gpus=8))
    assert delta is not None
    assert [(g.role, g.pods, g.gpus_per_pod) for g in delta.groups] == [("Worker", 7, 8.0)]


def test_a_new_role_is_growth(ctx: ExtractContext) -> None:
    old = extract(manifest("raycluster-autoscaling"), ctx)
    obj = manifest("raycluster-autoscaling")
    obj["spec"]["workerGroupSpecs"][1]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = 1
    new = extract(obj, ctx)
    assert old is not None
    assert new is not None
    delta = scale_delta(old, new)
    assert delta is not None
    assert [g.role for g in delta.groups] == ["cpu"]


def test_a_changed_purpose_rechecks_everything(ctx: ExtractContext) -> None:
    old = pytorchjob(ctx, 7)
    new = replace(old, purpose=Purpose.TRAINING)
    assert old.purpose is Purpose.FINE_TUNING
    assert scale_delta(old, new) == new


def test_a_lifted_runtime_bound_rechecks_everything(ctx: ExtractContext) -> None:
    old = pytorchjob(ctx, 7)
    assert scale_delta(old, replace(old, max_runtime_s=None)) is not None
    assert scale_delta(old, replace(old, max_runtime_s=(old.max_runtime_s or 0) * 2)) is not None
    assert scale_delta(old, replace(old, max_runtime_s=60.0)) is None
