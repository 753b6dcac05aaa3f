"""Metrics authentication against the real API server: ``gpuquota serve --metrics-port --metrics-auth kubernetes``
with the chart's webhook service account (whose ClusterRole may create TokenReviews and SubjectAccessReviews)
serves /metrics to a service account bound to the chart's ``metrics-reader`` ClusterRole, and refuses another
service account (403), a forged token (401) and no token (401)."""

from __future__ import annotations

import httpx

from tests.admission.serverproc import free_port, start_server, verifier
from tests.cluster import wait_until
from tests.e2e.install import NAMESPACE, RELEASE, Gpuquota


def test_only_a_bound_service_account_reads_the_metrics(gpuquota: Gpuquota) -> None:
    cluster = gpuquota.cluster
    reader, other = gpuquota.name("prometheus"), gpuquota.name("notebook")
    cluster.apply([
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": reader, "namespace": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": other, "namespace": NAMESPACE}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": f"{reader}-metrics"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": f"{RELEASE}-gpuquota-metrics-reader"},
         "subjects": [{"kind": "ServiceAccount", "name": reader, "namespace": NAMESPACE}]},
    ])
    tls = gpuquota.ca.issue(gpuquota.root / "pki", "metrics")
    port = free_port()
    server = start_server(gpuquota.root / "metrics-auth", policy=gpuquota.policy, tls=tls,
                          ca_file=gpuquota.ca.ca_file, name="metrics-auth",
                          extra=("--kube", "in-cluster", *cluster.api_flags(gpuquota.token_file),
                                 "--metrics-port", str(port), "--metrics-auth", "kubernetes"))
    try:
        def scrape(token: str | None) -> int:
            headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
            with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=verifier(gpuquota.ca.ca_file),
                              timeout=10) as client:
                return client.get("/metrics", headers=headers).status_code

        wait_until(lambda: scrape(None) == 401, what="the metrics port")
        assert scrape(cluster.token(reader, NAMESPACE)) == 200
        assert scrape(cluster.token(other, NAMESPACE)) == 403
        assert scrape("not-a-token") == 401
    finally:
        server.stop()
