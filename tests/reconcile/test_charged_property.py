"""The accounting invariant, end to end in-process: the real webhook decision path, the real ledger and the real
reconciler over an in-memory API server, driven by any sequence of creates, API-server retries, re-creates under a
reused name, deletes (background and orphaning), controller-made pods (more than a Job asks for: replacements, a
second run), a tenant's own pods naming the Job, pod exits, Job completions and reconciler passes.

Invariant, after every step: the GPUs of live pods that were admitted never exceed the GPUs the ledger charges to
active reservations — every running GPU pod is covered, whatever the tenant or the controllers do."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuquota.admission.audit import AuditLog
from gpuquota.admission.handler import Admission, Pending, Reply
from gpuquota.admission.live import LiveConfig
from gpuquota.admission.metrics import WebhookMetrics
from gpuquota.ledger import open_ledger
from gpuquota.reconcile import Reconciler
from gpuquota.testing import FakeKube
from tests.admission.reviews import JOB_CONTROLLER, gpu_pod, review
from tests.admission.serverproc import TEST_POLICY, tenants_yaml

NS = "race"  # a tier-2 tenant of the test profile: 16 H100s at most
T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
PODS = f"/api/v1/namespaces/{NS}/pods"
GPUS_PER_POD = 4

ACTIONS = st.one_of(
    st.tuples(st.just("create"), st.sampled_from("ab"), st.integers(1, 3)),
    st.tuples(st.just("retry"), st.integers(0, 5), st.just(0)),
    st.tuples(st.just("delete"), st.sampled_from("ab"), st.sampled_from([0, 1])),  # 1: --cascade=orphan
    st.tuples(st.just("pod"), st.sampled_from("ab"), st.sampled_from([0, 1])),  # 1: the tenant's own pod
    st.tuples(st.just("exit"), st.integers(0, 9), st.sampled_from([0, 1])),  # 1: deleted rather than finished
    st.tuples(st.just("complete"), st.sampled_from("ab"), st.just(0)),
    st.tuples(st.just("reconcile"), st.just(""), st.integers(1, 20)),
)


class World:
    def __init__(self, root: Path) -> None:
        policy, tenants = root / "policy.yaml", root / "tenants.yaml"
        policy.write_text(TEST_POLICY)
        tenants.write_text(tenants_yaml())
        self.now = T0
        self.ledger = open_ledger("sqlite:///:memory:")
        self.kube = FakeKube()
        self.admission = Admission(LiveConfig(str(policy), tenants), self.ledger, WebhookMetrics(frozenset),
                                   AuditLog(None), clock=lambda: self.now)  # fmt: skip
        self.reconciler = Reconciler(self.kube, self.ledger, clock=lambda: self.now, workers=1, resync_s=0,
                                     grace=timedelta(minutes=5))  # fmt: skip
        self.sent: list[dict[str, Any]] = []
        self.pods: dict[str, dict[str, Any]] = {}  # admitted pods in the cluster, by name

    def review(self, body: dict[str, Any]) -> bool:
        self.sent.append(body)
        result = self.admission.begin(json.dumps(body).encode())
        reply: Reply = result.run() if isinstance(result, Pending) else result
        return bool(json.loads(reply.body)["response"]["allowed"])

    def job(self, name: str) -> dict[str, Any] | None:
        return self.kube.get(f"{JOBS}/{name}")

    def create(self, name: str, pods: int) -> None:
        spec = gpu_pod("t", NS, GPUS_PER_POD)["spec"]
        obj = {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": name, "namespace": NS, "uid": str(uuid.uuid4()),
                            "creationTimestamp": self.now.strftime("%Y-%m-%dT%H:%M:%SZ")},
               "spec": {"parallelism": pods, "completions": pods, "activeDeadlineSeconds": 86400,
                        "template": {"spec": spec}}}  # fmt: skip
        if self.review(review(obj)) and self.job(name) is None:  # an existing name: the API server refuses it
            self.kube.put(f"{JOBS}/{name}", obj)

    def delete(self, name: str, orphan: bool) -> None:
        obj = self.job(name)
        if obj is None:
            return
        self.review(review(None, operation="DELETE", old=obj))
        self.kube.delete(f"{JOBS}/{name}")
        for pod_name, pod in list(self.pods.items()):
            refs = pod["metadata"].get("ownerReferences") or []
            if orphan and any(r.get("uid") == obj["metadata"]["uid"] for r in refs):
                del pod["metadata"]["ownerReferences"]  # the garbage collector orphans them; they run on
                self.kube.put(f"{PODS}/{pod_name}", pod)

    def pod(self, name: str, by_tenant: bool) -> None:
        job = self.job(name)
        if job is None:
            return
        owner = [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job["metadata"]["uid"],
                  "controller": True}]  # fmt: skip
        pod_name = f"{name}-{uuid.uuid4().hex[:5]}"
        pod = gpu_pod(pod_name, NS, GPUS_PER_POD, owners=owner,
                      labels={"batch.kubernetes.io/job-name": name, "job-name": name})  # fmt: skip
        user = "alice@example.com" if by_tenant else JOB_CONTROLLER
        if self.review(review(pod, user=user)):
            pod["status"] = {"phase": "Running", "startTime": self.now.strftime("%Y-%m-%dT%H:%M:%SZ")}
            self.pods[pod_name] = pod
            self.kube.put(f"{PODS}/{pod_name}", pod)

    def exit(self, index: int, deleted: bool) -> None:
        if not self.pods:
            return
        pod_name = sorted(self.pods)[index % len(self.pods)]
        pod = self.pods.pop(pod_name)
        if deleted:
            self.kube.delete(f"{PODS}/{pod_name}")
        else:
            pod["status"] = {**pod["status"], "phase": "Succeeded"}
            self.kube.put(f"{PODS}/{pod_name}", pod)

    def complete(self, name: str) -> None:
        job = self.job(name)
        if job is not None:
            stamp = self.now.strftime("%Y-%m-%dT%H:%M:%SZ")
            job["status"] = {"startTime": stamp, "completionTime": stamp,
                             "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": stamp}]}
            self.kube.put(f"{JOBS}/{name}", job)

    def charged_gpus(self) -> float:
        return sum(r.gpus for r in self.ledger.active_reservations())

    def live_gpus(self) -> float:
        return GPUS_PER_POD * len(self.pods)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ACTIONS, min_size=12, max_size=40))
def test_live_admitted_gpus_never_exceed_what_the_ledger_charges(tmp_path: Path, actions: list[tuple[str, Any, int]]
                                                                ) -> None:  # fmt: skip
    world = World(tmp_path)
    try:
        for verb, arg, n in actions:
            world.now += timedelta(minutes=1)
            if verb == "create":
                world.create(arg, n)
            elif verb == "retry" and world.sent:
                world.review(world.sent[arg % len(world.sent)])  # the API server sends the same review again
            elif verb == "delete":
                world.delete(arg, orphan=bool(n))
            elif verb == "pod":
                world.pod(arg, by_tenant=bool(n))
            elif verb == "exit":
                world.exit(arg, deleted=bool(n))
            elif verb == "complete":
                world.complete(arg)
            elif verb == "reconcile":
                world.now += timedelta(minutes=n)
                world.reconciler.reconcile_once()
            assert world.live_gpus() <= world.charged_gpus() + 1e-9, (verb, arg, n)
        world.now += timedelta(minutes=1)
        world.reconciler.reconcile_once()
        assert world.live_gpus() <= world.charged_gpus() + 1e-9
    finally:
        world.ledger.close()
