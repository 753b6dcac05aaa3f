"""gpuquota installed into a test cluster the way a developer runs it (docs/development.md): the chart's objects
rendered by helm and applied to the API server, its webhook configuration pointing (``webhook.externalURL``) at a
local ``gpuquota serve`` over TLS with a test CA, which reads the cluster with the chart's own service account and
RBAC. Used by the end-to-end fixtures (tests/e2e/conftest.py) and the admission-overhead benchmark."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from gpuquota.ledger import ReservationRecord, open_ledger
from tests.admission.pki import TestCA, make_ca
from tests.admission.serverproc import GPUQUOTA, Server, free_port, start_server
from tests.cluster import Cluster, Tenant, wait_until
from tests.deploy.tools import CHART, documents, helm

RELEASE = "gq"
NAMESPACE = "gpuquota-system"
WEBHOOK_SA = f"{RELEASE}-gpuquota-webhook"


@dataclass
class Gpuquota:
    """gpuquota installed into ``cluster``: the chart's objects and a local webhook reached through externalURL."""

    cluster: Cluster
    root: Path
    ca: TestCA
    policy: Path
    webhook: Server
    token_file: Path  # the chart's webhook service account, for commands that read the cluster
    objects: list[dict[str, Any]]  # what the chart rendered (and the API server accepted)
    run: str = ""  # suffix of this run's namespaces and nodes: a cluster kept between runs (GPUQUOTA_E2E_CLUSTER)
    # then starts each run with fresh names

    def name(self, base: str) -> str:
        """``base`` made unique to this run (namespaces, nodes)."""
        return f"{base}-{self.run}" if self.run else base

    @property
    def ledger_url(self) -> str:
        return self.webhook.ledger_url

    def reservations(self, namespace: str | None = None) -> list[ReservationRecord]:
        """Active reservations in the webhook's ledger (of ``namespace`` when given)."""
        ledger = open_ledger(self.ledger_url)
        try:
            rows = ledger.active_reservations()
        finally:
            ledger.close()
        return [r for r in rows if namespace is None or r.workload.namespace == namespace]

    def reconcile_once(self, *args: str, admin: bool = False) -> str:
        """One pass of ``gpuquota reconcile --once`` (more options in ``args``) over this cluster and the ledger, as
        the chart's webhook service account (``admin``: with the admin kubeconfig); what it printed."""
        access = ["--kubeconfig", str(self.cluster.kubeconfig)] if admin else self.cluster.api_flags(self.token_file)
        return subprocess.run([str(GPUQUOTA), "reconcile", "--once", "--ledger", self.ledger_url, "--metrics-port",
                               "-1", *access, *args], check=True, capture_output=True, text=True, timeout=60).stdout

    def reviews(self, kind: str) -> float:
        """How many reviews of ``kind`` the webhook has answered (its own counter)."""
        return sum(sample.value for family in text_string_to_metric_families(self.webhook.metrics())
                   for sample in family.samples
                   if sample.name == "gpuquota_admission_requests_total" and sample.labels.get("kind") == kind)

    def audited(self, namespace: str, name: str) -> dict[str, Any]:
        """The webhook's audit line of ``namespace/name``, waited for: the log is flushed every 0.1 s, not per line
        (gpuquota.admission.audit), so a line read at once after the reply may not be on disk yet."""
        def line() -> dict[str, Any] | None:
            lines = (json.loads(text) for text in self.webhook.audit_path.read_text().splitlines())
            return next((rec for rec in lines if rec.get("name") == name and rec.get("namespace") == namespace), None)
        return wait_until(line, what=f"the audit line of {namespace}/{name}")

    def tenant(self, namespace: str, tenant: str, jurisdiction: str) -> Tenant:
        """A tenant namespace (``name(namespace)``) labelled by the admin, with a namespace-admin user
        ``<tenant>-user``."""
        return self.cluster.tenant_namespace(
            self.name(namespace), f"{tenant}-user",
            {"gpuquota.io/tenant": tenant, "gpuquota.io/jurisdiction": jurisdiction})


def render_chart(release: str, values: dict[str, Any], workdir: Path) -> list[dict[str, Any]]:
    values_file = workdir / f"values-{release}.yaml"
    values_file.write_text(yaml.safe_dump(values))
    rendered = helm("template", release, str(CHART), "--namespace", NAMESPACE, "--values", str(values_file))
    if rendered.returncode != 0:
        raise AssertionError(f"helm template failed:\n{rendered.output}")
    return documents(rendered.stdout)


def install_chart(cluster: Cluster, release: str, values: dict[str, Any], workdir: Path) -> list[dict[str, Any]]:
    """Render the chart with ``values`` and apply every object it makes to the API server (server-side apply: the
    dashboard ConfigMap is larger than client-side apply's annotation allows). Returns the objects."""
    docs = render_chart(release, values, workdir)
    cluster.apply(docs, "--server-side", "--force-conflicts")
    return docs


def externally_served(url: str, ca: TestCA, **webhook: Any) -> dict[str, Any]:
    """Chart values that send reviews to ``url``, trusted through ``ca``."""
    ca_b64 = base64.b64encode(ca.ca_file.read_bytes()).decode()
    return {"webhook": {"externalURL": url, "caBundle": ca_b64, **webhook}}


@contextmanager
def install(cluster: Cluster, root: Path, policy_text: str, *, exclude: Sequence[str] = (),
            serve_args: Sequence[str] = (), run: str = "") -> Iterator[Gpuquota]:
    """The chart (release ``RELEASE``) and its local webhook under ``policy_text``; the webhook stops on exit."""
    root.mkdir(parents=True, exist_ok=True)
    ca = make_ca(root / "pki", "e2e")
    tls = ca.issue(root / "pki", "webhook")
    policy = root / "policy.yaml"
    policy.write_text(policy_text)
    port = free_port()
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    objects = install_chart(cluster, RELEASE, externally_served(f"https://127.0.0.1:{port}/validate", ca,
                                                                excludeNamespaces=list(exclude)), root)
    token = cluster.token_file(WEBHOOK_SA, NAMESPACE, root)
    server = start_server(root / "webhook", policy=policy, tls=tls, ca_file=ca.ca_file, port=port, name="webhook",
                          extra=("--kube", "in-cluster", *cluster.api_flags(token), *serve_args))
    try:
        wait_until(lambda: server.client().get("/readyz").status_code == 200, what="the webhook's /readyz")
        yield Gpuquota(cluster, root, ca, policy, server, token, objects, run)
    finally:
        server.stop()
