"""The webhook down or slow, seen by a real API server: GPU workloads are refused (failurePolicy Fail) and CPU pods
pass (the matchConditions never send them). A second release of the chart judges only ``OUTAGE_NAMESPACE``, through
its own local webhook, which these tests stop (SIGSTOP: accepts connections, never answers) and kill."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from tests.admission.serverproc import Server, free_port, start_server, tenants_yaml
from tests.cluster import Tenant
from tests.e2e.conftest import OUTAGE_NAMESPACE
from tests.e2e.install import Gpuquota, externally_served, install_chart
from tests.e2e.manifests import pod

TIMEOUT_S = 2


@pytest.fixture(scope="module")
def outage(gpuquota: Gpuquota) -> Iterator[tuple[Tenant, Server]]:
    root = gpuquota.root / "outage"
    root.mkdir()
    port = free_port()
    namespace = gpuquota.name(OUTAGE_NAMESPACE)
    values = externally_served(f"https://127.0.0.1:{port}/validate", gpuquota.ca, timeoutSeconds=TIMEOUT_S,
                               namespaceSelectorExpressions=[{"key": "kubernetes.io/metadata.name",
                                                              "operator": "In", "values": [namespace]}])
    docs = install_chart(gpuquota.cluster, "gqo", values, root)
    tenants = root / "tenants.yaml"
    tenants.write_text(tenants_yaml([f"{namespace}:JP"]))
    server = start_server(root / "webhook", policy=gpuquota.policy, tenants=tenants, ca_file=gpuquota.ca.ca_file,
                          tls=gpuquota.ca.issue(root, "webhook"), port=port, name="outage")
    tenant = gpuquota.tenant(OUTAGE_NAMESPACE, "outage", "JP")
    try:
        yield tenant, server
    finally:
        server.proc.send_signal(signal.SIGCONT)
        server.stop()
        vwc = next(d for d in docs if d["kind"] == "ValidatingWebhookConfiguration")
        gpuquota.cluster.kubectl("delete", "validatingwebhookconfiguration", vwc["metadata"]["name"])


def test_a_slow_webhook_times_out_gpu_pods_are_refused_cpu_pods_pass(outage: tuple[Tenant, Server]) -> None:
    tenant, server = outage
    assert tenant.apply(pod("gpu-before", gpus=1)).ok  # the route works while the webhook answers
    server.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        refused = tenant.apply(pod("gpu-slow", gpus=1))
        took = time.monotonic() - started
        assert not refused.ok
        assert 'failed calling webhook "pods.gpuquota.io"' in refused.stderr, refused.output
        assert TIMEOUT_S <= took < TIMEOUT_S + 10  # the API server gave up after timeoutSeconds
        cpu = tenant.apply(pod("cpu-slow"))
        assert cpu.ok, cpu.output
    finally:
        server.proc.send_signal(signal.SIGCONT)


def test_a_webhook_that_is_down_refuses_gpu_pods_and_lets_cpu_pods_pass(outage: tuple[Tenant, Server]) -> None:
    tenant, server = outage
    server.stop()
    refused = tenant.apply(pod("gpu-down", gpus=1))
    assert not refused.ok
    assert 'failed calling webhook "pods.gpuquota.io"' in refused.stderr, refused.output
    assert "connection refused" in refused.stderr, refused.output
    cpu = tenant.apply(pod("cpu-down"))
    assert cpu.ok, cpu.output
