"""The chart's alerts, checked and unit-tested by promtool: the PrometheusRule's spec.groups are extracted into a
plain rules file, then `promtool check rules` and `promtool test rules` (tests/deploy/promtool/alerts_test.yaml:
a cap at 96 % fires, 50 % does not, and one scenario per other alert)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart import find, render
from tests.deploy.tools import helm, run, template_args, tool

UNIT_TESTS = Path(__file__).parent / "promtool" / "alerts_test.yaml"
REQUIRED_ALERTS = {
    "GpuQuotaCapNearlyUsed", "GpuQuotaCapAlmostExhausted", "GpuQuotaDenialSpike", "GpuQuotaWebhookErrors",
    "GpuQuotaAdmissionLatencyHigh", "GpuQuotaLedgerUnreachable", "GpuQuotaLedgerFull", "GpuQuotaAgentNotReporting",
    "GpuQuotaReconcilerNoLeader", "GpuQuotaReconcilerStale", "GpuQuotaUnknownGpuModel",
    "GpuQuotaWorkloadPastDeclaredRuntime",
}


def _groups(name: str = "monitoring-on") -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = find(render(name), "PrometheusRule")["spec"]["groups"]
    return groups


def _alerts(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": _groups()}, sort_keys=False))
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    return tmp_path


def test_promtool_check_rules(rules_dir: Path) -> None:
    result = run([tool("promtool"), "check", "rules", str(rules_dir / "rules.yaml")])
    assert result.returncode == 0, result.output
    assert f"SUCCESS: {len(_alerts(_groups()))} rules found" in result.output


def test_promtool_unit_tests(rules_dir: Path) -> None:
    result = run([tool("promtool"), "test", "rules", UNIT_TESTS.name], cwd=rules_dir)
    assert result.returncode == 0, result.output
    assert "SUCCESS" in result.output


def test_unit_tests_exercise_every_alert() -> None:
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert set(_alerts(_groups())) == tested == fired  # each alert is shown firing, and quiet where it should be


def test_required_alerts_are_shipped_with_severity_and_text() -> None:
    alerts = _alerts(_groups())
    assert set(alerts) >= REQUIRED_ALERTS
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]


def test_a_broken_unit_expectation_is_caught(rules_dir: Path) -> None:
    """The unit tests are not vacuous: claiming that the 50 % cap fires makes promtool fail."""
    tests = yaml.safe_load((rules_dir / UNIT_TESTS.name).read_text())
    quiet = tests["tests"][1]
    quiet["alert_rule_test"][0]["exp_alerts"] = [{"exp_labels": {"severity": "critical", "subject": "initech"}}]
    tests["tests"] = [quiet]
    (rules_dir / "broken_test.yaml").write_text(yaml.safe_dump(tests))
    result = run([tool("promtool"), "test", "rules", "broken_test.yaml"], cwd=rules_dir)
    assert result.returncode != 0
    assert "GpuQuotaCapAlmostExhausted" in result.output


def test_thresholds_and_scope_follow_the_values(tmp_path: Path) -> None:
    scoped = _alerts(_groups())
    assert 'namespace="gpuquota-system"' in scoped["GpuQuotaCapAlmostExhausted"]["expr"]
    assert "> 0.95" in scoped["GpuQuotaCapAlmostExhausted"]["expr"]
    forced = _alerts(_groups("monitoring-forced"))  # forced without the API: the same alerts
    assert forced.keys() == scoped.keys()
    values = {"monitoring": {"force": True, "prometheusRule": {"capCriticalRatio": 0.9, "scopeToNamespace": False,
                                                               "alertLabels": {"team": "platform"}}}}
    result = helm(*template_args(values, tmp_path / "v.yaml", "1.30.0"))
    assert result.returncode == 0, result.output
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    custom = _alerts(find(docs, "PrometheusRule")["spec"]["groups"])
    assert "> 0.9" in custom["GpuQuotaCapAlmostExhausted"]["expr"]
    assert "namespace=" not in custom["GpuQuotaCapAlmostExhausted"]["expr"]
    assert all(rule["labels"]["team"] == "platform" for rule in custom.values())
    (tmp_path / "custom.yaml").write_text(yaml.safe_dump({"groups": find(docs, "PrometheusRule")["spec"]["groups"]}))
    check = run([tool("promtool"), "check", "rules", str(tmp_path / "custom.yaml")])
    assert check.returncode == 0, check.output


def test_reconciler_alerts_follow_the_values_and_need_its_scrape(tmp_path: Path) -> None:
    """Thresholds come from the values; without the reconciler, or without the PodMonitor that scrapes it, there is
    no reconciler group (its series would be absent, and "absent" means no leader)."""
    def alerts(values: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
        result = helm(*template_args({"monitoring": {"force": True, **values.pop("monitoring", {})}, **values},
                                     tmp_path / f"{name}.yaml", "1.30.0"))
        assert result.returncode == 0, result.output
        docs = [d for d in yaml.safe_load_all(result.stdout) if d]
        return _alerts(find(docs, "PrometheusRule")["spec"]["groups"])

    custom = alerts({"monitoring": {"prometheusRule": {"reconcilerStaleSeconds": 1800, "reconcilerNoLeaderFor": "15m"}},
                     "ledger": {"postgresql": {"existingSecret": "gpuquota-ledger"}}}, "custom")
    assert custom["GpuQuotaReconcilerStale"]["expr"].endswith("> 1800")
    assert custom["GpuQuotaReconcilerNoLeader"]["for"] == "15m"
    assert "GpuQuotaReconcilerStale" not in alerts({"reconciler": {"enabled": False}}, "off")
    assert "GpuQuotaReconcilerNoLeader" not in alerts({"monitoring": {"podMonitor": {"enabled": False}}}, "unscraped")
    bad = helm(*template_args({"monitoring": {"force": True, "prometheusRule": {"reconcilerNoLeaderFor": "5 min"}}},
                              tmp_path / "bad.yaml", "1.30.0"))
    assert bad.returncode != 0
    assert "reconcilerNoLeaderFor" in bad.output


KUEUE_UNIT_TESTS = Path(__file__).parent / "promtool" / "kueue_alerts_test.yaml"


def test_kueue_alerts_come_with_the_check_and_pass_their_promtool_tests(tmp_path: Path) -> None:
    assert not {a for a in _alerts(_groups()) if "Kueue" in a}  # not without kueue.enabled
    groups = [g for g in _groups("kueue") if g["name"] == "gpuquota.kueue"]
    assert set(_alerts(groups)) == {"GpuQuotaKueueWorkloadsWaitingOnCap", "GpuQuotaKueueCheckLedgerUnavailable"}
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    shutil.copy(KUEUE_UNIT_TESTS, tmp_path / KUEUE_UNIT_TESTS.name)
    result = run([tool("promtool"), "test", "rules", KUEUE_UNIT_TESTS.name], cwd=tmp_path)
    assert result.returncode == 0, result.output
