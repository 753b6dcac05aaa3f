"""The Grafana dashboard and the alerts query only what gpuquota really exports. The dashboard is valid JSON of the
expected shape, every PromQL expression in it parses (promtool checks it as a recording rule), and every metric
name it (or an alert) uses is served by a running `gpuquota serve` or by the node agent's or the reconciler's
registry, and documented in docs/metrics.md."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import generate_latest

from gpuquota.inventory.agent_metrics import AgentMetrics
from gpuquota.kueue.metrics import KueueCheckMetrics
from gpuquota.reconcile.metrics import ReconcilerMetrics
from tests.deploy.chart import find, render
from tests.deploy.promql import exposition_names, metric_names
from tests.deploy.tools import CHART, REPO, run, tool

DASHBOARD = CHART / "dashboards" / "gpuquota.json"
METRICS_DOC = REPO / "docs" / "metrics.md"
# Grafana's variables, replaced by what Grafana would put there before the expressions are parsed.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$namespace": "gpuquota-system",
                     "$cluster": ".*"}
PROMETHEUS_OWN = {"up"}  # series Prometheus itself writes for every target


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _expressions() -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana's variables substituted) for every query of the dashboard."""
    found = []
    for panel in _panels(_dashboard()):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            found.append((panel["title"], expr))
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def served_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Series names of a real `gpuquota serve --insecure` (a /metrics scrape) and of the node agent's and the
    reconciler's registries (their /metrics endpoints are tested in tests/inventory and tests/reconcile)."""
    state = tmp_path_factory.mktemp("serve")
    port = _free_port()
    proc = subprocess.Popen(
        [tool("gpuquota"), "serve", "--insecure", "--host", "127.0.0.1", "--port", str(port), "--kube", "none",
         "--ledger", f"sqlite:///{state}/ledger.sqlite3", "--state-dir", str(state), "--audit-log", "off"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                output = proc.communicate()[0]
                pytest.fail(f"gpuquota serve did not come up:\n{output}")
            time.sleep(0.2)
        scrape = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert scrape.status_code == 200
        webhook = exposition_names(scrape.text)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    agent = exposition_names(generate_latest(AgentMetrics("gpu-node-1").registry).decode())
    reconciler = exposition_names(generate_latest(ReconcilerMetrics().registry).decode())
    assert "gpuquota_admission_requests_total" in webhook
    assert "gpuquota_agent_last_publish_timestamp_seconds" in agent
    assert "gpuquota_reconciler_leader" in reconciler
    kueue = exposition_names(generate_latest(KueueCheckMetrics().registry).decode())
    return webhook | agent | reconciler | kueue


def _documented_names() -> set[str]:
    text = "\n".join(f"# TYPE {name} {kind}" for name, kind in
                     re.findall(r"^\| `(gpuquota_[a-z_]+)` \| (counter|gauge|histogram)", METRICS_DOC.read_text(),
                                flags=re.MULTILINE))
    return exposition_names(text)


def test_metric_name_extraction() -> None:
    assert metric_names('sum by (le) (rate(a_bucket{x="y", z=~"a|b"}[5m]))') == {"a_bucket"}
    assert metric_names("histogram_quantile(0.99, sum by (le, kind) (rate(d_bucket[5m] offset 1h)))") == {"d_bucket"}
    assert metric_names('time() - max by (node) (ts{namespace="n"}) > 900') == {"ts"}
    joined = "(sum(rate(a_total[5m])) or vector(0)) / on(pod) group_left(node) b > bool 2"
    assert metric_names(joined) == {"a_total", "b"}
    assert metric_names('x{le="+Inf"} and y unless z') == {"x", "y", "z"}
    assert metric_names("up == 0") == {"up"}


def test_exposition_names() -> None:
    text = ("# TYPE r_total counter\nr_total{a=\"b\"} 1\n# TYPE h histogram\n# TYPE g gauge\ng 2\n"
            "# TYPE c counter\n")
    assert exposition_names(text) == {"r_total", "h_bucket", "h_sum", "h_count", "g", "c_total"}


def test_dashboard_has_the_expected_shape() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "gpuquota-overview"
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert "gpuquota_policy_info" in variables["namespace"]["definition"]
    # one cluster of a fleet, or all (series of a process without --cluster-name have no label: ".*" matches them)
    assert variables["cluster"]["definition"] == "label_values(gpuquota_policy_info, cluster)"
    assert (variables["cluster"]["includeAll"], variables["cluster"]["allValue"]) == (True, ".*")
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard):
        grid = panel["gridPos"]
        assert 0 <= grid["x"] < 24, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"stat", "timeseries", "bargauge", "table"}
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert 'namespace="$namespace", cluster=~"$cluster"' in target["expr"], (panel["title"], target["expr"])


def test_dashboard_shows_what_admins_need() -> None:
    expressions = " ".join(expr for _, expr in _expressions())
    titles = [title for title, _ in _expressions()]
    at = 'namespace="gpuquota-system", cluster=~".*"'  # every query: the namespace and the cluster(s) chosen
    for scope in ("tier", "jurisdiction", "tenant"):  # usage vs caps per scope
        assert f'gpuquota_cap_utilisation_ratio{{{at}, scope="{scope}"}}' in expressions
        assert f'gpuquota_cap{{{at}, scope="{scope}", metric="concurrent-tpp"}}' in expressions
        assert f'gpuquota_reserved_tpp{{{at}, scope="{scope}"}}' in expressions
    assert "sum by (decision) (rate(gpuquota_admission_requests_total" in expressions
    assert "histogram_quantile(0.99, sum by (le) (rate(gpuquota_admission_duration_seconds_bucket" in expressions
    assert "max by (model) (gpuquota_cluster_capacity_tpp" in expressions
    assert "sum by (class)" in expressions
    assert any("by model and class" in t for t in titles)
    assert f"sum(gpuquota_reconciler_leader{{{at}}})" in expressions  # is anyone settling?
    assert "gpuquota_reconciler_last_sync_timestamp_seconds" in expressions


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    expressions = _expressions()
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(expressions)]}]}
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = run([tool("promtool"), "check", "rules", str(path)])
    assert result.returncode == 0, result.output
    assert f"SUCCESS: {len(expressions)} rules found" in result.output


def test_a_broken_expression_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"record": "dashboard:broken", "expr": "sum by (le (rate(gpuquota_errors_total[5m]))"}]}]}))
    assert run([tool("promtool"), "check", "rules", str(path)]).returncode != 0


def test_dashboard_uses_only_exported_metrics(served_names: set[str]) -> None:
    used = {name for _, expr in _expressions() for name in metric_names(expr)}
    assert used  # the extraction found the queries' metrics
    assert used - served_names == set(), f"the dashboard queries metrics nobody exports: {used - served_names}"
    assert used - _documented_names() == set(), "every metric the dashboard uses is documented in docs/metrics.md"


def test_alerts_use_only_exported_metrics(served_names: set[str]) -> None:
    groups = [*find(render("monitoring-on"), "PrometheusRule")["spec"]["groups"],
              *find(render("kueue"), "PrometheusRule")["spec"]["groups"]]
    used = {name for group in groups for rule in group["rules"] for name in metric_names(rule["expr"])}
    assert "gpuquota_cap_utilisation_ratio" in used
    assert used - served_names - PROMETHEUS_OWN == set()


def test_documented_metrics_are_the_served_ones(served_names: set[str]) -> None:
    """docs/metrics.md is the interface: the running services export exactly the documented gpuquota series."""
    served = {n for n in served_names if n.startswith("gpuquota_")}
    assert _documented_names() == served
