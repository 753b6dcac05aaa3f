"""The webhook counts a TrainJob from the runtime it names, read through the API server (an in-memory one here; the
real one in tests/e2e/test_trainjob_runtime.py), and refuses it — saying what is missing and what to do — when that
runtime cannot be read. The test profile caps a tier-2 (BR) tenant at 16 H100 at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gpuquota.admission.audit import AuditLog
from gpuquota.admission.handler import Admission, Pending
from gpuquota.admission.live import LiveConfig
from gpuquota.admission.metrics import WebhookMetrics
from gpuquota.kube import KubeError
from gpuquota.ledger.memory import MemoryLedger
from gpuquota.testing import FakeKube
from tests.admission.reviews import review
from tests.admission.serverproc import TEST_POLICY, tenants_yaml
from tests.workloads.test_trainjob_runtime import gpus, job, runtime, trainjob

RUNTIME_PATH = "/apis/trainer.kubeflow.org/v1alpha1/clustertrainingruntimes/torch-distributed"
NAMESPACE = "deny"  # BR, tier 2: at most 16 H100 at once
H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}


class Webhook:
    def __init__(self, root: Path, *, cluster: bool = True) -> None:
        (root / "policy.yaml").write_text(TEST_POLICY)
        (root / "tenants.yaml").write_text(tenants_yaml())
        live = LiveConfig(str(root / "policy.yaml"), root / "tenants.yaml")
        self.metrics = WebhookMetrics(lambda: live.current.known_tenants)
        self.ledger = MemoryLedger()
        self.kube = FakeKube()
        self.admission = Admission(live, self.ledger, self.metrics, AuditLog(None),
                                   kube=self.kube if cluster else None)

    def review(self, obj: dict[str, Any], old: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps(review(obj, namespace=NAMESPACE, old=old, operation="UPDATE" if old else "CREATE")).encode()
        result = self.admission.begin(body)
        if not isinstance(result, Pending):
            skipped: dict[str, Any] = json.loads(result.body)["response"]
            return skipped
        assert isinstance(result, Pending)
        assert result.blocking
        response: dict[str, Any] = json.loads(result.run().body)["response"]
        return response

    def reserved_gpus(self) -> float:
        return sum(r.gpus for r, _ in self.ledger.reservations)


@pytest.fixture
def webhook(tmp_path: Path) -> Webhook:
    return Webhook(tmp_path)


def placed_runtime(**kwargs: Any) -> dict[str, Any]:
    rt = runtime(**kwargs)
    rt["spec"]["template"]["spec"]["replicatedJobs"][-1]["template"]["spec"]["template"]["spec"]["nodeSelector"] = H100
    return rt


def test_num_nodes_from_the_runtime_is_refused_at_cap(webhook: Webhook) -> None:
    webhook.kube.put(RUNTIME_PATH, placed_runtime(num_nodes=4))
    answer = webhook.review(trainjob(per_node=8))  # no numNodes: the runtime's 4 × 8 = 32 H100 > 16
    assert answer["allowed"] is False
    assert "32 × H100" in answer["status"]["message"]
    assert webhook.reserved_gpus() == 0


def test_within_the_cap_it_reserves_what_the_runtime_builds(webhook: Webhook) -> None:
    webhook.kube.put(RUNTIME_PATH, placed_runtime(num_nodes=2))
    assert webhook.review(trainjob(per_node=8))["allowed"] is True
    assert webhook.reserved_gpus() == 16


def test_gpus_only_in_the_runtime_are_judged(webhook: Webhook) -> None:
    """The TrainJob shows no GPU at all; its runtime's template asks for 8 per node on 4 nodes."""
    webhook.kube.put(RUNTIME_PATH, placed_runtime(num_nodes=4, node_gpus=8))
    answer = webhook.review(trainjob())
    assert answer["allowed"] is False
    assert "32 × H100" in answer["status"]["message"]


def test_other_gpu_jobs_of_the_runtime_are_judged(webhook: Webhook) -> None:
    extra = [job("reward-model", [{"name": "rm", "resources": gpus(8)}], replicas=2, node_selector=H100)]
    webhook.kube.put(RUNTIME_PATH, placed_runtime(num_nodes=1, extra=extra))
    answer = webhook.review(trainjob(per_node=8))  # 8 trainer + 2 × 8 reward model = 24 > 16
    assert answer["allowed"] is False
    assert "24 × H100" in answer["status"]["message"]


def test_a_cpu_trainjob_passes_unrecorded(webhook: Webhook) -> None:
    webhook.kube.put(RUNTIME_PATH, runtime(num_nodes=8))
    assert webhook.review(trainjob())["allowed"] is True
    assert webhook.ledger.reservations == []
    assert webhook.ledger.decisions == []


def test_a_missing_runtime_is_refused_saying_what_to_do(webhook: Webhook) -> None:
    answer = webhook.review(trainjob(per_node=8))
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 400
    message = answer["status"]["message"]
    assert message == (
        "gpuquota cannot count the GPUs of this TrainJob deny/sft, so it is refused: ClusterTrainingRuntime "
        "torch-distributed (named by spec.runtimeRef) does not exist; create the ClusterTrainingRuntime first, or "
        "name an existing one, then apply again.")
    assert webhook.ledger.reservations == []
    # never cached: once it exists, the next apply reads it
    webhook.kube.put(RUNTIME_PATH, placed_runtime(num_nodes=1))
    assert webhook.review(trainjob(per_node=8))["allowed"] is True


def test_a_namespaced_runtime_is_read_in_the_trainjobs_namespace(webhook: Webhook) -> None:
    path = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/{}/trainingruntimes/custom"
    webhook.kube.put(path.format("other"), placed_runtime(name="custom", num_nodes=1, kind="TrainingRuntime"))
    tj = trainjob(per_node=8, runtime_name="custom", kind="TrainingRuntime")
    answer = webhook.review(tj)
    assert answer["allowed"] is False
    assert "TrainingRuntime deny/custom (named by spec.runtimeRef) does not exist" in answer["status"]["message"]
    webhook.kube.put(path.format(NAMESPACE), placed_runtime(name="custom", num_nodes=4, kind="TrainingRuntime"))
    assert "32 × H100" in webhook.review(tj)["status"]["message"]


def test_a_forbidden_read_is_refused_naming_the_missing_right(webhook: Webhook) -> None:
    webhook.kube.fail_next(KubeError(403, 'clustertrainingruntimes.trainer.kubeflow.org "torch-distributed" is '
                                          "forbidden"))
    answer = webhook.review(trainjob(per_node=8))
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 503
    message = answer["status"]["message"]
    assert "ClusterTrainingRuntime torch-distributed (named by spec.runtimeRef) cannot be read by the gpuquota " \
           "webhook (denied: 403" in message
    assert "grant the webhook's service account get on clustertrainingruntimes.trainer.kubeflow.org" in message
    assert webhook.metrics.registry.get_sample_value("gpuquota_errors_total", {"type": "kube_unavailable"}) == 1


def test_an_unreachable_api_server_is_refused_with_retry(webhook: Webhook) -> None:
    webhook.kube.fail_next(KubeError(0, "connection refused"))
    answer = webhook.review(trainjob(per_node=8))
    assert answer["allowed"] is False
    assert "could not be read from the API server (connection refused); retry in a moment" in \
        answer["status"]["message"]


def test_a_runtime_read_is_reused_for_a_burst(webhook: Webhook) -> None:
    webhook.kube.put(RUNTIME_PATH, placed_runtime(num_nodes=1))
    assert webhook.review(trainjob(per_node=8))["allowed"] is True
    webhook.kube.fail_next(KubeError(0, "connection refused"))  # the second is answered from the cache
    second = trainjob(per_node=8)
    second["metadata"]["name"] = "sft-2"
    assert webhook.review(second)["allowed"] is True
    assert webhook.reserved_gpus() == 16


def test_without_cluster_access_a_trainjob_is_refused(tmp_path: Path) -> None:
    hook = Webhook(tmp_path, cluster=False)
    answer = hook.review(trainjob(num_nodes=1, per_node=1))
    assert answer["allowed"] is False
    assert "this webhook runs without cluster access (--kube none)" in answer["status"]["message"]


def test_an_update_that_changes_nothing_counted_needs_no_runtime(webhook: Webhook) -> None:
    """A TrainJob whose runtime is gone can still lose its finalizer (its deletion is never blocked); a change to
    what it is counted from is judged, and refused while the runtime cannot be read."""
    old = trainjob(per_node=8)
    old["metadata"]["finalizers"] = ["example.com/cleanup"]
    new = trainjob(per_node=8)
    assert webhook.review(new, old)["allowed"] is True
    grown = trainjob(num_nodes=4, per_node=8)
    answer = webhook.review(grown, old)
    assert answer["allowed"] is False
    assert "does not exist" in answer["status"]["message"]
