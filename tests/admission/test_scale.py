"""Scaling through the /scale subresource (kubectl scale, an HPA, KEDA), against the real webhook: the API server
sends an ``autoscaling/v1 Scale``; the webhook reads the parent from a local API server (the Kubernetes wire format)
and judges the scale-up as an UPDATE of that parent. The test profile caps a tier-2 tenant at 16 H100 SXM."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.admission.conftest import Setup, active_in, cluster_server, namespace_object
from tests.admission.reviews import H100, H100_TPP, pytorch_job, review
from tests.admission.serverproc import Server
from tests.kube.apiserver import ApiState

LWS_GROUP = "leaderworkerset.x-k8s.io"
LWS = (LWS_GROUP, "leaderworkersets")
PYTORCHJOBS = ("kubeflow.org", "pytorchjobs")
HPA = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"


def _namespace(name: str) -> dict[str, Any]:
    return namespace_object(name, {"gpuquota.io/jurisdiction": "BR"})  # tier-2: capped at 16 H100


def leaderworkerset(name: str, namespace: str, replicas: int) -> dict[str, Any]:
    """An LWS of ``replicas`` groups, each a leader and one worker with 4 H100s (8 GPUs a group), bounded to 24 h."""
    pod = {"nodeSelector": {"nvidia.com/gpu.product": H100}, "restartPolicy": "Always",
           "containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.6.3",
                           "resources": {"limits": {"nvidia.com/gpu": 4}}}]}
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                     "annotations": {"gpuquota.io/max-runtime": "24h"}},
        "spec": {
            "replicas": replicas,
            "leaderWorkerTemplate": {"size": 2, "workerTemplate": {"spec": pod}},
            "rolloutStrategy": {"type": "RollingUpdate", "rollingUpdateConfiguration": {"maxSurge": 0}},
        },
    }


def scale_review(resource: tuple[str, str], ref: str, before: int, after: int, *, version: str = "v1",
                 dry_run: bool = False) -> dict[str, Any]:
    """An UPDATE of ``<resource>/scale`` of the object ``namespace/name`` as the API server sends it (a zero
    ``spec.replicas`` is omitted from a Scale)."""
    group, plural = resource
    namespace, _, name = ref.partition("/")

    def scale(replicas: int) -> dict[str, Any]:
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": name, "namespace": namespace, "resourceVersion": "7"},
                "spec": {"replicas": replicas} if replicas else {},
                "status": {"replicas": before, "selector": f"leaderworkerset.sigs.k8s.io/name={name}"}}

    scale_kind = {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    request = {
        "uid": str(uuid.uuid4()),
        "kind": scale_kind,
        "resource": {"group": group, "version": version, "resource": plural},
        "subResource": "scale",
        "requestKind": scale_kind,
        "requestResource": {"group": group, "version": version, "resource": plural},
        "requestSubResource": "scale",
        "name": name,
        "namespace": namespace,
        "operation": "UPDATE",
        "userInfo": {"username": HPA, "uid": "u-hpa", "groups": ["system:serviceaccounts"]},
        "object": scale(after),
        "oldObject": scale(before),
        "dryRun": dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"},
    }
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def _lws_path(namespace: str, name: str) -> str:
    return f"/apis/{LWS_GROUP}/v1/namespaces/{namespace}/leaderworkersets/{name}"


def _gets(state: ApiState, path: str) -> int:
    return sum(1 for r in state.requests if r.method == "GET" and r.path == path)


@pytest.fixture(scope="module")
def cluster(setup: Setup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, ApiState]]:
    tmp_path = tmp_path_factory.mktemp("scale")
    state = ApiState()
    for name in ("lws-grow", "lws-down", "lws-broken", "pt-grow"):
        state.put(f"/api/v1/namespaces/{name}", _namespace(name))
    with cluster_server(setup, tmp_path, state) as server:
        yield server, state


def test_an_lws_scale_up_is_judged_on_its_growth_and_reserved(cluster: tuple[Server, ApiState]) -> None:
    server, state = cluster
    lws = leaderworkerset("chat", "lws-grow", replicas=1)
    assert server.review(review(lws))["allowed"] is True  # 8 GPUs
    state.put(_lws_path("lws-grow", "chat"), lws)

    dry = server.review(scale_review(LWS, "lws-grow/chat", 1, 2, dry_run=True))
    assert dry["allowed"] is True
    assert len(active_in(server.ledger_url, "lws-grow")) == 1  # a dry run reserves nothing

    grown = server.review(scale_review(LWS, "lws-grow/chat", 1, 2))
    assert grown["allowed"] is True  # +8 GPUs: exactly the cap
    assert grown["auditAnnotations"]["tpp"] == str(8 * H100_TPP)  # the growth, not the whole LWS
    records = active_in(server.ledger_url, "lws-grow")
    assert sorted((r.workload.kind, r.workload.name, r.tpp) for r in records) == [
        ("LeaderWorkerSet", "chat", 8 * H100_TPP), ("LeaderWorkerSet", "chat", 8 * H100_TPP)]
    state.put(_lws_path("lws-grow", "chat"), leaderworkerset("chat", "lws-grow", replicas=2))  # the write lands

    over = server.review(scale_review(LWS, "lws-grow/chat", 2, 3))
    assert over["allowed"] is False
    assert over["status"]["code"] == 403
    message = over["status"]["message"]
    assert "tenant-cap" in message
    assert "LeaderWorkerSet lws-grow/chat" in message
    assert "requested 8 × H100-SXM5-80GB" in message  # the growth: one more group of two 4-GPU pods
    assert len(active_in(server.ledger_url, "lws-grow")) == 2
    assert _gets(state, _lws_path("lws-grow", "chat")) == 3  # one read per scale-up, dry run included
    assert 'kind="LeaderWorkerSet",operation="UPDATE",rule="tenant-cap"' in server.metrics()


def test_a_scale_down_passes_without_reading_the_parent(cluster: tuple[Server, ApiState]) -> None:
    server, state = cluster
    path = _lws_path("lws-down", "serve")  # not even in the API server: a scale-down must never need it
    for before, after in ((4, 1), (3, 0), (2, 2)):
        answer = server.review(scale_review(LWS, "lws-down/serve", before, after))
        assert answer["allowed"] is True, answer
    assert _gets(state, path) == 0
    assert active_in(server.ledger_url, "lws-down") == []


def test_an_unreadable_parent_fails_a_scale_up_closed(cluster: tuple[Server, ApiState]) -> None:
    server, state = cluster
    path = _lws_path("lws-broken", "flaky")
    state.put(path, leaderworkerset("flaky", "lws-broken", replicas=1))
    state.fail[path] = (403, json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403,
                                         "reason": "Forbidden", "message": 'leaderworkersets.leaderworkerset.x-k8s.io '
                                         '"flaky" is forbidden: User "system:serviceaccount:gpuquota:gq" cannot get'}))
    denied = server.review(scale_review(LWS, "lws-broken/flaky", 1, 3))
    assert denied["allowed"] is False
    message = denied["status"]["message"]
    assert "cannot judge this scale-up of LeaderWorkerSet lws-broken/flaky (1 → 3 replicas)" in message
    assert "is forbidden" in message  # the API server's own reason
    assert "scaling down always passes" in message
    assert "leaderworkersets (RBAC get)" in message
    assert server.review(scale_review(LWS, "lws-broken/flaky", 3, 1))["allowed"]
    missing = server.review(scale_review(LWS, "lws-broken/gone", 1, 2))
    assert missing["allowed"] is False
    assert "the API server does not have that LeaderWorkerSet" in missing["status"]["message"]
    assert active_in(server.ledger_url, "lws-broken") == []
    assert 'gpuquota_errors_total{type="kube_unavailable"} 2.0' in server.metrics()


def test_a_pytorchjob_scaled_by_its_workers_is_judged_like_an_update(cluster: tuple[Server, ApiState]) -> None:
    server, state = cluster
    job = pytorch_job("elastic", "pt-grow", workers=0)  # master only: 8 GPUs
    assert server.review(review(job))["allowed"] is True
    state.put("/apis/kubeflow.org/v1/namespaces/pt-grow/pytorchjobs/elastic", job)
    grown = server.review(scale_review(PYTORCHJOBS, "pt-grow/elastic", 0, 1))
    assert grown["allowed"] is True  # one 8-GPU worker: exactly the cap
    over = copy.deepcopy(job)
    over["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = 1
    state.put("/apis/kubeflow.org/v1/namespaces/pt-grow/pytorchjobs/elastic", over)
    denied = server.review(scale_review(PYTORCHJOBS, "pt-grow/elastic", 1, 3))
    assert denied["allowed"] is False
    assert "tenant-cap" in denied["status"]["message"]
    assert sorted(r.tpp for r in active_in(server.ledger_url, "pt-grow")) == [8 * H100_TPP, 8 * H100_TPP]


def test_without_cluster_access_scale_ups_are_refused_and_scale_downs_pass(webhook: Server) -> None:
    """The module's plain server runs with --kube none: it cannot read a parent."""
    denied = webhook.review(scale_review(LWS, "scale/chat", 1, 2))
    assert denied["allowed"] is False
    message = denied["status"]["message"]
    assert "without cluster access (--kube none)" in message
    assert "change the replicas on the LeaderWorkerSet itself" in message
    assert webhook.review(scale_review(LWS, "scale/chat", 2, 1))["allowed"] is True
    # a /scale of a kind gpuquota does not judge (a Deployment) passes untouched
    other = scale_review(("apps", "deployments"), "scale/web", 1, 50)
    assert webhook.review(other)["allowed"] is True
    broken = scale_review(LWS, "scale/chat", 1, 2)
    broken["request"]["resource"] = {"group": LWS_GROUP, "version": "v1", "resource": 7}
    answer = webhook.review(broken)
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 400
    assert "request.resource is not a group/version/resource" in answer["status"]["message"]
