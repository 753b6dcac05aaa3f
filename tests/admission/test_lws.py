"""LeaderWorkerSet pods: their LWS label claim rests on a StatefulSet, believed only once the StatefulSet's owner chain
is read back from the API server — the leader StatefulSet ``<lws>`` controlled by the LWS, a worker StatefulSet
``<lws>-<g>`` controlled by the leader pod ``<lws>-<g>``, itself controlled by the leader StatefulSet (as the LWS
controller builds them: kubernetes-sigs/lws ``leaderworkerset_controller.go``, ``pod_controller.go``).

First the verification logic against an in-memory API server, then the real webhook against a local API server (the
Kubernetes wire format). The test profile caps a tier-2 (BR) tenant at 16 H100."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from gpuquota.admission.lws import LwsStatefulSets, pod_path, statefulset_path
from gpuquota.admission.owners import OwnerRef, candidate_owners
from gpuquota.kube import KubeError
from gpuquota.kube.api import JsonObject
from gpuquota.testing import FakeKube
from tests.admission.conftest import Setup, active_in, cluster_server, namespace_object
from tests.admission.reviews import H100_TPP, gpu_pod, review
from tests.admission.serverproc import Server
from tests.admission.test_scale import leaderworkerset
from tests.kube.apiserver import ApiState, with_kube_system

STS_CONTROLLER = "system:serviceaccount:kube-system:statefulset-controller"
LWS_API = "leaderworkerset.x-k8s.io/v1"


def _ref(api_version: str, kind: str, name: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": True,
            "blockOwnerDeletion": True}


def statefulset(name: str, namespace: str, replicas: int, owner: dict[str, Any] | None) -> dict[str, Any]:
    """A StatefulSet as the API server returns it (the LWS's, when ``owner`` is the LWS or its leader pod)."""
    lws = name.partition("-")[0]
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                                "labels": {"leaderworkerset.sigs.k8s.io/name": lws}}
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": metadata,
            "spec": {"replicas": replicas, "serviceName": lws, "podManagementPolicy": "Parallel"}}


@dataclass
class LwsObjects:
    """An LWS's leader StatefulSet, leader pods and worker StatefulSets, as the LWS controller makes them."""

    namespace: str
    lws: dict[str, Any]
    leader_sts: dict[str, Any]
    leader_pods: dict[int, dict[str, Any]] = field(default_factory=dict)
    worker_sts: dict[int, dict[str, Any]] = field(default_factory=dict)

    def objects(self) -> dict[str, dict[str, Any]]:
        ns = self.namespace
        out = {statefulset_path(ns, self.leader_sts["metadata"]["name"]): self.leader_sts}
        out |= {pod_path(ns, p["metadata"]["name"]): p for p in self.leader_pods.values()}
        out |= {statefulset_path(ns, s["metadata"]["name"]): s for s in self.worker_sts.values()}
        return out


def lws_objects(name: str, namespace: str, groups: int) -> LwsObjects:
    lws = leaderworkerset(name, namespace, replicas=groups)
    leader_sts = statefulset(name, namespace, groups, _ref(LWS_API, "LeaderWorkerSet", name, lws["metadata"]["uid"]))
    made = LwsObjects(namespace, lws, leader_sts)
    for group in range(groups):
        leader = lws_pod(f"{name}-{group}", namespace, leader_sts, name, group, worker=0)
        made.leader_pods[group] = leader
        made.worker_sts[group] = statefulset(f"{name}-{group}", namespace, 1,
                                             _ref("v1", "Pod", leader["metadata"]["name"], leader["metadata"]["uid"]))
    return made


def lws_pod(name: str, namespace: str, sts: dict[str, Any], lws: str, group: int, *, worker: int,
            gpus: int = 4) -> dict[str, Any]:
    """A pod the StatefulSet controller makes for an LWS group (labels from the LWS controller's templates)."""
    labels = {"leaderworkerset.sigs.k8s.io/name": lws, "leaderworkerset.sigs.k8s.io/group-index": str(group),
              "leaderworkerset.sigs.k8s.io/worker-index": str(worker),
              "leaderworkerset.sigs.k8s.io/group-key": "689ad1f3a9b0c4e7",
              "leaderworkerset.sigs.k8s.io/template-revision-hash": "5c5f8d6b9"}
    owner = _ref("apps/v1", "StatefulSet", sts["metadata"]["name"], sts["metadata"]["uid"])
    return gpu_pod(name, namespace, gpus, labels=labels, owners=[owner])


def lws_claim(pod: dict[str, Any]) -> OwnerRef:
    return next(ref for ref in candidate_owners(pod) if ref.kind == "LeaderWorkerSet")


class CountingKube(FakeKube):
    """The in-memory API server, counting the GETs per path."""

    def __init__(self) -> None:
        super().__init__()
        self.gets: dict[str, int] = {}

    def get(self, path: str) -> JsonObject | None:
        self.gets[path] = self.gets.get(path, 0) + 1
        return super().get(path)


def _cluster(made: LwsObjects) -> CountingKube:
    kube = CountingKube()
    for path, obj in made.objects().items():
        kube.put(path, obj)
    return kube


# --- the verification logic -----------------------------------------------------------------------------------------

def test_leader_and_worker_statefulsets_of_an_lws_are_verified_with_one_read_each() -> None:
    made = lws_objects("vllm", "team", groups=2)
    kube = _cluster(made)
    checker = LwsStatefulSets(kube)
    leader = lws_pod("vllm-1", "team", made.leader_sts, "vllm", 1, worker=0)
    workers = [lws_pod(f"vllm-1-{w}", "team", made.worker_sts[1], "vllm", 1, worker=w) for w in (1, 2, 3)]
    assert not checker.cached("team", lws_claim(leader))
    assert checker.verify("team", lws_claim(leader))
    assert checker.cached("team", lws_claim(leader))
    for pod in workers:
        assert checker.verify("team", lws_claim(pod))
    assert kube.gets == {statefulset_path("team", "vllm"): 1, statefulset_path("team", "vllm-1"): 1,
                         pod_path("team", "vllm-1"): 1}


def test_a_tenant_statefulset_named_like_an_unused_group_is_not_believed() -> None:
    made = lws_objects("vllm", "team", groups=1)
    kube = _cluster(made)
    checker = LwsStatefulSets(kube)
    # no owner at all; owned by the LWS itself (a worker StatefulSet never is); owned by a pod named otherwise
    for owner in (None, _ref(LWS_API, "LeaderWorkerSet", "vllm", made.lws["metadata"]["uid"]),
                  _ref("v1", "Pod", "vllm-0", made.leader_pods[0]["metadata"]["uid"])):
        sts = statefulset("vllm-7", "team", 1, owner)
        kube.put(statefulset_path("team", "vllm-7"), sts)
        assert not checker.verify("team", lws_claim(lws_pod("vllm-7-1", "team", sts, "vllm", 7, worker=1)))
    # the tenant's own leader-pod look-alike "vllm-7", even with a forged controller reference to the leader
    # StatefulSet: group 7 is not one the LWS runs (1 replica)
    fake_leader = lws_pod("vllm-7", "team", made.leader_sts, "vllm", 7, worker=0, gpus=0)
    kube.put(pod_path("team", "vllm-7"), fake_leader)
    sts = statefulset("vllm-7", "team", 1, _ref("v1", "Pod", "vllm-7", fake_leader["metadata"]["uid"]))
    kube.put(statefulset_path("team", "vllm-7"), sts)
    assert not checker.verify("team", lws_claim(lws_pod("vllm-7-1", "team", sts, "vllm", 7, worker=1)))
    # a leader StatefulSet "vllm" that some other object controls (created before the LWS)
    other = statefulset("vllm", "other", 2, _ref("apps/v1", "Deployment", "vllm", str(uuid.uuid4())))
    kube.put(statefulset_path("other", "vllm"), other)
    assert not checker.verify("other", lws_claim(lws_pod("vllm-0", "other", other, "vllm", 0, worker=0)))
    assert not checker.cached("other", lws_claim(lws_pod("vllm-0", "other", other, "vllm", 0, worker=0)))


def test_uids_must_match_and_are_never_cached_across() -> None:
    made = lws_objects("vllm", "team", groups=1)
    kube = _cluster(made)
    checker = LwsStatefulSets(kube)
    pod = lws_pod("vllm-0-1", "team", made.worker_sts[0], "vllm", 0, worker=1)
    assert checker.verify("team", lws_claim(pod))
    # the worker StatefulSet deleted and re-created by a tenant under the same name (a new uid): the pod names the new
    # uid, which is read afresh and found not to be the LWS's
    tenant_sts = statefulset("vllm-0", "team", 1, None)
    kube.put(statefulset_path("team", "vllm-0"), tenant_sts)
    reads = kube.gets[statefulset_path("team", "vllm-0")]
    assert not checker.verify("team", lws_claim(lws_pod("vllm-0-1", "team", tenant_sts, "vllm", 0, worker=1)))
    assert kube.gets[statefulset_path("team", "vllm-0")] == reads + 1
    # a pod naming a uid that is not the stored StatefulSet's; a leader pod whose uid differs from the reference
    stale = lws_pod("vllm-0-2", "team", statefulset("vllm-0", "team", 1, None), "vllm", 0, worker=2)
    assert not checker.verify("team", lws_claim(stale))
    made2 = lws_objects("chat", "team", groups=1)
    made2.leader_pods[0]["metadata"]["uid"] = str(uuid.uuid4())  # the leader pod was re-created since
    for path, obj in made2.objects().items():
        kube.put(path, obj)
    assert not checker.verify("team", lws_claim(lws_pod("chat-0-1", "team", made2.worker_sts[0], "chat", 0, worker=1)))
    # a claim with no uid on its StatefulSet reference is never believed (and costs no read)
    before = dict(kube.gets)
    no_uid = lws_pod("vllm-0-3", "team", made.worker_sts[0], "vllm", 0, worker=3)
    no_uid["metadata"]["ownerReferences"][0]["uid"] = ""
    assert not checker.verify("team", lws_claim(no_uid))
    assert kube.gets == before


def test_a_scale_up_reads_the_leader_statefulset_again() -> None:
    """A new group's index is past the cached replicas: the leader StatefulSet is read again, not refused."""
    made = lws_objects("vllm", "team", groups=1)
    kube = _cluster(made)
    checker = LwsStatefulSets(kube)
    assert checker.verify("team", lws_claim(lws_pod("vllm-0-1", "team", made.worker_sts[0], "vllm", 0, worker=1)))
    grown = lws_objects("vllm", "team", groups=2)
    grown.leader_sts["metadata"]["uid"] = made.leader_sts["metadata"]["uid"]  # the same leader StatefulSet, scaled
    leader1 = lws_pod("vllm-1", "team", grown.leader_sts, "vllm", 1, worker=0)
    worker_sts = statefulset("vllm-1", "team", 1, _ref("v1", "Pod", "vllm-1", leader1["metadata"]["uid"]))
    kube.put(statefulset_path("team", "vllm"), grown.leader_sts)
    kube.put(pod_path("team", "vllm-1"), leader1)
    kube.put(statefulset_path("team", "vllm-1"), worker_sts)
    assert checker.verify("team", lws_claim(lws_pod("vllm-1-1", "team", worker_sts, "vllm", 1, worker=1)))
    assert kube.gets[statefulset_path("team", "vllm")] == 2


def test_without_cluster_access_or_on_errors_nothing_is_verified() -> None:
    made = lws_objects("vllm", "team", groups=1)
    pod = lws_pod("vllm-0-1", "team", made.worker_sts[0], "vllm", 0, worker=1)
    assert not LwsStatefulSets(None).verify("team", lws_claim(pod))
    kube = _cluster(made)
    errors: list[int] = []
    checker = LwsStatefulSets(kube, on_error=lambda: errors.append(1))
    kube.fail_next(KubeError(503, "the server is currently unable to handle the request"))
    assert not checker.verify("team", lws_claim(pod))
    assert errors == [1]
    assert not checker.cached("team", lws_claim(pod))  # a failure is not remembered: the next pod reads again
    assert checker.verify("team", lws_claim(pod))
    # only LWS claims through a StatefulSet are checked at all
    assert not checker.verify("team", OwnerRef("leaderworkerset.x-k8s.io", "LeaderWorkerSet", "vllm"))


# --- the real webhook -----------------------------------------------------------------------------------------------

def _namespace(name: str) -> dict[str, Any]:
    return namespace_object(name, {"gpuquota.io/jurisdiction": "BR"})  # tier-2: capped at 16 H100


def _gets(state: ApiState, path: str) -> int:
    return sum(1 for r in state.requests if r.method == "GET" and r.path == path)


@pytest.fixture(scope="module")
def cluster(setup: Setup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, ApiState]]:
    tmp_path = tmp_path_factory.mktemp("lws")
    state = with_kube_system(ApiState())
    for name in ("lws-ok", "lws-forged", "lws-down"):
        state.put(f"/api/v1/namespaces/{name}", _namespace(name))
    with cluster_server(setup, tmp_path, state) as server:
        yield server, state


def _admit(server: Server, state: ApiState, made: LwsObjects) -> None:
    assert server.review(review(made.lws))["allowed"] is True  # 8 H100 a group
    for path, obj in made.objects().items():
        state.put(path, obj)


def test_lws_leader_and_worker_pods_pass_on_the_lws_reservation(cluster: tuple[Server, ApiState]) -> None:
    server, state = cluster
    made = lws_objects("vllm", "lws-ok", groups=1)
    _admit(server, state, made)
    leader = lws_pod("vllm-0", "lws-ok", made.leader_sts, "vllm", 0, worker=0)
    assert server.review(review(leader, user=STS_CONTROLLER))["allowed"] is True
    for worker in (1, 2, 3):  # a burst of one group's workers: more than its size (2 pods of 4 GPUs) covers
        pod = lws_pod(f"vllm-0-{worker}", "lws-ok", made.worker_sts[0], "vllm", 0, worker=worker)
        assert server.review(review(pod, user=STS_CONTROLLER))["allowed"] is True
    records = active_in(server.ledger_url, "lws-ok")
    # the leader and worker 1 ride on the LWS's 8 GPUs; workers 2 and 3 are beyond its budget: each charged alone
    assert [(r.workload.kind, r.workload.name) for r in records] == [
        ("LeaderWorkerSet", "vllm"), ("Pod", "vllm-0-2"), ("Pod", "vllm-0-3")]
    assert _gets(state, statefulset_path("lws-ok", "vllm")) == 1
    assert _gets(state, statefulset_path("lws-ok", "vllm-0")) == 1
    assert _gets(state, pod_path("lws-ok", "vllm-0")) == 1
    # the same pods from a tenant's own identity claim nothing (and cost no read)
    tenant = lws_pod("vllm-0-4", "lws-ok", made.worker_sts[0], "vllm", 0, worker=4, gpus=12)
    assert server.review(review(tenant, user="alice@example.com"))["allowed"] is False
    assert _gets(state, statefulset_path("lws-ok", "vllm-0")) == 1


def test_a_tenant_statefulset_named_like_a_group_is_counted(cluster: tuple[Server, ApiState]) -> None:
    server, state = cluster
    made = lws_objects("vllm", "lws-forged", groups=1)
    _admit(server, state, made)
    tenant_sts = statefulset("vllm-7", "lws-forged", 2, None)  # the tenant's own, with the LWS label in its template
    state.put(statefulset_path("lws-forged", "vllm-7"), tenant_sts)
    pod = lws_pod("vllm-7-0", "lws-forged", tenant_sts, "vllm", 7, worker=0, gpus=12)
    denied = server.review(review(pod, user=STS_CONTROLLER))
    assert denied["allowed"] is False  # 8 reserved + 12 > 16: judged on its own
    assert "tenant-cap" in denied["status"]["message"]
    small = lws_pod("vllm-7-1", "lws-forged", tenant_sts, "vllm", 7, worker=1, gpus=4)
    allowed = server.review(review(small, user=STS_CONTROLLER))
    assert allowed["allowed"] is True
    assert allowed["auditAnnotations"]["tpp"] == str(4 * H100_TPP)  # counted and reserved under the pod's name
    records = active_in(server.ledger_url, "lws-forged")
    assert sorted((r.workload.kind, r.workload.name) for r in records) == [("LeaderWorkerSet", "vllm"),
                                                                           ("Pod", "vllm-7-1")]
    assert _gets(state, statefulset_path("lws-forged", "vllm-7")) == 2  # a refusal is not cached


def test_an_unreachable_api_server_gets_the_pod_counted(cluster: tuple[Server, ApiState]) -> None:
    server, state = cluster
    made = lws_objects("vllm", "lws-down", groups=1)
    _admit(server, state, made)
    path = statefulset_path("lws-down", "vllm-0")
    state.fail[path] = (500, '{"kind":"Status","apiVersion":"v1","status":"Failure","code":500,"message":"etcdserver:'
                             ' request timed out"}')
    pod = lws_pod("vllm-0-1", "lws-down", made.worker_sts[0], "vllm", 0, worker=1, gpus=4)
    answer = server.review(review(pod, user=STS_CONTROLLER))
    assert answer["allowed"] is True  # room left under the cap: admitted, but counted
    assert ("Pod", "vllm-0-1") in [(r.workload.kind, r.workload.name) for r in active_in(server.ledger_url, "lws-down")]
    over = lws_pod("vllm-0-2", "lws-down", made.worker_sts[0], "vllm", 0, worker=2, gpus=8)
    assert server.review(review(over, user=STS_CONTROLLER))["allowed"] is False  # 8 + 4 + 8 > 16
    assert 'gpuquota_errors_total{type="kube_unavailable"}' in server.metrics()


def test_without_cluster_access_lws_pods_are_counted(webhook: Server) -> None:
    """The module's plain server runs with --kube none: an LWS claim through a StatefulSet cannot be checked."""
    made = lws_objects("vllm", "owner", groups=1)
    assert webhook.review(review(made.lws))["allowed"] is True
    leader = lws_pod("vllm-0", "owner", made.leader_sts, "vllm", 0, worker=0, gpus=12)
    denied = webhook.review(review(leader, user=STS_CONTROLLER))
    assert denied["allowed"] is False
    assert "tenant-cap" in denied["status"]["message"]
