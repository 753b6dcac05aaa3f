"""The webhook watching a cluster (a local API server speaking the Kubernetes wire format): tenants and
jurisdictions from Namespace labels, followed live, and the GPU model of selector-less pods from the node
inventory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gpuquota.catalog import load_catalog
from tests.admission.conftest import Setup, cluster_server, namespace_object
from tests.admission.reviews import gpu_pod, review
from tests.admission.serverproc import Server, wait_for
from tests.kube.apiserver import ApiState

A100_TPP = 4992
STRONGEST_TPP = load_catalog().strongest.tpp  # what an unreadable claim's devices count as


def _node(name: str, product: str, count: int) -> dict[str, Any]:
    return {"kind": "Node", "apiVersion": "v1", "metadata": {"name": name, "labels": {
        "nvidia.com/gpu.product": product, "nvidia.com/gpu.count": str(count)}}}


@pytest.fixture(scope="module")
def cluster(setup: Setup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, ApiState]]:
    tmp_path = tmp_path_factory.mktemp("cluster")
    state = ApiState()
    state.put("/api/v1/namespaces/from-labels", namespace_object("from-labels", {"gpuquota.io/jurisdiction": "BR"}))
    state.put("/api/v1/namespaces/relabelled", namespace_object("relabelled", {"team": "ml"}))
    state.put("/api/v1/namespaces/acme", namespace_object("acme", {"gpuquota.io/jurisdiction": "CN"}))
    for index in range(3):
        state.put(f"/api/v1/nodes/gpu-{index}", _node(f"gpu-{index}", "NVIDIA-A100-SXM4-80GB", 8))
    with cluster_server(setup, tmp_path, state) as server:
        yield server, state


def test_jurisdiction_comes_from_the_namespace_label(cluster: tuple[Server, ApiState]) -> None:
    server, _ = cluster
    allowed = server.review(review(gpu_pod("p", "from-labels", 1)))
    assert allowed["allowed"] is True
    assert allowed["auditAnnotations"]["tier"] == "tier-2"
    denied = server.review(review(gpu_pod("p2", "from-labels", 40)))
    assert denied["allowed"] is False
    assert "tenant-cap" in denied["status"]["message"]


def test_namespace_label_overrides_the_tenants_file(cluster: tuple[Server, ApiState]) -> None:
    server, _ = cluster
    answer = server.review(review(gpu_pod("p", "acme", 1), dry_run=True))  # file: JP (tier-1); label: CN
    assert answer["auditAnnotations"]["tier"] == "tier-2"  # CN is tier-2 in the test profile (no tier-3 there)


def test_label_changes_are_followed_without_a_restart(cluster: tuple[Server, ApiState]) -> None:
    server, state = cluster
    first = server.review(review(gpu_pod("p", "relabelled", 1), dry_run=True))
    assert first["allowed"] is False
    assert "gpuquota.io/jurisdiction" in first["status"]["message"]
    state.put("/api/v1/namespaces/relabelled",
              namespace_object("relabelled", {"team": "ml", "gpuquota.io/jurisdiction": "JP"}))
    assert wait_for(lambda: server.review(review(gpu_pod("p", "relabelled", 1), dry_run=True))["allowed"])


def test_a_pod_without_a_gpu_selector_counts_as_the_clusters_gpu(cluster: tuple[Server, ApiState]) -> None:
    server, _ = cluster
    pod = gpu_pod("anywhere", "from-labels", 2)
    del pod["spec"]["nodeSelector"]
    answer = server.review(review(pod, dry_run=True))
    assert answer["auditAnnotations"]["tpp"] == str(2 * A100_TPP)  # not the profile's default H100
    text = server.metrics()
    assert 'gpuquota_cluster_gpus{class="3A090.a",model="A100-SXM4-80GB"} 24.0' in text
    assert f'gpuquota_cluster_capacity_tpp{{class="3A090.a",model="A100-SXM4-80GB"}} {24 * A100_TPP}.0' in text


def _claimed_pod(name: str, template: str) -> dict[str, Any]:
    pod = gpu_pod(name, "from-labels", 1)
    del pod["spec"]["nodeSelector"]
    pod["spec"]["containers"][0]["resources"] = {"claims": [{"name": "gpus"}]}
    pod["spec"]["resourceClaims"] = [{"name": "gpus", "resourceClaimTemplateName": template}]
    return pod


def test_dra_claims_are_read_from_the_watched_templates(cluster: tuple[Server, ApiState]) -> None:
    """A pod's ResourceClaimTemplate comes from the webhook's watch: two GPUs of the cluster's model. A template it
    has not seen counts as a full node of the strongest GPUs (never zero), until the template appears."""
    server, state = cluster
    template = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
                "metadata": {"namespace": "from-labels", "name": "two-gpus"},
                "spec": {"spec": {"devices": {"requests": [
                    {"name": "gpus", "exactly": {"deviceClassName": "gpu.nvidia.com", "count": 2}}]}}}}
    unseen = server.review(review(_claimed_pod("early", "two-gpus"), dry_run=True))
    assert unseen["auditAnnotations"]["tpp"] == f"{8 * STRONGEST_TPP:.0f}"
    assert any("could not be read" in w for w in unseen.get("warnings", []))
    state.put("/apis/resource.k8s.io/v1/resourceclaimtemplates/two-gpus", template)
    assert wait_for(lambda: server.review(review(_claimed_pod("p", "two-gpus"), dry_run=True))
                    ["auditAnnotations"]["tpp"] == str(2 * A100_TPP))
