"""The real webhook over TLS: allow, warn, deny, dry-run, retries, scale-up, delete, owners, tenants, audit, metrics.

Each test uses its own tenant (namespace) from the tenants file, so caps filled by one test never decide another.
The test profile caps a tier-2 tenant at 16 H100 SXM (253,312 TPP) with a warning at 75 %, and warns (never
denies) a tier-1 tenant above 8 H100.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import uuid
from typing import Any

import orjson
import pytest
import yaml

from gpuquota.ledger import open_ledger
from tests.admission.conftest import TRUSTED_OPERATOR, active, active_in
from tests.admission.reviews import (
    CRONJOB_CONTROLLER,
    H100_TPP,
    JOB_CONTROLLER,
    MANIFESTS,
    REPLICASET_CONTROLLER,
    TRAINING_OPERATOR,
    cpu_pod,
    gpu_pod,
    pytorch_job,
    review,
)
from tests.admission.serverproc import Server, wait_for


def test_allowed_gpu_pod_reserves_once_and_answers_with_audit_annotations(webhook: Server) -> None:
    body = review(gpu_pod("p1", "allow", 4))
    answer = webhook.review(body)
    assert answer["allowed"] is True
    assert "status" not in answer
    assert answer["auditAnnotations"]["tier"] == "tier-2"
    assert answer["auditAnnotations"]["tpp"] == str(4 * H100_TPP)
    reservations = active_in(webhook.ledger_url, "allow")
    assert [(r.workload.kind, r.workload.name, r.tenant, r.tpp) for r in reservations] == [
        ("Pod", "p1", "allow", 4 * H100_TPP)
    ]
    assert reservations[0].request_uid == body["request"]["uid"]


def test_cap_exceeded_is_denied_with_403_and_figures(webhook: Server) -> None:
    assert webhook.review(review(pytorch_job("big", "deny", workers=1)))["allowed"] is True  # 16 GPUs: the cap
    answer = webhook.review(review(gpu_pod("one-more", "deny", 1)))
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 403
    message = answer["status"]["message"]
    assert "tenant-cap" in message
    assert "one-more" in message
    assert "deny" in message  # names the tenant
    assert answer["auditAnnotations"]["denied-by"] == "tenant-cap"
    assert [r.workload.name for r in active_in(webhook.ledger_url, "deny")] == ["big"]


def test_approaching_a_cap_warns_but_allows(webhook: Server) -> None:
    answer = webhook.review(review(gpu_pod("w1", "warn", 13)))  # 13 of 16: above the 75 % warning line
    assert answer["allowed"] is True
    assert answer["warnings"], answer
    assert any("tenant-cap" in w for w in answer["warnings"])
    assert all(len(w) <= 120 for w in answer["warnings"])
    assert 'decision="warned",kind="Pod",operation="CREATE",rule="tenant-cap"' in webhook.metrics()


def test_warn_mode_rule_allows_over_the_cap_with_a_warning(webhook: Server) -> None:
    answer = webhook.review(review(gpu_pod("soft", "acme", 10)))  # tier-1: warn above 8 GPUs, never deny
    assert answer["allowed"] is True
    assert any("tier1-soft-cap" in w for w in answer["warnings"])
    assert len(active_in(webhook.ledger_url, "acme")) == 1


def test_dry_run_reserves_nothing_and_writes_nothing(webhook: Server) -> None:
    allowed = review(gpu_pod("dry", "dry", 8), dry_run=True)
    answer = webhook.review(allowed)
    assert answer["allowed"] is True
    assert active_in(webhook.ledger_url, "dry") == []
    # and a dry run over the cap is judged like the real thing
    too_big = review(gpu_pod("dry-big", "dry", 17), dry_run=True)
    denied = webhook.review(too_big)
    assert denied["allowed"] is False
    assert active_in(webhook.ledger_url, "dry") == []
    ledger = open_ledger(webhook.ledger_url)
    try:
        recorded = {d.request_uid for d in ledger.decisions()}
    finally:
        ledger.close()
    assert allowed["request"]["uid"] not in recorded
    assert too_big["request"]["uid"] not in recorded


def test_retry_of_the_same_uid_reserves_once(webhook: Server) -> None:
    body = review(gpu_pod("r1", "retry", 6))
    first = webhook.review(body)
    second = webhook.review(copy.deepcopy(body))
    assert first["allowed"] is second["allowed"] is True
    assert len(active_in(webhook.ledger_url, "retry")) == 1
    # 6 + 6 would still fit under 16 if the retry had been counted twice; 6 + 6 + 6 would not: prove the count
    assert webhook.review(review(gpu_pod("r2", "retry", 6)))["allowed"] is True
    assert webhook.review(review(gpu_pod("r3", "retry", 6)))["allowed"] is False
    # the API server retries r1 once more, now that its own reservation fills the cap: still the same answer
    assert webhook.review(copy.deepcopy(body))["allowed"] is True
    assert sorted(r.workload.name for r in active_in(webhook.ledger_url, "retry")) == ["r1", "r2"]
    # but an object re-created under r1's name — even the very same request body with a new request uid — is a
    # new workload, judged on its own (it used to be taken for a retry and run uncharged)
    for recreated in (review(gpu_pod("r1", "retry", 6)), {**body, "request": {**body["request"], "uid": "new"}}):
        answer = webhook.review(recreated)
        assert answer["allowed"] is False
        assert "tenant-cap" in answer["status"]["message"]
    assert sorted(r.workload.name for r in active_in(webhook.ledger_url, "retry")) == ["r1", "r2"]


def test_scale_up_is_judged_on_the_delta_and_scale_down_passes(webhook: Server) -> None:
    job = pytorch_job("elastic", "scale", workers=0)  # master only: 8 GPUs
    assert webhook.review(review(job))["allowed"] is True
    grown = copy.deepcopy(job)
    grown["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = 1  # +8 GPUs: exactly the cap
    assert webhook.review(review(grown, operation="UPDATE", old=job))["allowed"] is True
    records = active_in(webhook.ledger_url, "scale")
    assert sorted(r.tpp for r in records) == [8 * H100_TPP, 8 * H100_TPP]
    too_big = copy.deepcopy(grown)
    too_big["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = 2  # +8 more: over the cap
    denied = webhook.review(review(too_big, operation="UPDATE", old=grown))
    assert denied["allowed"] is False
    assert "tenant-cap" in denied["status"]["message"]
    shrunk = copy.deepcopy(job)
    assert webhook.review(review(shrunk, operation="UPDATE", old=grown))["allowed"] is True
    assert len(active_in(webhook.ledger_url, "scale")) == 2  # shrinking is settled by the reconciler


def test_a_scale_up_is_held_to_the_per_workload_rule_on_the_whole_workload(webhook: Server) -> None:
    # bigtrain is tier-1 (its concurrent cap only warns) under a 1e26 per-workload operations rule. Bounded to
    # 3,000 days, 8 H100s run 8 × 15,832 / 16 × 1e12 × 2.592e8 s ≈ 2.05e24 operations per pod: 24 pods ≈ 4.9e25.
    job = pytorch_job("frontier", "bigtrain", workers=23)
    job["metadata"]["annotations"]["gpuquota.io/max-runtime"] = "3000d"
    del job["spec"]["runPolicy"]["activeDeadlineSeconds"]
    assert webhook.review(review(job))["allowed"] is True
    grown = copy.deepcopy(job)
    grown["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = 49  # +26 pods (≈ 5.3e25 alone): 50 pods ≈ 1.03e26
    denied = webhook.review(review(grown, operation="UPDATE", old=job))
    assert denied["allowed"] is False
    message = denied["status"]["message"]
    assert "closed-weights-1e26" in message
    assert "requested 400 × " in message  # the whole workload's GPUs and operations, not the 208 GPUs added
    assert "for 3000d = 1e26 operations" in message  # (the growth alone: 5.3e25)
    assert [r.tpp for r in active_in(webhook.ledger_url, "bigtrain")] == [24 * 8 * H100_TPP]
    smaller = copy.deepcopy(job)
    smaller["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = 46  # 47 pods ≈ 9.6e25: still under 1e26
    assert webhook.review(review(smaller, operation="UPDATE", old=job))["allowed"] is True
    assert sorted(r.tpp for r in active_in(webhook.ledger_url, "bigtrain")) == [23 * 8 * H100_TPP, 24 * 8 * H100_TPP]


def test_a_delete_frees_nothing_until_the_gpus_are_gone(webhook: Server) -> None:
    """``kubectl delete --cascade=orphan``, a long grace period, a finalizer — or a DELETE that is refused later in
    the chain — leave the pods running: the review only marks the reservation releasing; the reconciler releases
    it when no pod of the workload holds GPUs (tests/reconcile)."""
    job = pytorch_job("gone", "delete", workers=1)  # 16 GPUs: fills the cap
    assert webhook.review(review(job))["allowed"] is True
    assert webhook.review(review(gpu_pod("blocked", "delete", 1)))["allowed"] is False
    answer = webhook.review(review(None, operation="DELETE", old=job))
    assert answer["allowed"] is True  # a delete is never blocked
    [held] = active_in(webhook.ledger_url, "delete")
    assert held.releasing
    assert held.tpp == 16 * H100_TPP
    assert webhook.review(review(gpu_pod("still-blocked", "delete", 1)))["allowed"] is False
    # nor may a new pod ride on a workload being deleted: a controller's pod naming it is counted on its own
    owner = [{"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "name": "gone", "uid": job["metadata"]["uid"],
              "controller": True}]
    late = gpu_pod("gone-worker-9", "delete", 8, owners=owner)
    assert webhook.review(review(late, user=TRAINING_OPERATOR))["allowed"] is False


def test_dry_run_delete_releases_nothing(webhook: Server) -> None:
    pod = gpu_pod("keep", "delete", 1)
    webhook.review(review(pod))
    before = len(active_in(webhook.ledger_url, "delete"))
    assert webhook.review(review(None, operation="DELETE", old=pod, dry_run=True))["allowed"] is True
    assert len(active_in(webhook.ledger_url, "delete")) == before


def test_objects_without_gpus_are_allowed_without_touching_the_ledger(webhook: Server) -> None:
    before = open_ledger(webhook.ledger_url)
    try:
        decisions_before = len(before.decisions())
    finally:
        before.close()
    answer = webhook.review(review(cpu_pod("web", "nowhere-at-all")))  # no tenant, no jurisdiction: irrelevant
    assert answer == {"uid": answer["uid"], "allowed": True}
    ledger = open_ledger(webhook.ledger_url)
    try:
        assert len(ledger.decisions()) == decisions_before
    finally:
        ledger.close()


def test_unknown_jurisdiction_denies_gpu_workloads_and_names_the_label(webhook: Server) -> None:
    answer = webhook.review(review(gpu_pod("p", "unlabelled-namespace", 1)))
    assert answer["allowed"] is False
    assert "gpuquota.io/jurisdiction" in answer["status"]["message"]
    assert active_in(webhook.ledger_url, "unlabelled-namespace") == []


def test_pods_of_an_admitted_workload_pass_without_reserving(webhook: Server) -> None:
    job = pytorch_job("trainer", "owner", workers=1)  # 16 GPUs: the tenant's whole cap
    assert webhook.review(review(job))["allowed"] is True
    owner_ref = [{"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "name": "trainer",
                  "uid": job["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    labels = {"training.kubeflow.org/job-name": "trainer",
              "training.kubeflow.org/operator-name": "pytorchjob-controller",
              "training.kubeflow.org/replica-type": "worker", "training.kubeflow.org/replica-index": "0"}
    for index in range(2):
        pod = gpu_pod(f"trainer-worker-{index}", "owner", 8, labels=labels, owners=owner_ref)
        assert webhook.review(review(pod, user=TRAINING_OPERATOR))["allowed"] is True
    assert [r.workload.name for r in active_in(webhook.ledger_url, "owner")] == ["trainer"]


def test_forged_owner_reference_is_judged_on_its_own(webhook: Server) -> None:
    assert webhook.review(review(gpu_pod("base", "forged", 16)))["allowed"] is True  # cap full
    forged = [{"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "name": "no-such-job",
               "uid": str(uuid.uuid4()), "controller": True}]
    pod = gpu_pod("sneaky", "forged", 8, owners=forged,
                  labels={"batch.kubernetes.io/job-name": "no-such-job", "job-name": "no-such-job"})
    answer = webhook.review(review(pod))
    assert answer["allowed"] is False
    assert "tenant-cap" in answer["status"]["message"]
    # an owner in another namespace does not count either: owner references are namespace-local
    other_ns_owner = [{"apiVersion": "v1", "kind": "Pod", "name": "base", "uid": str(uuid.uuid4())}]
    answer = webhook.review(review(gpu_pod("sneaky2", "deny", 8, owners=other_ns_owner)))
    assert answer["allowed"] is False


def test_only_a_controller_may_claim_an_admitted_owner(webhook: Server) -> None:
    job = pytorch_job("claimed", "claims", workers=0)  # master only: 8 of the tenant's 16 GPUs
    assert webhook.review(review(job))["allowed"] is True
    owner_ref = [{"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "name": "claimed",
                  "uid": job["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    labels = {"training.kubeflow.org/job-name": "claimed",
              "training.kubeflow.org/operator-name": "pytorchjob-controller"}

    def pod(name: str) -> dict[str, object]:  # a flawless claim: the admitted job's name, uid and operator labels
        return gpu_pod(name, "claims", 8, labels=labels, owners=owner_ref)

    def names() -> list[str]:
        return sorted(r.workload.name for r in active_in(webhook.ledger_url, "claims"))

    # the tenant's own pod naming its admitted job is counted like any other: it takes the other 8 GPUs ...
    assert webhook.review(review(pod("extra-1")))["allowed"] is True
    assert names() == ["claimed", "extra-1"]
    # ... and the next one is over the cap, however many it creates
    forged = webhook.review(review(pod("extra-2")))
    assert forged["allowed"] is False
    assert "tenant-cap" in forged["status"]["message"]
    # the same pod from the controllers pass on the job's reservation: the operator, the controller manager (one
    # identity or per-controller service accounts in kube-system) and a --trusted-controller name
    worker = pod("claimed-worker-0")  # one pod (one uid): it rides once, whoever's review of it comes again
    for user in (TRAINING_OPERATOR, "system:kube-controller-manager", JOB_CONTROLLER, TRUSTED_OPERATOR):
        assert webhook.review(review(worker, user=user))["allowed"] is True, user
    assert names() == ["claimed", "extra-1"]
    # the owner's answer is now cached as admitted: the tenant still cannot ride on it, with a user or with a
    # service account of its own namespace (or of another tenant's)
    # — nor with a service account of a namespace no tenant owns, or any kube-system account that is no controller
    for user in ("alice@example.com", "system:serviceaccount:claims:default", "system:serviceaccount:deny:ci",
                 "system:serviceaccount:", "system:kube-scheduler", "system:serviceaccount:default:default",
                 "system:serviceaccount:kubeflow:default", "system:serviceaccount:kube-system:default"):
        answer = webhook.review(review(pod("extra-3"), user=user))
        assert answer["allowed"] is False, user
        assert "tenant-cap" in answer["status"]["message"]
    assert names() == ["claimed", "extra-1"]


def test_a_deployments_pods_cannot_ride_on_an_admitted_job_by_its_labels(webhook: Server) -> None:
    """A tenant's Deployment (a kind gpuquota does not review) whose pod template names an admitted Job: the trusted
    ReplicaSet controller creates the pods, but their controller is a ReplicaSet, so the labels vouch for nothing."""
    template = gpu_pod("unused", "labelclaims", 8)
    job_uid = str(uuid.uuid4())
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "train", "namespace": "labelclaims", "uid": job_uid,
                        "annotations": {"gpuquota.io/max-runtime": "24h"}},
           "spec": {"parallelism": 1, "completions": 1, "activeDeadlineSeconds": 86400,
                    "template": {"spec": template["spec"]}}}
    assert webhook.review(review(job))["allowed"] is True  # 8 of the tenant's 16 GPUs
    job_labels = {"batch.kubernetes.io/controller-uid": job_uid, "batch.kubernetes.io/job-name": "train",
                  "controller-uid": job_uid, "job-name": "train"}
    replica_set = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "serve-7d4f9cbb8",
                    "uid": str(uuid.uuid4()), "controller": True, "blockOwnerDeletion": True}]

    def deployment_pod(name: str) -> dict[str, object]:
        return gpu_pod(name, "labelclaims", 8, owners=replica_set,
                       labels=job_labels | {"jobset.sigs.k8s.io/jobset-name": "train",
                                            "pod-template-hash": "7d4f9cbb8"})

    def names() -> list[str]:
        return sorted(r.workload.name for r in active_in(webhook.ledger_url, "labelclaims"))

    # the Job's own pod, from the Job controller, passes on the Job's reservation ...
    job_owner = [{"apiVersion": "batch/v1", "kind": "Job", "name": "train", "uid": job_uid, "controller": True,
                  "blockOwnerDeletion": True}]
    own = gpu_pod("train-x8k2q", "labelclaims", 8, labels=job_labels, owners=job_owner)
    assert webhook.review(review(own, user=JOB_CONTROLLER))["allowed"] is True
    assert names() == ["train"]
    # ... the Deployment's pods are counted like any GPU pod: the first takes the other 8 GPUs ...
    assert webhook.review(review(deployment_pod("serve-7d4f9cbb8-a1b2c"), user=REPLICASET_CONTROLLER))["allowed"]
    assert names() == ["serve-7d4f9cbb8-a1b2c", "train"]
    # ... and the next one is over the cap, although the owner's answer is cached as admitted by now
    answer = webhook.review(review(deployment_pod("serve-7d4f9cbb8-d3e4f"), user=REPLICASET_CONTROLLER))
    assert answer["allowed"] is False
    assert "tenant-cap" in answer["status"]["message"]
    assert names() == ["serve-7d4f9cbb8-a1b2c", "train"]


def test_tenant_labels_on_the_workload_are_not_trusted(webhook: Server) -> None:
    pod = gpu_pod("liar", "unlabelled-ns-2", 1,
                  labels={"gpuquota.io/tenant": "acme", "gpuquota.io/jurisdiction": "JP"})
    answer = webhook.review(review(pod))
    assert answer["allowed"] is False
    assert "gpuquota.io/jurisdiction" in answer["status"]["message"]


def test_every_decision_is_one_audit_line_and_one_ledger_record(webhook: Server) -> None:
    allowed = review(gpu_pod("a1", "audit", 2))
    denied = review(gpu_pod("a2", "audit", 40))
    webhook.review(allowed)
    webhook.review(denied)

    def lines() -> dict[str, dict[str, object]]:
        out = {}
        for line in webhook.audit_path.read_text().splitlines():
            record = json.loads(line)
            out[record["request_uid"]] = record
        return out

    records = wait_for(lambda: (r := lines()) and allowed["request"]["uid"] in r and denied["request"]["uid"] in r
                       and r)
    first, second = records[allowed["request"]["uid"]], records[denied["request"]["uid"]]
    for record in (first, second):
        for key in ("time", "request_uid", "user", "namespace", "kind", "name", "tenant", "jurisdiction", "tier",
                    "demand", "rules", "decision", "profile_version"):
            assert key in record, key
    assert (first["decision"], first["tenant"], first["jurisdiction"], first["tier"]) == (
        "allowed", "audit", "BR", "tier-2")
    assert second["decision"] == "denied"
    assert second["user"] == "alice@example.com"
    ledger = open_ledger(webhook.ledger_url)
    try:
        uids = [d.request_uid for d in ledger.decisions()]
    finally:
        ledger.close()
    assert uids.count(allowed["request"]["uid"]) == 1
    assert uids.count(denied["request"]["uid"]) == 1


def test_metrics_follow_the_contract(webhook: Server) -> None:
    webhook.review(review(gpu_pod("m1", "metrics", 2)))
    webhook.review(review(gpu_pod("m2", "metrics", 40)))  # over the cap (64 per container is the most)
    webhook.review(review(gpu_pod("m3", "not-a-known-tenant", 1)))
    text = webhook.metrics()
    for name in ("gpuquota_admission_requests_total", "gpuquota_admission_duration_seconds_bucket",
                 "gpuquota_reserved_tpp", "gpuquota_cap", "gpuquota_cap_utilisation_ratio", "gpuquota_policy_info",
                 "gpuquota_errors_total", "gpuquota_ledger_up"):
        assert f"\n{name}" in text, name
    for family in ("gpuquota_used_operations", "gpuquota_cluster_capacity_tpp", "gpuquota_cluster_gpus",
                   "gpuquota_reservations_active"):  # every family of docs/metrics.md is declared
        assert f"# TYPE {family} gauge" in text, family
    assert 'gpuquota_admission_requests_total{decision="denied",kind="Pod",operation="CREATE",rule="tenant-cap"}' \
        in text
    assert 'gpuquota_reserved_tpp{scope="tenant",subject="metrics"} 31664.0' in text
    assert 'gpuquota_cap{metric="concurrent-tpp",rule="tenant-cap",scope="tenant",subject="metrics"} 253312.0' in text
    assert 'gpuquota_policy_info{profile="webhook-test",version="1"} 1.0' in text
    assert 'subject="not-a-known-tenant"' not in text  # bounded cardinality
    assert "gpuquota_ledger_up 1.0" in text


def test_health_and_readiness(webhook: Server) -> None:
    client = webhook.client()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True}


def test_response_is_compact_json_with_only_the_fields_kubernetes_reads(webhook: Server) -> None:
    raw = webhook.post(review(gpu_pod("c1", "audit", 1))).content
    answer = orjson.loads(raw)
    assert set(answer) == {"apiVersion", "kind", "response"}
    assert set(answer["response"]) <= {"uid", "allowed", "status", "warnings", "auditAnnotations"}


def test_each_cronjob_run_is_judged_and_charged(webhook: Server) -> None:
    """The CronJob shows at apply time whether one run fits and reserves nothing; every Job its controller creates is
    a workload of its own, so overlapping runs (concurrencyPolicy: Allow) cannot ride free on one reservation."""
    cron = yaml.safe_load((MANIFESTS / "cronjob-nightly-eval.yaml").read_text())  # a run: 2 pods x 1 L40S
    cron["metadata"]["namespace"] = "cron"
    cron["metadata"]["uid"] = str(uuid.uuid4())
    cron["spec"]["concurrencyPolicy"] = "Allow"
    assert webhook.review(review(cron))["allowed"] is True
    assert active_in(webhook.ledger_url, "cron") == []
    template = cron["spec"]["jobTemplate"]

    def run(minute: int) -> tuple[dict[str, Any], dict[str, Any]]:
        name = f"nightly-eval-{29412345 + minute}"
        job = {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": name, "namespace": "cron", "uid": str(uuid.uuid4()),
                            "annotations": template["metadata"]["annotations"],
                            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly-eval",
                                                 "uid": cron["metadata"]["uid"], "controller": True}]},
               "spec": copy.deepcopy(template["spec"])}
        pod = copy.deepcopy(template["spec"]["template"])
        pod.update(apiVersion="v1", kind="Pod")
        pod["metadata"] = {"name": f"{name}-abcde", "namespace": "cron", "uid": str(uuid.uuid4()),
                           "labels": {"batch.kubernetes.io/job-name": name, "job-name": name},
                           "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                                                "uid": job["metadata"]["uid"], "controller": True}]}
        return job, pod

    first, pod = run(0)
    assert webhook.review(review(first, user=CRONJOB_CONTROLLER))["allowed"] is True
    assert webhook.review(review(pod, user=JOB_CONTROLLER))["allowed"] is True  # rides on its own run's Job
    mine = [(r.workload.kind, r.workload.name) for r in active_in(webhook.ledger_url, "cron")]
    assert mine == [("Job", first["metadata"]["name"])]
    second, _ = run(1)
    assert webhook.review(review(second, user=CRONJOB_CONTROLLER))["allowed"] is True
    assert len(active_in(webhook.ledger_url, "cron")) == 2  # each run charged


def test_pods_ride_only_within_their_owners_gpu_budget(webhook: Server) -> None:
    """Replacement pods the Job controller makes while the old ones still terminate (or a reused name, a second
    run) are beyond what the Job's reservation covers: they are charged on their own, denied at cap."""
    job_uid = str(uuid.uuid4())
    job: dict[str, Any] = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "budget", "namespace": "budget", "uid": job_uid},
           "spec": {"parallelism": 2, "completions": 2, "activeDeadlineSeconds": 86400,
                    "template": {"spec": gpu_pod("t", "budget", 8)["spec"]}}}
    assert webhook.review(review(job))["allowed"] is True  # 2 x 8 GPUs: the tenant's whole cap
    owner = [{"apiVersion": "batch/v1", "kind": "Job", "name": "budget", "uid": job_uid, "controller": True}]
    labels = {"batch.kubernetes.io/job-name": "budget", "job-name": "budget"}
    pods = [gpu_pod(f"budget-{i}", "budget", 8, labels=labels, owners=owner) for i in range(3)]
    assert webhook.review(review(pods[0], user=JOB_CONTROLLER))["allowed"] is True
    retried = review(pods[1], user=JOB_CONTROLLER)
    assert webhook.review(retried)["allowed"] is True
    assert webhook.review(copy.deepcopy(retried))["allowed"] is True  # the same pod again: no second ride
    replacement = webhook.review(review(pods[2], user=JOB_CONTROLLER))  # both others still hold their GPUs
    assert replacement["allowed"] is False
    assert "tenant-cap" in replacement["status"]["message"]
    assert [r.workload.name for r in active_in(webhook.ledger_url, "budget")] == ["budget"]


def test_metrics_exposition_passes_promtool(webhook: Server) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (scripts/bootstrap --tools installs it)")
    webhook.review(review(gpu_pod("lint", "metrics", 1)))
    result = subprocess.run([promtool, "check", "metrics"], input=webhook.metrics(), capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def _active_gauge(webhook: Server) -> float | None:
    for line in webhook.metrics().splitlines():
        if line.startswith("gpuquota_reservations_active "):
            return float(line.split()[1])
    return None


def test_reservations_active_gauge_follows_the_ledger(webhook: Server) -> None:
    before = len(active(webhook.ledger_url))  # other tests of this module share the server and its ledger
    assert wait_for(lambda: _active_gauge(webhook) == before), _active_gauge(webhook)
    pods = [gpu_pod(f"g{index}", "metrics", 1) for index in range(3)]
    for pod in pods:
        assert webhook.review(review(pod))["allowed"] is True
    assert webhook.review(review(None, operation="DELETE", old=pods[0]))["allowed"] is True
    # 3 reserved; the deleted one still holds (releasing) until the reconciler sees its GPUs gone
    assert wait_for(lambda: _active_gauge(webhook) == before + 3), _active_gauge(webhook)
