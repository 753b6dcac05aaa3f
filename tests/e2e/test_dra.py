"""Dynamic Resource Allocation through the real API server (1.37 serves ``resource.k8s.io/v1`` without any
driver): a ResourceClaimTemplate, and a tenant's pods that name it. The API server accepts both; the chart's
conditions send the pods (what their claims hold is not in the pod); the webhook reads the template from its own
list-and-watch (the chart's RBAC lets its service account list and watch claims) and counts the template's devices
per pod — admitted within the cap, refused beyond it, never counted as zero."""

from __future__ import annotations

from typing import Any

from tests.cluster import wait_until
from tests.e2e.install import Gpuquota

# TEST_POLICY: a tier-2 tenant holds at most 16 H100 SXM (the profile's default model: no node says otherwise).


def _template(name: str, namespace: str, count: int) -> dict[str, Any]:
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"spec": {"devices": {"requests": [
                {"name": "gpus", "exactly": {"deviceClassName": "gpu.nvidia.com", "count": count}}]}}}}


def _pod(name: str, template: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "train", "image": "registry.k8s.io/pause:3.10",
                                     "resources": {"claims": [{"name": "gpus"}]}}],
                     "resourceClaims": [{"name": "gpus", "resourceClaimTemplateName": template}]}}


def test_pods_with_a_claim_template_are_counted_through_the_api_server(gpuquota: Gpuquota) -> None:
    tenant = gpuquota.tenant("e2e-dra", "draco", "BR")
    ns = tenant.namespace
    created = gpuquota.cluster.apply([_template("two-gpus", ns, 2), _template("twenty-gpus", ns, 20)])
    assert created.returncode == 0, created.output
    before = gpuquota.reviews("Pod")
    # Until its watch has the template, the webhook counts a claim as a full node of the strongest GPUs (refused
    # here): a dry run shows when the template is in its view.
    wait_until(lambda: tenant.apply(_pod("probe", "two-gpus"), "--dry-run=server").ok,
               what="the webhook's view of the ResourceClaimTemplate")
    admitted = tenant.apply(_pod("trainer", "two-gpus"))
    assert admitted.ok, admitted.output
    assert gpuquota.reviews("Pod") > before  # sent by the chart's conditions: the pod names a claim
    (held,) = [r for r in gpuquota.reservations(ns) if r.workload.name == "trainer"]
    assert held.gpus == 2
    refused = tenant.apply(_pod("too-big", "twenty-gpus"))
    assert not refused.ok
    assert f"Pod {ns}/too-big denied" in refused.stderr, refused.output
    assert [r.workload.name for r in gpuquota.reservations(ns)] == ["trainer"]
