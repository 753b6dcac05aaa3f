"""The reconciler as the chart runs it: leader-elected replicas with PostgreSQL, one candidate inside the webhook pod
with SQLite; the Lease it names is the one its Role may touch; the env the elector reads; its /metrics scraped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deploy.chart import CASE_NAMES, OLDEST_KUBE, case, find, render
from tests.deploy.tools import NAMESPACE, documents, helm, template_args


def _reconciler_container(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the pod template's owner, the reconciler container) wherever the install puts it."""
    owner = find(docs, "Deployment", "-reconciler" if case_is_postgres(docs) else "-webhook")
    containers = {c["name"]: c for c in owner["spec"]["template"]["spec"]["containers"]}
    return owner, containers["reconciler"]


def case_is_postgres(docs: list[dict[str, Any]]) -> bool:
    return any(d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-reconciler") for d in docs)


def _flags(args: list[str]) -> dict[str, str]:
    return {a.split("=", 1)[0]: a.split("=", 1)[1] if "=" in a else "" for a in args if a.startswith("--")}


@pytest.mark.parametrize("name", [n for n in CASE_NAMES if case(n).values.get("reconciler", {}).get("enabled", True)])
def test_the_reconciler_campaigns_for_the_lease_its_role_allows(name: str) -> None:
    docs = render(name)
    assert case_is_postgres(docs) == case(name).postgres
    _, container = _reconciler_container(docs)
    assert container["args"][0] == "reconcile"
    flags = _flags(container["args"])
    assert "--leader-elect" in flags
    assert "--no-leader-elect" not in flags
    assert flags["--lease-namespace"] == "$(POD_NAMESPACE)"
    assert (flags["--retry-period"], flags["--renew-deadline"], flags["--lease-duration"]) == ("2", "10", "15")
    role = find(docs, "Role", "-reconciler-leader-election")
    named = [r for r in role["rules"] if r.get("resourceNames")]
    assert named[0]["resourceNames"] == [flags["--lease-name"]]
    assert role["metadata"]["namespace"] == NAMESPACE  # the Lease lives where POD_NAMESPACE points
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"  # its identity on the Lease
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert ports == {"recon-metrics": int(flags["--metrics-port"])}
    assert ports["recon-metrics"] == 9102


@pytest.mark.parametrize("name", ["ha-postgresql", "cert-manager-cluster-issuer-ha"])
def test_with_postgresql_two_replicas_share_the_work_through_the_lease(name: str) -> None:
    reconciler = find(render(name), "Deployment", "-reconciler")
    assert reconciler["spec"]["replicas"] == 2
    affinity = reconciler["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert affinity["preferredDuringSchedulingIgnoredDuringExecution"]  # spread, so one node loss keeps a follower


def test_with_sqlite_the_single_reconciler_still_holds_the_lease() -> None:
    docs = render("defaults")
    assert not case_is_postgres(docs)
    webhook, container = _reconciler_container(docs)
    assert webhook["spec"]["replicas"] == 1
    assert webhook["spec"]["strategy"] == {"type": "Recreate"}
    assert "--leader-elect" in container["args"]


def test_election_can_be_turned_off(tmp_path: Path) -> None:
    values = {"reconciler": {"leaderElection": {"enabled": False}}}
    result = helm(*template_args(values, tmp_path / "values.yaml", OLDEST_KUBE))
    assert result.returncode == 0, result.output
    _, container = _reconciler_container(documents(result.stdout))
    flags = _flags(container["args"])
    assert "--no-leader-elect" in flags
    assert not {f for f in flags if f.startswith("--lease")}


@pytest.mark.parametrize("name", [n for n in CASE_NAMES if case(n).monitoring])
def test_the_pod_monitor_scrapes_whichever_pods_run_the_reconciler(name: str) -> None:
    docs = render(name)
    monitor = find(docs, "PodMonitor", "-reconciler")
    owner, container = _reconciler_container(docs)
    pod_labels = owner["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in {p["name"] for p in container["ports"]}
    assert endpoint["path"] == "/metrics"
    agent_pods = find(docs, "DaemonSet", "-agent")["spec"]["template"]["metadata"]["labels"]
    assert not monitor["spec"]["selector"]["matchLabels"].items() <= agent_pods.items()


@pytest.mark.parametrize("name", [n for n in CASE_NAMES if case(n).values.get("reconciler", {}).get("enabled", True)])
def test_the_reconciler_is_probed_on_its_metrics_port(name: str) -> None:
    """Liveness on /healthz (its work loop turns) wherever it runs; readiness on /readyz (it can use the ledger) only
    in its own Deployment: in the webhook pod (SQLite) a failing reconciler probe would take the webhook out of its
    Service and refuse every GPU workload."""
    docs = render(name)
    _, container = _reconciler_container(docs)
    port_names = {p["name"] for p in container["ports"]}
    for probe in ("startupProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert (get["path"], get["port"]) == ("/healthz", "recon-metrics"), probe
        assert get["port"] in port_names
        assert get.get("scheme", "HTTP") == "HTTP"  # the metrics port is plain HTTP
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 30  # one slow answer does not restart it
    if case(name).postgres:
        readiness = container["readinessProbe"]["httpGet"]
        assert (readiness["path"], readiness["port"]) == ("/readyz", "recon-metrics")
    else:
        assert "readinessProbe" not in container
        webhook = {c["name"]: c for c in find(docs, "Deployment", "-webhook")["spec"]["template"]["spec"]["containers"]}
        assert webhook["webhook"]["readinessProbe"]["httpGet"]["path"] == "/readyz"  # the pod's readiness is its own
