"""Many clusters, one ledger, on two real control planes: the run's cluster (a) and a second one started here (b,
``scripts/cluster up``), each with its own webhook (``--cluster-name a`` / ``b``) on one PostgreSQL. A tenant at its
cap in a is refused in b; each cluster's reconciler settles only its own reservations; the report shows both; a race
of creates split across both clusters fills the fleet-wide cap exactly and never beyond."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gpuquota.ledger import ReservationRecord, open_ledger
from tests.admission.serverproc import GPUQUOTA, Server, free_port, start_server, tenants_yaml
from tests.cluster import Cluster, Result, Tenant, wait_until
from tests.e2e.conftest import FLEET_NAMESPACE
from tests.e2e.install import NAMESPACE, RELEASE, WEBHOOK_SA, Gpuquota, externally_served, install_chart
from tests.e2e.manifests import pod
from tests.pgserver import fresh_ledger_database, postgres_server


@dataclass
class Member:
    name: str
    cluster: Cluster
    token: Path
    webhook: Server
    tenant: Tenant

    def reconcile_once(self, url: str, *args: str) -> None:
        subprocess.run([str(GPUQUOTA), "reconcile", "--once", "--ledger", url, "--metrics-port", "-1",
                        "--cluster-name", self.name, *args, *self.cluster.api_flags(self.token)],
                       check=True, capture_output=True, timeout=120)


@dataclass
class Fleet:
    url: str
    a: Member
    b: Member

    def active(self) -> list[ReservationRecord]:
        ledger = open_ledger(self.url)
        try:
            return [r for r in ledger.reservations() if r.state.active]
        finally:
            ledger.close()


def _member(name: str, cluster: Cluster, *, token: Path, root: Path, gpuquota: Gpuquota, url: str,
            release: str) -> tuple[Member, list[dict[str, Any]]]:
    """A webhook for ``cluster`` judging only the fleet namespace there, on the shared ledger ``url``."""
    port = free_port()
    namespace = gpuquota.name(FLEET_NAMESPACE)
    values = externally_served(f"https://127.0.0.1:{port}/validate", gpuquota.ca,
                               namespaceSelectorExpressions=[{"key": "kubernetes.io/metadata.name",
                                                              "operator": "In", "values": [namespace]}])
    docs = install_chart(cluster, release, values, root)
    tenants = root / "tenants.yaml"
    tenants.write_text(tenants_yaml([]))
    webhook = start_server(root / "webhook", ledger_url=url, policy=gpuquota.policy, tenants=tenants,
                           ca_file=gpuquota.ca.ca_file, tls=gpuquota.ca.issue(root, "webhook"), port=port, name=name,
                           extra=("--kube", "in-cluster", *cluster.api_flags(token), "--cluster-name", name))
    tenant = cluster.tenant_namespace(namespace, "fleet-user",
                                      {"gpuquota.io/tenant": "fleet-co", "gpuquota.io/jurisdiction": "BR"})
    return Member(name, cluster, token, webhook, tenant), docs


@pytest.fixture(scope="module")
def fleet(gpuquota: Gpuquota) -> Iterator[Fleet]:
    started = time.monotonic()
    second = Cluster.up(f"e2e-b-{os.getpid()}")
    print(f"second control plane up in {time.monotonic() - started:.1f} s")  # measured: docs/development.md
    roots = [gpuquota.root / "fleet-a", gpuquota.root / "fleet-b"]
    for root in roots:
        root.mkdir()
    members: list[Member] = []
    try:
        with postgres_server() as server, fresh_ledger_database(server) as url:
            a, a_docs = _member("a", gpuquota.cluster, token=gpuquota.token_file, root=roots[0], gpuquota=gpuquota,
                                url=url, release="gqf")
            members.append(a)
            second.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
            install_chart(second, RELEASE, {"webhook": {"externalURL": "https://127.0.0.1:1/unused"}}, roots[1])
            b_token = second.token_file(WEBHOOK_SA, NAMESPACE, roots[1])
            b, _ = _member("b", second, token=b_token, root=roots[1], gpuquota=gpuquota, url=url, release=RELEASE)
            members.append(b)
            try:
                yield Fleet(url, a, b)
            finally:
                vwc = next(d for d in a_docs if d["kind"] == "ValidatingWebhookConfiguration")
                gpuquota.cluster.kubectl("delete", "validatingwebhookconfiguration", vwc["metadata"]["name"])
    finally:
        for member in members:
            member.webhook.stop()
        second.down()


def test_a_tenant_at_its_cap_in_one_cluster_is_refused_in_the_other(fleet: Fleet) -> None:
    assert fleet.a.tenant.apply(pod("train-a", gpus=8)).ok
    assert fleet.b.tenant.apply(pod("train-b", gpus=8)).ok  # 16 of the tenant's 16 GPUs, fleet-wide
    refused = fleet.b.tenant.apply(pod("more-b", gpus=1))
    assert not refused.ok
    assert "tenant-cap" in refused.stderr, refused.output
    assert not fleet.a.tenant.apply(pod("more-a", gpus=1)).ok
    assert sorted((r.cluster, r.workload.name) for r in fleet.active()) == [("a", "train-a"), ("b", "train-b")]

    # Each reconciler settles its own cluster's reservations only: b's pass does not release a's (whose pod b
    # never had), nor a's pass b's.
    fleet.b.reconcile_once(fleet.url)
    fleet.a.reconcile_once(fleet.url)
    assert sorted((r.cluster, r.workload.name) for r in fleet.active()) == [("a", "train-a"), ("b", "train-b")]

    # The report covers the fleet: both clusters, with b's refusal.
    today = datetime.now(UTC).date().isoformat()
    report = subprocess.run([str(GPUQUOTA), "report", "--from", today, "--to", today, "--by", "cluster",
                             "--format", "csv", "--ledger", fleet.url], check=True, capture_output=True, text=True,
                            timeout=60).stdout
    rows = {line.split(",")[1]: line for line in report.splitlines()[1:]}
    assert set(rows) == {"a", "b", "(all)"}
    assert rows["b"].startswith("cluster,b,1,1,")  # one admission, one denial in cluster b


def test_a_race_split_across_both_clusters_fills_the_fleet_cap_exactly(fleet: Fleet) -> None:
    """The tenant's cap freed (its pods deleted, each cluster's reconciler releasing its own), then 2-GPU pods
    created at once in both clusters, twice the cap's worth: as many are admitted as fit fleet-wide (8 × 2 of 16),
    every other one is refused by the cap, and the ledger never holds more than the cap."""
    for member, name in ((fleet.a, "train-a"), (fleet.b, "train-b")):
        assert member.tenant.kubectl("delete", "pod", name, "--ignore-not-found").ok

    def released() -> bool:
        for member in (fleet.a, fleet.b):
            member.reconcile_once(fleet.url, "--grace", "1")
        return not fleet.active()

    wait_until(released, timeout_s=60, interval_s=1.0, what="both clusters' reconcilers releasing the deleted pods")

    def create(member: Member, index: int) -> Result:
        return member.tenant.apply(pod(f"race-{member.name}-{index}", gpus=2))

    attempts = [(member, index) for index in range(8) for member in (fleet.a, fleet.b)]
    with ThreadPoolExecutor(max_workers=len(attempts)) as pool:
        results = list(pool.map(lambda attempt: create(*attempt), attempts))
    refused = [r for r in results if not r.ok]
    assert all("tenant-cap" in r.stderr for r in refused), [r.output for r in refused]
    active = fleet.active()
    assert sum(r.gpus for r in active) == 16  # filled exactly, never beyond, across both clusters
    assert len(results) - len(refused) == len(active) == 8
