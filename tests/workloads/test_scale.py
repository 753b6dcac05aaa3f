"""The /scale subresource: the parent a Scale write leaves behind, judged like an UPDATE of that parent."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuquota.reconcile.resources import RESOURCES
from gpuquota.workloads import (
    SCALE_SUBRESOURCES,
    SUPPORTED_KINDS,
    ExtractContext,
    WorkloadError,
    extract,
    scale_delta,
    scale_replicas,
    with_replicas,
)
from tests.workloads.conftest import manifest

SCALABLE_MANIFESTS = {
    ("leaderworkerset.x-k8s.io", "LeaderWorkerSet"): "lws-vllm-multinode",
    ("kubeflow.org", "PyTorchJob"): "pytorchjob-llama-finetune",
    ("kubeflow.org", "PaddleJob"): "paddlejob-collective",
    ("kubeflow.org", "JAXJob"): "jaxjob-gemma-h200",
}


def _scale(replicas: int | None) -> dict[str, Any]:
    spec = {} if replicas is None else {"replicas": replicas}
    return {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "x", "namespace": "ns"},
            "spec": spec, "status": {"replicas": 2}}


def _get(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def test_every_scalable_kind_is_supported_and_has_a_rest_path() -> None:
    assert set(SCALE_SUBRESOURCES) <= SUPPORTED_KINDS
    assert set(SCALE_SUBRESOURCES) <= set(RESOURCES)
    assert set(SCALABLE_MANIFESTS) == set(SCALE_SUBRESOURCES)
    # The kinds whose CRDs define no scale subresource (checked against the projects' CRDs, docs/workloads.md).
    for kind in (("batch", "Job"), ("batch", "CronJob"), ("jobset.x-k8s.io", "JobSet"), ("ray.io", "RayCluster"),
                 ("ray.io", "RayJob"), ("trainer.kubeflow.org", "TrainJob"), ("kubeflow.org", "TFJob"),
                 ("kubeflow.org", "MPIJob"), ("kubeflow.org", "XGBoostJob"), ("", "Pod")):
        assert kind not in SCALE_SUBRESOURCES


def test_scale_replicas_reads_the_scale_and_treats_an_omitted_zero_as_zero() -> None:
    assert scale_replicas(_scale(5), "object") == 5
    assert scale_replicas(_scale(None), "object") == 0  # the API server omits replicas: 0
    assert scale_replicas(None, "oldObject") == 0
    with pytest.raises(WorkloadError, match=r"object\.spec\.replicas: must be a whole number"):
        scale_replicas({"spec": {"replicas": "3"}}, "object")
    with pytest.raises(WorkloadError, match=r"oldObject\.spec\.replicas: must be at least 0"):
        scale_replicas({"spec": {"replicas": -1}}, "oldObject")
    with pytest.raises(WorkloadError, match=r"object\.spec: must be a mapping"):
        scale_replicas({"spec": [1]}, "object")


@pytest.mark.parametrize("kind", sorted(SCALE_SUBRESOURCES))
def test_with_replicas_sets_only_that_field_and_leaves_the_parent_untouched(kind: tuple[str, str]) -> None:
    parent = manifest(SCALABLE_MANIFESTS[kind])
    pristine = copy.deepcopy(parent)
    path = SCALE_SUBRESOURCES[kind]
    grown = with_replicas(parent, path, 11)
    assert parent == pristine  # never written through
    assert _get(grown, path) == 11
    expected = copy.deepcopy(pristine)
    node = expected
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = 11
    assert grown == expected  # nothing else differs


def test_with_replicas_creates_missing_mappings_and_refuses_a_non_mapping() -> None:
    path = SCALE_SUBRESOURCES[("kubeflow.org", "PyTorchJob")]
    bare = {"spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1}}}}
    assert with_replicas(bare, path, 3)["spec"]["pytorchReplicaSpecs"] == {"Master": {"replicas": 1},
                                                                           "Worker": {"replicas": 3}}
    with pytest.raises(WorkloadError, match=r"spec\.pytorchReplicaSpecs: must be a mapping, got list"):
        with_replicas({"spec": {"pytorchReplicaSpecs": []}}, path, 3)


def test_an_lws_scale_up_grows_by_whole_groups(ctx: ExtractContext) -> None:
    lws = manifest("lws-vllm-multinode")  # 2 groups (+1 surge) of a leader and a worker, 8 H100 each
    path = SCALE_SUBRESOURCES[("leaderworkerset.x-k8s.io", "LeaderWorkerSet")]
    before = extract(with_replicas(lws, path, 2), ctx)
    after = extract(with_replicas(lws, path, 4), ctx)
    assert before is not None
    assert after is not None
    delta = scale_delta(before, after)
    assert delta is not None
    assert sorted((g.role, g.pods, g.gpus_per_pod) for g in delta.groups) == [("leader", 2, 8.0), ("worker", 2, 8.0)]
    assert scale_delta(after, before) is None  # scaling down adds nothing


def test_an_elastic_pytorchjob_scaled_within_max_replicas_adds_nothing(ctx: ExtractContext) -> None:
    job = manifest("pytorchjob-elastic")  # counted at elasticPolicy.maxReplicas (6 workers) from the start
    path = SCALE_SUBRESOURCES[("kubeflow.org", "PyTorchJob")]
    before, within, beyond = (extract(with_replicas(job, path, n), ctx) for n in (2, 6, 8))
    assert before is not None
    assert within is not None
    assert beyond is not None
    assert scale_delta(before, within) is None
    delta = scale_delta(before, beyond)
    assert delta is not None
    assert [(g.role, g.pods) for g in delta.groups] == [("Worker", 2)]


@pytest.mark.parametrize("kind", sorted(SCALE_SUBRESOURCES))
@settings(max_examples=25, deadline=None)
@given(before=st.integers(0, 40), after=st.integers(0, 40))
def test_the_growth_of_a_scale_covers_exactly_the_added_replicas(kind: tuple[str, str], before: int, after: int,
                                                                 ctx: ExtractContext) -> None:
    parent = manifest(SCALABLE_MANIFESTS[kind])
    path = SCALE_SUBRESOURCES[kind]
    old = extract(with_replicas(parent, path, before), ctx)
    new = extract(with_replicas(parent, path, after), ctx)
    delta = scale_delta(old, new) if old is not None and new is not None else new
    if after <= before:
        assert delta is None  # no growth: nothing to judge
        return
    old_gpus = old.gpus if old is not None else 0
    assert new is not None
    assert delta is not None
    assert delta.gpus == pytest.approx(new.gpus - old_gpus)  # same pods, more of them: only the added ones count
