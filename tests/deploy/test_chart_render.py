"""The chart lints strictly, renders for every case of the values matrix, and every rendered object is valid for
the oldest supported Kubernetes (1.30) and the newest schema kubernetes-validate bundles. Invalid values and an HA
install on SQLite are refused with a clear message."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpuquota.catalog import load_catalog, parse_catalog
from tests.deploy.chart import (
    CASE_NAMES,
    KUBE_VERSIONS,
    MONITORING_API,
    NEWEST_KUBE,
    OLDEST_KUBE,
    case,
    find,
    kinds,
    pod_specs,
    render,
    rendered_file,
    values_file,
)
from tests.deploy.tools import CHART, NAMESPACE, helm, run, template_args, tool

# Custom resources kubernetes-validate has no schema for: it only warns about them. Anything else unknown fails.
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "Certificate", "Issuer", "AdmissionCheck"}


@pytest.mark.parametrize("name", CASE_NAMES)
def test_helm_lint_strict(name: str) -> None:
    result = helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, "--kube-version", OLDEST_KUBE,
                  "--values", str(values_file(name)))
    assert result.returncode == 0, result.output
    assert "0 chart(s) failed" in result.output
    assert "[WARNING]" not in result.output
    assert "[ERROR]" not in result.output


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", CASE_NAMES)
def test_rendered_objects_are_valid_kubernetes(name: str, kube_version: str) -> None:
    path = rendered_file(name, kube_version)
    result = run([tool("kubernetes-validate"), "--strict", "--quiet", "-k", kube_version, str(path)])
    assert result.returncode == 0, result.output
    warned = re.findall(r"Couldn't find schema for kind (\S+) with api version (\S+)", result.output)
    unknown = {kind for kind, _ in warned} - CRD_KINDS
    assert not unknown, f"kubernetes-validate knows no schema for {unknown}: wrong apiVersion?\n{result.output}"
    assert "ERROR" not in result.output


def test_the_newest_schema_is_newer_than_the_oldest() -> None:
    assert tuple(int(x) for x in NEWEST_KUBE.split(".")) > (1, 30, 0)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_every_object_is_labelled_and_namespaced(name: str) -> None:
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "ValidatingWebhookConfiguration",
                      "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "AdmissionCheck"}
    for doc in render(name):
        labels = doc["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/instance") == "gq", doc["metadata"]["name"]
        assert labels.get("app.kubernetes.io/part-of") == "gpuquota"
        if doc["kind"] in cluster_scoped:
            assert "namespace" not in doc["metadata"]
        else:
            assert doc["metadata"]["namespace"] == NAMESPACE, (doc["kind"], doc["metadata"]["name"])


def test_defaults_render_the_single_replica_sqlite_install() -> None:
    docs = render("defaults")
    assert kinds(docs) == sorted([
        "ClusterRole", "ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding",
        "ClusterRoleBinding", "ConfigMap", "ConfigMap", "DaemonSet", "Deployment", "NetworkPolicy",
        "PersistentVolumeClaim", "Role", "RoleBinding",
        "Secret", "Service", "ServiceAccount", "ServiceAccount", "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding", "ValidatingWebhookConfiguration",
    ])
    webhook = find(docs, "Deployment", "-webhook")
    assert webhook["spec"]["replicas"] == 1
    assert webhook["spec"]["strategy"] == {"type": "Recreate"}  # the RWO volume moves with the pod
    containers = {c["name"]: c for c in webhook["spec"]["template"]["spec"]["containers"]}
    assert set(containers) == {"webhook", "reconciler"}  # both write the one SQLite file
    ledger_env = {e["name"]: e for e in containers["reconciler"]["env"]}["GPUQUOTA_LEDGER"]
    assert ledger_env["value"] == "sqlite:////var/lib/gpuquota/ledger.sqlite3"
    pvc = find(docs, "PersistentVolumeClaim", "-ledger")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    volumes = {v["name"]: v for v in webhook["spec"]["template"]["spec"]["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]  # it would block drains on one replica


def test_trusted_controllers_become_webhook_arguments() -> None:
    def args(name: str) -> list[str]:
        webhook = find(render(name), "Deployment", "-webhook")
        containers = {c["name"]: c for c in webhook["spec"]["template"]["spec"]["containers"]}
        return list(containers["webhook"]["args"])

    # explicit trust: the upstream operators' identities by default, nothing trusted for its namespace
    assert [a for a in args("defaults") if a.startswith("--trusted-controller")] == [
        f"--trusted-controller=system:serviceaccount:{sa}" for sa in (
            "kubeflow:training-operator", "kubeflow-system:kubeflow-trainer-controller-manager",
            "jobset-system:jobset-controller-manager", "lws-system:lws-controller-manager",
            "ray-system:kuberay-operator")]
    assert "--trusted-controller=system:serviceaccount:ml-ops:training-operator" in args("inline-policy-tenants")


def test_a_local_catalog_reaches_the_webhook_as_a_mounted_file() -> None:
    docs = render("inline-policy-tenants")
    webhook = find(docs, "Deployment", "-webhook")
    containers = {c["name"]: c for c in webhook["spec"]["template"]["spec"]["containers"]}
    assert "--catalog=/etc/gpuquota/config/catalog.yaml" in containers["webhook"]["args"]
    volumes = {v["name"]: v for v in webhook["spec"]["template"]["spec"]["volumes"]}
    assert {"key": "catalog.yaml", "path": "catalog.yaml"} in volumes["config"]["configMap"]["items"]
    text = find(docs, "ConfigMap", "-config")["data"]["catalog.yaml"]
    merged = parse_catalog(yaml.safe_load(text), "catalog.yaml", base=load_catalog())
    part = merged.get("NVIDIA-Acme-X1")
    assert part is not None
    assert (part.tpp, part.local) == (72_000, True)
    defaults = find(render("defaults"), "Deployment", "-webhook")
    assert not [a for c in defaults["spec"]["template"]["spec"]["containers"] for a in c.get("args", [])
                if a.startswith("--catalog")]


@pytest.mark.parametrize("name", ["ha-postgresql", "ha-postgresql-url-3-replicas", "monitoring-forced"])
def test_ha_installs_use_postgresql_and_several_replicas(name: str) -> None:
    docs = render(name)
    webhook = find(docs, "Deployment", "-webhook")
    replicas = case(name).values.get("webhook", {}).get("replicas", 2)
    assert webhook["spec"]["replicas"] == replicas >= 2
    assert webhook["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pod = webhook["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["webhook"]
    assert "state" not in {v["name"] for v in pod["volumes"]}
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    pdb = find(docs, "PodDisruptionBudget", "-webhook")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == webhook["spec"]["selector"]["matchLabels"]
    reconciler = find(docs, "Deployment", "-reconciler")
    for container in (pod["containers"][0], reconciler["spec"]["template"]["spec"]["containers"][0]):
        ledger = {e["name"]: e for e in container["env"]}["GPUQUOTA_LEDGER"]
        ref = ledger["valueFrom"]["secretKeyRef"]
        secret = find(docs, "Secret", "-ledger") if "url" in str(case(name).values) else None
        if secret is None:
            assert ref == {"name": "gpuquota-ledger", "key": "url"}
        else:
            assert ref == {"name": secret["metadata"]["name"], "key": "url"}
            assert "s3cret" not in yaml.safe_dump(webhook)  # the URL reaches the pod only through the Secret
        assert "--ledger=$(GPUQUOTA_LEDGER)" in container["args"]


def _template(values: dict[str, Any], tmp_path: Path, *extra: str) -> tuple[int, str]:
    args = template_args(values, tmp_path / "values.yaml", OLDEST_KUBE)
    result = helm(*args, *extra)
    return result.returncode, result.output


@pytest.mark.parametrize("values", [
    {"webhook": {"replicas": 2}},
    {"webhook": {"replicas": 3}, "ledger": {"sqlite": {"persistence": {"enabled": False}}}},
])
def test_ha_without_postgresql_is_refused(values: dict[str, Any], tmp_path: Path) -> None:
    code, output = _template(values, tmp_path)
    assert code != 0
    assert "needs a PostgreSQL ledger" in output
    assert "ledger.postgresql.existingSecret" in output  # says how to fix it
    assert "SQLite" in output
    assert "single replica" in output
    # `helm install` itself refuses (helm lint only logs a template's `fail`: it renders leniently by design).
    install = helm("install", "gq", str(CHART), "--dry-run=client", "--namespace", NAMESPACE,
                   "--values", str(tmp_path / "values.yaml"))
    assert install.returncode != 0
    assert "INSTALLATION FAILED" in install.output
    assert "needs a PostgreSQL ledger" in install.output


def test_install_notes_tell_the_admin_how_to_label_a_namespace_and_see_a_denial() -> None:
    result = helm("install", "gq", str(CHART), "--dry-run=client", "--namespace", NAMESPACE)
    assert result.returncode == 0, result.output
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "kubectl label namespace <ns> gpuquota.io/tenant=<tenant> gpuquota.io/jurisdiction=<CC>" in notes
    assert 'admission webhook "workloads.gpuquota.io" denied the request' in notes
    assert f"kubectl -n {NAMESPACE} logs deploy/gq-gpuquota-webhook -c webhook" in notes
    assert "NOTE: one replica" in notes  # the default single-replica install says what it gives up
    assert "docs/deploy.md" in notes


@pytest.mark.parametrize(("values", "complaint"), [
    ({"webhook": {"failurePolicy": "Never"}}, "/webhook/failurePolicy"),
    ({"webhook": {"timeoutSeconds": 31}}, "/webhook/timeoutSeconds"),
    ({"webhook": {"replica": 2}}, "replica"),  # a typo is an error, not a silently ignored key
    ({"tenants": [{"name": "acme", "jurisdiction": "Japan"}]}, "/tenants/0/jurisdiction"),
    ({"ledger": {"sqlite": {"path": "/data/ledger.sqlite3"}}}, "/ledger/sqlite/path"),
    ({"ledger": {"postgresql": {"url": "mysql://db/x"}}}, "/ledger/postgresql/url"),
    ({"runAsUser": 0}, "/runAsUser"),
    ({"webhook": {"podOperations": ["DELETE"]}}, "/webhook/podOperations/0"),
    ({"webhook": {"trustedControllers": [""]}}, "/webhook/trustedControllers/0"),
    ({"reconciler": {"leaderElection": {"leaseDuration": 0}}}, "/reconciler/leaderElection/leaseDuration"),
    ({"reconciler": {"leaderElection": {"renewDeadline": 20}}}, "retryPeriod < renewDeadline < leaseDuration"),
])
def test_values_schema_rejects_bad_values(values: dict[str, Any], complaint: str, tmp_path: Path) -> None:
    code, output = _template(values, tmp_path)
    assert code != 0
    assert complaint in output, output


def test_monitoring_objects_follow_the_api_and_the_force_switch() -> None:
    for name in CASE_NAMES:
        present = {d["kind"] for d in render(name)} & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
        expected = {"ServiceMonitor", "PodMonitor", "PrometheusRule"} if case(name).monitoring else set()
        assert present == expected, name
    assert MONITORING_API in case("monitoring-on").api_versions


def test_service_monitor_scrapes_the_webhook_over_verified_tls() -> None:
    docs = render("monitoring-on")
    monitor = find(docs, "ServiceMonitor", "-webhook")
    service = find(docs, "Service", "-webhook")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] == "metrics"  # the metrics port of its own, not the webhook's
    assert "metrics" in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"  # authenticated
    assert endpoint["scheme"] == "https"
    assert endpoint["path"] == "/metrics"
    assert "insecureSkipVerify" not in endpoint["tlsConfig"]
    assert endpoint["tlsConfig"]["ca"]["secret"]["name"] == find(docs, "Secret", "-webhook-tls")["metadata"]["name"]
    assert endpoint["tlsConfig"]["serverName"] == f"{service['metadata']['name']}.{NAMESPACE}.svc"
    pod_monitor = find(docs, "PodMonitor", "-agent")
    agent = find(docs, "DaemonSet", "-agent")
    agent_labels = agent["spec"]["template"]["metadata"]["labels"]
    assert pod_monitor["spec"]["selector"]["matchLabels"].items() <= agent_labels.items()
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


def test_dashboard_configmap_carries_the_sidecar_label_and_the_json() -> None:
    cm = find(render("defaults"), "ConfigMap", "-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert (CHART / "dashboards" / "gpuquota.json").read_text().strip() == cm["data"]["gpuquota.json"].strip()


def test_a_tenant_change_does_not_restart_the_webhook(tmp_path: Path) -> None:
    """The webhook reloads its mounted policy and tenants; a pod-template change would roll it (and, on SQLite's
    Recreate strategy, leave GPU workloads without a webhook for a moment) every time a tenant is added."""
    templates = []
    for i, tenants in enumerate(([], [{"name": "acme", "jurisdiction": "JP", "namespaces": ["acme"]}])):
        args = template_args({"tenants": tenants, "webhook": {"podAnnotations": {"team": "platform"}}},
                             tmp_path / f"v{i}.yaml", OLDEST_KUBE)
        result = helm(*args, "--show-only", "templates/webhook-deployment.yaml")
        assert result.returncode == 0, result.output
        deployment = yaml.safe_load(result.stdout)
        template = deployment["spec"]["template"]
        assert template["metadata"]["annotations"]["team"] == "platform"
        del template["metadata"]["annotations"]["checksum/tls"]  # a fresh certificate per offline render
        templates.append(template)
    assert templates[0] == templates[1]


@pytest.mark.parametrize(("name", "cluster"), [("kueue-ha-postgresql", "eu-west"), ("kueue", None)])
def test_every_process_on_the_ledger_claims_the_clusters_name(name: str, cluster: str | None) -> None:
    """A fleet's processes count perCluster rules and settle reservations by their cluster's name: one that forgot
    it would claim ``default`` on the shared ledger (refused there) or count against another cluster."""
    seen = set()
    for _, pod in pod_specs(render(name)):
        for container in pod["containers"]:
            command, *flags = container["args"]
            seen.add(command)
            named = [f.partition("=")[2] for f in flags if f.startswith("--cluster-name=")]
            assert named == ([] if cluster is None else [cluster]), (command, flags)
    assert {"serve", "reconcile", "agent", "kueue-check"} <= seen
