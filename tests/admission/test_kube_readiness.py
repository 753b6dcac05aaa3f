"""The webhook reaches the cluster through ``--kubeconfig`` (and ``--context``), and a watch its credential may not
make shows in ``/readyz`` and ``gpuquota_kube_watch_*`` — naming the watch — until the permission comes back."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.admission.conftest import Setup, namespace_object
from tests.admission.serverproc import start_server, wait_for
from tests.kube.apiserver import ApiState, api_server, with_kube_system

FORBIDDEN = ('{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,'
             '"message":"nodes is forbidden: User \\"system:serviceaccount:gq:webhook\\" cannot list resource '
             '\\"nodes\\" in API group \\"\\" at the cluster scope"}')


def test_a_forbidden_node_watch_makes_the_webhook_unready_until_rbac_is_fixed(setup: Setup, tmp_path: Path) -> None:
    state = with_kube_system(ApiState())
    state.put("/api/v1/namespaces/acme-train", namespace_object("acme-train", {"gpuquota.io/tenant": "acme"}))
    state.fail["/api/v1/nodes"] = (403, FORBIDDEN)
    with api_server(state) as url:
        config = tmp_path / "kubeconfig"
        config.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "wrong",
            "clusters": [{"name": "dev", "cluster": {"server": url}},
                         {"name": "elsewhere", "cluster": {"server": "http://127.0.0.1:9"}}],
            "users": [{"name": "webhook", "user": {"token": state.token}}],
            "contexts": [{"name": "dev", "context": {"cluster": "dev", "user": "webhook"}},
                         {"name": "wrong", "context": {"cluster": "elsewhere", "user": "webhook"}}],
        }))
        server = start_server(tmp_path / "srv", policy=setup.policy, tenants=setup.tenants, tls=setup.tls,
                              ca_file=setup.ca.ca_file,
                              extra=("--kube", "in-cluster", "--kubeconfig", str(config), "--context", "dev"))
        try:
            client = server.client()
            ready = wait_for(lambda: (r := client.get("/readyz")).status_code == 503
                             and any("watch nodes" in p for p in r.json()["problems"]) and r)
            assert ready, server.log()
            [problem] = [p for p in ready.json()["problems"] if "watch nodes" in p]
            assert "forbidden" in problem
            assert "cannot list resource" in problem
            metrics = server.metrics()
            assert 'gpuquota_kube_watch_up{watch="nodes"} 0.0' in metrics
            assert 'gpuquota_kube_watch_up{watch="namespaces"} 1.0' in metrics
            assert 'gpuquota_kube_watch_failures_total{reason="forbidden",watch="nodes"}' in metrics

            del state.fail["/api/v1/nodes"]  # the ClusterRole gets its rule back
            assert wait_for(lambda: client.get("/readyz").status_code == 200, timeout_s=30), server.log()
            assert 'gpuquota_kube_watch_up{watch="nodes"} 1.0' in server.metrics()
            assert server.alive()
        finally:
            server.stop()
