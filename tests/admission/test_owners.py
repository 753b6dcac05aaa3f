"""Which owners an object may claim: owner references as they are, controller labels only when they agree with the
object's controller owner reference (which a pod template cannot forge).

The metadata below is what the real controllers write: the Job controller (pods labelled with the Job's name and
uid), the Kubeflow training operator, KubeRay, JobSet (Jobs ``<jobset>-<replicatedJob>-<index>``), the CronJob
controller (Jobs ``<cronjob>-<minutes since the epoch>``), LeaderWorkerSet (StatefulSets ``<lws>`` and
``<lws>-<groupIndex>``), Kubeflow Trainer (a JobSet named after the TrainJob).
"""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gpuquota.admission.owners import OwnerRef, candidate_owners
from gpuquota.workloads import SUPPORTED_KINDS


def controller_ref(api_version: str, kind: str, name: str, *, controller: bool = True) -> dict[str, Any]:
    ref: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "name": name, "uid": str(uuid.uuid4()),
                           "blockOwnerDeletion": True}
    if controller:
        ref["controller"] = True
    return ref


def made_by(ref: dict[str, Any] | None, labels: dict[str, str], name: str = "p") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "ml", "labels": labels}
    if ref is not None:
        metadata["ownerReferences"] = [ref]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata}


def as_owner(ref: dict[str, Any]) -> OwnerRef:
    group = ref["apiVersion"].rpartition("/")[0]
    return OwnerRef(group, ref["kind"], ref["name"], ref["uid"])


def job_pod_labels(job: str, uid: str) -> dict[str, str]:
    """What the API server defaults into a Job's template (and the Job controller copies onto its pods)."""
    return {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": job,
            "controller-uid": uid, "job-name": job}


# --- legitimate chains: every claim the real controllers make is kept --------------------------------------------


def test_pods_of_a_job_claim_the_job() -> None:
    job = controller_ref("batch/v1", "Job", "train")
    pod = made_by(job, job_pod_labels("train", job["uid"]) | {"batch.kubernetes.io/job-completion-index": "0"})
    assert candidate_owners(pod) == (as_owner(job), OwnerRef("batch", "Job", "train"))


def test_pods_of_a_cronjobs_run_claim_only_their_run() -> None:
    """Each run (a Job) is a workload charged on its own: its pods ride on it, never on the CronJob."""
    cronjob = controller_ref("batch/v1", "CronJob", "nightly-eval")
    cron_job = {"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "nightly-eval-29412345", "ownerReferences": [cronjob]}}
    assert candidate_owners(cron_job) == (as_owner(cronjob),)
    job = controller_ref("batch/v1", "Job", "nightly-eval-29412345")
    pod = made_by(job, job_pod_labels("nightly-eval-29412345", job["uid"]), "nightly-eval-29412345-x8k2q")
    assert candidate_owners(pod) == (as_owner(job), OwnerRef("batch", "Job", "nightly-eval-29412345"))


def test_pods_of_a_kubeflow_job_claim_it() -> None:
    for api_version, kind, operator in (("kubeflow.org/v1", "PyTorchJob", "pytorchjob-controller"),
                                        ("kubeflow.org/v1", "MPIJob", "mpijob-controller"),
                                        ("kubeflow.org/v1", "TFJob", "tfjob-controller")):
        job = controller_ref(api_version, kind, "llm")
        pod = made_by(job, {"training.kubeflow.org/job-name": "llm", "training.kubeflow.org/operator-name": operator,
                            "training.kubeflow.org/replica-type": "worker",
                            "training.kubeflow.org/replica-index": "0"}, "llm-worker-0")
        assert candidate_owners(pod) == (as_owner(job), OwnerRef("kubeflow.org", kind, "llm")), kind


def test_pods_of_an_mpi_operator_mpijob_claim_it() -> None:
    """The MPI Operator (kubeflow.org/v2beta1) owns the workers, and runs the launcher as its Job
    ``<mpijob>-launcher``."""
    mpijob = controller_ref("kubeflow.org/v2beta1", "MPIJob", "nccl")
    labels = {"training.kubeflow.org/job-name": "nccl", "training.kubeflow.org/operator-name": "mpi-operator"}
    worker = made_by(mpijob, labels | {"training.kubeflow.org/job-role": "worker",
                                       "training.kubeflow.org/replica-index": "0"}, "nccl-worker-0")
    assert candidate_owners(worker) == (as_owner(mpijob), OwnerRef("kubeflow.org", "MPIJob", "nccl"))
    launcher_job = controller_ref("batch/v1", "Job", "nccl-launcher")
    launcher = made_by(launcher_job, job_pod_labels("nccl-launcher", launcher_job["uid"]) | labels | {
        "training.kubeflow.org/job-role": "launcher"}, "nccl-launcher-x2x9q")
    assert candidate_owners(launcher) == (as_owner(launcher_job), OwnerRef("batch", "Job", "nccl-launcher"),
                                          OwnerRef("kubeflow.org", "MPIJob", "nccl"))
    # not believed: a Job not named as the launcher, another kind under the MPI Operator's label, the training
    # operator's label under a Job
    for ref, operator in ((controller_ref("batch/v1", "Job", "nccl-evil"), "mpi-operator"),
                          (controller_ref("kubeflow.org/v1", "PyTorchJob", "nccl"), "mpi-operator"),
                          (controller_ref("batch/v1", "Job", "nccl-launcher"), "mpijob-controller")):
        claims = candidate_owners(made_by(ref, {"training.kubeflow.org/job-name": "nccl",
                                                "training.kubeflow.org/operator-name": operator}))
        assert OwnerRef("kubeflow.org", "MPIJob", "nccl") not in claims, (ref["name"], operator)


def test_pods_of_a_raycluster_and_of_a_rayjobs_cluster() -> None:
    cluster = controller_ref("ray.io/v1", "RayCluster", "rl-cluster")
    worker = made_by(cluster, {"ray.io/cluster": "rl-cluster", "ray.io/node-type": "worker",
                               "ray.io/group": "gpu-workers", "ray.io/is-ray-node": "yes",
                               "app.kubernetes.io/created-by": "kuberay-operator"}, "rl-cluster-gpu-workers-abcde")
    assert candidate_owners(worker) == (as_owner(cluster), OwnerRef("ray.io", "RayCluster", "rl-cluster"))
    # a RayJob's cluster is named "<rayjob>-<5 random characters>" (older KubeRay: "<rayjob>-raycluster-<5>")
    for cluster_name in ("batch-inference-x7k2p", "batch-inference-raycluster-x7k2p"):
        cluster = controller_ref("ray.io/v1", "RayCluster", cluster_name)
        head = made_by(cluster, {"ray.io/cluster": cluster_name, "ray.io/node-type": "head",
                                 "ray.io/originated-from-crd": "RayJob",
                                 "ray.io/originated-from-cr-name": "batch-inference"}, f"{cluster_name}-head-q2w3e")
        assert candidate_owners(head) == (as_owner(cluster), OwnerRef("ray.io", "RayCluster", cluster_name),
                                          OwnerRef("ray.io", "RayJob", "batch-inference"))
    # the cluster itself, made by the RayJob controller, claims the RayJob through its owner reference
    rayjob = controller_ref("ray.io/v1", "RayJob", "batch-inference")
    made = {"apiVersion": "ray.io/v1", "kind": "RayCluster",
            "metadata": {"name": "batch-inference-x7k2p", "ownerReferences": [rayjob],
                         "labels": {"ray.io/originated-from-crd": "RayJob",
                                    "ray.io/originated-from-cr-name": "batch-inference"}}}
    assert candidate_owners(made) == (as_owner(rayjob),)


def test_jobset_jobs_and_their_pods_claim_the_jobset() -> None:
    jobset = controller_ref("jobset.x-k8s.io/v1alpha2", "JobSet", "pretrain")
    jobset_labels = {"jobset.sigs.k8s.io/jobset-name": "pretrain", "jobset.sigs.k8s.io/replicatedjob-name": "workers",
                     "jobset.sigs.k8s.io/job-index": "1", "jobset.sigs.k8s.io/replicatedjob-replicas": "2",
                     "jobset.sigs.k8s.io/job-key": "2b1c0e4f"}
    child = {"apiVersion": "batch/v1", "kind": "Job",
             "metadata": {"name": "pretrain-workers-1", "ownerReferences": [jobset], "labels": jobset_labels}}
    assert candidate_owners(child) == (as_owner(jobset), OwnerRef("jobset.x-k8s.io", "JobSet", "pretrain"),
                                       OwnerRef("trainer.kubeflow.org", "TrainJob", "pretrain"))
    job = controller_ref("batch/v1", "Job", "pretrain-workers-1")
    pod = made_by(job, job_pod_labels("pretrain-workers-1", job["uid"]) | jobset_labels, "pretrain-workers-1-0-abcde")
    assert candidate_owners(pod) == (as_owner(job), OwnerRef("batch", "Job", "pretrain-workers-1"),
                                     OwnerRef("jobset.x-k8s.io", "JobSet", "pretrain"),
                                     OwnerRef("trainer.kubeflow.org", "TrainJob", "pretrain"))


def test_trainjob_chain_claims_the_trainjob_and_not_its_step_name() -> None:
    trainjob = controller_ref("trainer.kubeflow.org/v1alpha1", "TrainJob", "ft-llama")
    jobset = {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
              "metadata": {"name": "ft-llama", "ownerReferences": [trainjob]}}
    assert candidate_owners(jobset) == (as_owner(trainjob),)
    job = controller_ref("batch/v1", "Job", "ft-llama-node-0")
    labels = job_pod_labels("ft-llama-node-0", job["uid"]) | {
        "jobset.sigs.k8s.io/jobset-name": "ft-llama", "jobset.sigs.k8s.io/replicatedjob-name": "node",
        "jobset.sigs.k8s.io/job-index": "0", "trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}
    owners = candidate_owners(made_by(job, labels, "ft-llama-node-0-0-x1y2z"))
    assert OwnerRef("trainer.kubeflow.org", "TrainJob", "ft-llama") in owners
    assert all(ref.name != "trainer" for ref in owners)  # the ancestor-step label names a step, not a TrainJob


def test_lws_pods_claim_the_lws_through_its_statefulsets() -> None:
    common = {"leaderworkerset.sigs.k8s.io/name": "vllm", "leaderworkerset.sigs.k8s.io/group-index": "1",
              "leaderworkerset.sigs.k8s.io/group-key": "689ad1f3", "leaderworkerset.sigs.k8s.io/template-revision-hash":
              "5c5f8d6b9"}
    leaders = controller_ref("apps/v1", "StatefulSet", "vllm")
    leader = made_by(leaders, common | {"leaderworkerset.sigs.k8s.io/worker-index": "0"}, "vllm-1")
    assert candidate_owners(leader) == (as_owner(leaders), OwnerRef("leaderworkerset.x-k8s.io", "LeaderWorkerSet",
                                                                    "vllm"))
    workers = controller_ref("apps/v1", "StatefulSet", "vllm-1")
    worker = made_by(workers, common | {"leaderworkerset.sigs.k8s.io/worker-index": "2"}, "vllm-1-2")
    assert candidate_owners(worker) == (as_owner(workers), OwnerRef("leaderworkerset.x-k8s.io", "LeaderWorkerSet",
                                                                    "vllm"))


# --- claims a tenant's template can plant: ignored ----------------------------------------------------------------

PLANTED = {
    "job-name": "train", "batch.kubernetes.io/job-name": "train",
    "jobset.sigs.k8s.io/jobset-name": "pretrain",
    "training.kubeflow.org/job-name": "llm", "training.kubeflow.org/operator-name": "pytorchjob-controller",
    "ray.io/cluster": "rl-cluster", "ray.io/originated-from-crd": "RayJob",
    "ray.io/originated-from-cr-name": "batch-inference",
    "leaderworkerset.sigs.k8s.io/name": "vllm",
    "pod-template-hash": "7d4f9cbb8",
}


def test_deployment_statefulset_and_daemonset_pods_cannot_claim_by_label() -> None:
    for ref in (controller_ref("apps/v1", "ReplicaSet", "web-7d4f9cbb8"),
                controller_ref("apps/v1", "DaemonSet", "node-agent"),
                controller_ref("apps/v1", "StatefulSet", "web"),
                controller_ref("argoproj.io/v1alpha1", "Workflow", "wf")):
        assert candidate_owners(made_by(ref, dict(PLANTED))) == (as_owner(ref),), ref["kind"]


def test_without_a_controller_reference_labels_claim_nothing() -> None:
    assert candidate_owners(made_by(None, dict(PLANTED))) == ()
    # an owner reference that is not the controller is kept as a claim, but does not vouch for labels
    job = controller_ref("batch/v1", "Job", "train", controller=False)
    assert candidate_owners(made_by(job, dict(PLANTED))) == (as_owner(job),)
    assert candidate_owners({"metadata": {"ownerReferences": "garbage", "labels": ["x"]}}) == ()
    assert candidate_owners({"metadata": {"labels": {"app": "web"}}}) == ()


def test_a_reviewed_controller_must_also_agree_on_the_name() -> None:
    other = controller_ref("batch/v1", "Job", "other")
    assert candidate_owners(made_by(other, dict(PLANTED))) == (as_owner(other),)
    # a Job that does not follow JobSet's naming, or whose index labels disagree with its name
    for name, labels in (("other-workers-0", {}),
                         ("pretrain-workers-0", {"jobset.sigs.k8s.io/replicatedjob-name": "workers",
                                                 "jobset.sigs.k8s.io/job-index": "1"})):
        job = controller_ref("batch/v1", "Job", name)
        owners = candidate_owners(made_by(job, labels | {"jobset.sigs.k8s.io/jobset-name": "pretrain"}))
        assert owners == (as_owner(job),), name
    # a pod never reaches a CronJob through its Job's name
    evil = controller_ref("batch/v1", "Job", "evil")
    assert candidate_owners(made_by(evil, {"job-name": "nightly-eval-29412345"})) == (as_owner(evil),)
    # the operator label must name the controller's kind
    tfjob = controller_ref("kubeflow.org/v1", "TFJob", "llm")
    assert candidate_owners(made_by(tfjob, {"training.kubeflow.org/job-name": "llm",
                                            "training.kubeflow.org/operator-name": "pytorchjob-controller"})) == (
        as_owner(tfjob),)
    # a RayJob's label under a cluster that is not named after it
    cluster = controller_ref("ray.io/v1", "RayCluster", "other-x7k2p")
    assert OwnerRef("ray.io", "RayJob", "batch-inference") not in candidate_owners(made_by(cluster, dict(PLANTED)))


def test_lws_label_needs_one_of_the_lws_statefulset_names() -> None:
    lws = OwnerRef("leaderworkerset.x-k8s.io", "LeaderWorkerSet", "vllm")
    for sts, group_index in (("web", None), ("vllm-extra", None), ("vllm-1", "0"), ("vllmx", None)):
        labels = {"leaderworkerset.sigs.k8s.io/name": "vllm"}
        if group_index is not None:
            labels["leaderworkerset.sigs.k8s.io/group-index"] = group_index
        assert lws not in candidate_owners(made_by(controller_ref("apps/v1", "StatefulSet", sts), labels)), sts
    # a StatefulSet named "<lws>-<n>" stays a candidate by name alone, carrying the StatefulSet in ``via``: whether it
    # is the LWS's (or a tenant's own) is read back from the API server before it counts (test_lws.py)
    tenant_sts = controller_ref("apps/v1", "StatefulSet", "vllm-7")
    claims = [ref for ref in candidate_owners(made_by(tenant_sts, {"leaderworkerset.sigs.k8s.io/name": "vllm"}))
              if ref == lws]
    assert [ref.via for ref in claims] == [as_owner(tenant_sts)]


def test_label_claims_ride_only_on_reviewed_controllers() -> None:
    """Every label claim kept comes with a controller the webhook reviews — but for the LWS's StatefulSets."""
    kinds = st.sampled_from([("batch/v1", "Job"), ("jobset.x-k8s.io/v1alpha2", "JobSet"), ("ray.io/v1", "RayCluster"),
                             ("kubeflow.org/v1", "PyTorchJob"), ("apps/v1", "StatefulSet"), ("apps/v1", "ReplicaSet"),
                             ("apps/v1", "DaemonSet"), ("v1", "ReplicationController")])
    names = st.sampled_from(["train", "pretrain", "pretrain-workers-0", "llm", "rl-cluster", "vllm", "vllm-0",
                             "batch-inference-x7k2p", "nightly-eval-29412345"])

    name_labels = sorted(set(PLANTED) - {"training.kubeflow.org/operator-name", "ray.io/originated-from-crd"})

    @given(kind=kinds, name=names, labels=st.dictionaries(st.sampled_from(name_labels), names))
    def check(kind: tuple[str, str], name: str, labels: dict[str, str]) -> None:
        ref = controller_ref(kind[0], kind[1], name)
        owners = candidate_owners(made_by(ref, labels | {"training.kubeflow.org/operator-name": "pytorchjob-controller",
                                                         "ray.io/originated-from-crd": "RayJob"}))
        assert owners[0] == as_owner(ref)
        group = kind[0].rpartition("/")[0]
        if owners[1:]:
            assert (group, kind[1]) in SUPPORTED_KINDS or kind[1] == "StatefulSet"
        if (group, kind[1]) not in SUPPORTED_KINDS and kind[1] != "StatefulSet":
            assert owners == (as_owner(ref),)

    check()


def test_pods_of_a_volcano_job_and_of_a_rayservices_cluster() -> None:
    volcano = controller_ref("batch.volcano.sh/v1alpha1", "Job", "lm-mpi-job")
    worker = made_by(volcano, {"volcano.sh/job-name": "lm-mpi-job", "volcano.sh/task-spec": "mpiworker"},
                     "lm-mpi-job-mpiworker-0")
    assert OwnerRef("batch.volcano.sh", "Job", "lm-mpi-job") in candidate_owners(worker)
    assert OwnerRef("batch", "Job", "lm-mpi-job") not in candidate_owners(worker)  # not batch/v1's Job
    planted = made_by(controller_ref("batch/v1", "Job", "lm-mpi-job"), {"volcano.sh/job-name": "lm-mpi-job"})
    assert OwnerRef("batch.volcano.sh", "Job", "lm-mpi-job") not in candidate_owners(planted)
    cluster = controller_ref("ray.io/v1", "RayCluster", "llama-serve-raycluster-8kz2f")
    head = made_by(cluster, {"ray.io/cluster": "llama-serve-raycluster-8kz2f", "ray.io/node-type": "head",
                             "ray.io/originated-from-crd": "RayService",
                             "ray.io/originated-from-cr-name": "llama-serve"})
    assert OwnerRef("ray.io", "RayService", "llama-serve") in candidate_owners(head)
    assert OwnerRef("ray.io", "RayJob", "llama-serve") not in candidate_owners(head)
