"""Only the API server may call the webhook: the chart's NetworkPolicy (on by default) admits the webhook port from
the control plane's addresses only, the metrics port from the configured scrapers; mutual TLS and the metrics port
reach the webhook's arguments."""

from __future__ import annotations

from typing import Any

from tests.deploy.chart import find, render


def _ingress(name: str) -> dict[str, dict[str, Any]]:
    policy = find(render(name), "NetworkPolicy", "-webhook")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    webhook = find(render(name), "Deployment", "-webhook")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= webhook["spec"]["template"]["metadata"][
        "labels"].items()
    return {rule["ports"][0]["port"]: rule for rule in policy["spec"]["ingress"]}


def test_by_default_nobody_but_known_control_plane_addresses_reach_the_webhook_port() -> None:
    rules = _ingress("defaults")
    # rendered offline, the `kubernetes` Endpoints cannot be looked up and no CIDR is set: no rule opens the port
    assert "https" not in rules
    assert "from" not in rules["metrics"]  # the metrics port is authenticated instead
    assert {p["port"] for p in rules["metrics"]["ports"]} == {"metrics", "recon-metrics"}


def test_the_webhook_port_admits_the_configured_control_plane_only() -> None:
    rules = _ingress("mtls-networkpolicy")
    assert rules["https"]["from"] == [{"ipBlock": {"cidr": "10.0.0.10/32"}}, {"ipBlock": {"cidr": "fd00::10/128"}},
                                      {"ipBlock": {"cidr": "172.16.0.0/28"}}]
    assert rules["metrics"]["from"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring"}}}]


def test_mutual_tls_and_the_metrics_port_reach_the_webhook() -> None:
    docs = render("mtls-networkpolicy")
    pod = find(docs, "Deployment", "-webhook")["spec"]["template"]["spec"]
    webhook = next(c for c in pod["containers"] if c["name"] == "webhook")
    assert "--client-ca=/etc/gpuquota/client-ca/ca.crt" in webhook["args"]
    assert "--metrics-port=9443" in webhook["args"]
    assert "--metrics-auth=none" in webhook["args"]
    assert {"name": "metrics", "containerPort": 9443, "protocol": "TCP"} in webhook["ports"]
    volume = next(v for v in pod["volumes"] if v["name"] == "client-ca")
    assert volume["secret"]["secretName"] == "apiserver-client-ca"
    service = find(docs, "Service", "-webhook")
    assert {"name": "metrics", "port": 9443, "targetPort": "metrics", "protocol": "TCP"} in service["spec"]["ports"]
    defaults = next(c for c in find(render("defaults"), "Deployment", "-webhook")["spec"]["template"]["spec"][
        "containers"] if c["name"] == "webhook")
    assert "--metrics-auth=kubernetes" in defaults["args"]  # authenticated unless turned off
    assert not any(a.startswith("--client-ca") for a in defaults["args"])
