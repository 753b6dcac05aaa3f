"""What recorded objects say about their run, and where each workload kind lives in the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gpuquota.reconcile.lifecycle import observe, parse_time
from gpuquota.reconcile.resources import RESOURCES, kinds_to_follow
from gpuquota.workloads import SUPPORTED_KINDS
from gpuquota.workloads.registry import BY_KEY
from tests.reconcile.objects import condition, job, job_complete, job_failed, pod, pytorchjob, rayjob, ts

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
JOB, POD = ("batch", "Job"), ("", "Pod")
PYTORCHJOB, RAYJOB = ("kubeflow.org", "PyTorchJob"), ("ray.io", "RayJob")


def test_every_supported_kind_is_followed() -> None:
    assert set(SUPPORTED_KINDS) <= set(RESOURCES)
    assert RESOURCES[JOB].collection("v1", "ml") == "/apis/batch/v1/namespaces/ml/jobs"
    assert RESOURCES[POD].collection("v1", "ml") == "/api/v1/namespaces/ml/pods"
    assert RESOURCES[("kubeflow.org", "MPIJob")].collection("v2beta1") == "/apis/kubeflow.org/v2beta1/mpijobs"
    assert RESOURCES[("kubeflow.org", "MPIJob")].versions == ("v2beta1", "v1")  # MPI Operator, training operator
    assert kinds_to_follow(("trainer.kubeflow.org", "TrainJob")) == (
        ("trainer.kubeflow.org", "TrainJob"),
        ("jobset.x-k8s.io", "JobSet"),
        JOB,
        POD,
    )


def test_parse_time() -> None:
    assert parse_time("2026-11-26T09:00:00Z") == T0
    assert parse_time("not a time") is None
    assert parse_time(None) is None


def test_job_states() -> None:
    pending = observe(job("j", "ml", T0), JOB)
    assert (pending.started, pending.done) == (None, False)
    running = observe(job("j", "ml", T0, startTime=ts(T0 + timedelta(seconds=5)), active=2), JOB)
    assert (running.started, running.done) == (T0 + timedelta(seconds=5), False)
    done = observe(job("j", "ml", T0, **job_complete(T0, T0 + timedelta(minutes=30))), JOB)
    assert (done.done, done.finished, done.outcome) == (True, T0 + timedelta(minutes=30), "Complete")
    failed = observe(job("j", "ml", T0, **job_failed(T0, T0 + timedelta(hours=1))), JOB)
    assert (failed.done, failed.finished, failed.outcome) == (True, T0 + timedelta(hours=1), "Failed")


def test_pytorchjob_conditions() -> None:
    running = pytorchjob("p", "ml", T0, [condition("Created", T0), condition("Running", T0 + timedelta(minutes=2))])
    seen = observe(running, PYTORCHJOB)
    assert (seen.started, seen.done) == (T0 + timedelta(minutes=2), False)
    succeeded = pytorchjob(
        "p",
        "ml",
        T0,
        [
            condition("Created", T0),
            condition("Running", T0 + timedelta(minutes=2), status="False"),
            condition("Succeeded", T0 + timedelta(hours=3)),
        ],
    )
    seen = observe(succeeded, PYTORCHJOB)
    assert (seen.done, seen.finished, seen.outcome) == (True, T0 + timedelta(hours=3), "Succeeded")


def test_rayjob_deployment_status() -> None:
    seen = observe(
        rayjob("r", "ml", T0, jobDeploymentStatus="Complete", startTime=ts(T0), endTime=ts(T0 + timedelta(hours=2))),
        RAYJOB,
    )
    assert (seen.started, seen.done, seen.finished) == (T0, True, T0 + timedelta(hours=2))
    assert not observe(rayjob("r", "ml", T0, jobDeploymentStatus="Running", startTime=ts(T0)), RAYJOB).done


def test_volcano_job_phases() -> None:
    kind = BY_KEY[("batch.volcano.sh", "Job")]

    def volcano(phase: str, at: datetime) -> dict[str, Any]:
        return {"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job", "metadata": {"name": "v", "namespace": "ml"},
                "status": {"state": {"phase": phase, "lastTransitionTime": ts(at)}}}

    assert kind.observe(volcano("Pending", T0)).started is None
    assert kind.observe(volcano("Running", T0)).started == T0
    finished = kind.observe(volcano("Completed", T0 + timedelta(hours=1)))
    assert (finished.done, finished.finished, finished.outcome) == (True, T0 + timedelta(hours=1), "Completed")
    assert kind.observe({"status": {}}).started is None


def test_pods() -> None:
    owner = job("j", "ml", T0)
    assert observe(pod("p", "ml", owner, "Pending", None), POD).started is None
    assert observe(pod("p", "ml", owner, "Running", T0), POD).started == T0
    done = observe(pod("p", "ml", owner, "Succeeded", T0, finished=T0 + timedelta(minutes=9)), POD)
    assert (done.done, done.finished, done.outcome) == (True, T0 + timedelta(minutes=9), "Succeeded")
