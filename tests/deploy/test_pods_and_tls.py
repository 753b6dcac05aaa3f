"""Every pod the chart runs is locked down (non-root, no privilege escalation, read-only root, seccomp
RuntimeDefault, no capabilities), the webhook is spread and probed, the agent lands on GPU nodes, RBAC grants what
each component needs and no more, and the webhook's TLS is consistent: the caBundle the API server trusts signs the
certificate the pods serve, for the Service's DNS names."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from gpuquota.policy.loader import bundled_profiles, parse_policy_text
from gpuquota.reconcile.resources import RESOURCES
from gpuquota.tenancy.directory import parse_tenants
from gpuquota.workloads import SCALE_SUBRESOURCES, SUPPORTED_KINDS
from gpuquota.workloads.registry import KINDS
from tests.deploy.chart import CASE_NAMES, case, find, pod_specs, render
from tests.deploy.tools import NAMESPACE


@pytest.mark.parametrize("name", CASE_NAMES)
def test_every_pod_is_locked_down(name: str) -> None:
    specs = list(pod_specs(render(name)))
    assert specs
    for workload, pod in specs:
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, workload
        assert security["runAsUser"] == 10001
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not pod.get("hostNetwork")
        assert not pod.get("hostPID")
        assert not pod.get("hostIPC")
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (workload, container["name"])
            assert sc["privileged"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert "add" not in sc["capabilities"]
            assert container["resources"]["requests"]["memory"]
            assert container["resources"]["limits"]["memory"]
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert "/tmp" in mounts, "Python needs a writable /tmp under a read-only root"
        for volume in pod["volumes"]:
            assert "hostPath" not in volume, (workload, volume["name"])


@pytest.mark.parametrize("name", CASE_NAMES)
def test_webhook_is_probed_and_spread(name: str) -> None:
    docs = render(name)
    deployment = find(docs, "Deployment", "-webhook")
    pod = deployment["spec"]["template"]["spec"]
    webhook = next(c for c in pod["containers"] if c["name"] == "webhook")
    # probes on the metrics port: no client certificate there, and free while the webhook port is busy
    assert webhook["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics", "scheme": "HTTPS"}
    assert webhook["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics", "scheme": "HTTPS"}
    assert webhook["args"][0] == "serve"
    assert "--tls-cert=/etc/gpuquota/tls/tls.crt" in webhook["args"]
    assert "--insecure" not in webhook["args"]
    anti = pod["affinity"]["podAntiAffinity"]
    hard = case(name).values.get("webhook", {}).get("podAntiAffinity") == "hard"
    if hard:
        term = anti["requiredDuringSchedulingIgnoredDuringExecution"][0]
    else:
        term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    policy_arg = next(a for a in webhook["args"] if a.startswith("--policy="))
    if "inline" in case(name).values.get("policy", {}):
        assert policy_arg == "--policy=/etc/gpuquota/policy/profile.yaml"
        assert {"name": "policy", "mountPath": "/etc/gpuquota/policy", "readOnly": True} in webhook["volumeMounts"]
    else:
        assert policy_arg == "--policy=ai-diffusion-2025"


def test_configmap_holds_a_policy_and_tenants_gpuquota_can_load() -> None:
    cm = find(render("inline-policy-tenants"), "ConfigMap", "-config")
    policy = parse_policy_text(cm["data"]["profile.yaml"], "chart ConfigMap")
    assert policy.name == "acme-internal"
    directory = parse_tenants(yaml.safe_load(cm["data"]["tenants.yaml"]), "chart ConfigMap")
    assert {t.name for t in directory.tenants} == {"acme", "initech"}
    assert directory.get("acme") is not None
    defaults = find(render("defaults"), "ConfigMap", "-config")
    assert yaml.safe_load(defaults["data"]["tenants.yaml"]) == {"tenants": []}
    assert "profile.yaml" not in defaults["data"]
    webhook = find(render("defaults"), "Deployment", "-webhook")["spec"]["template"]["spec"]["containers"][0]
    assert next(a for a in webhook["args"] if a.startswith("--policy=")).removeprefix("--policy=") in bundled_profiles()


@pytest.mark.parametrize("name", [n for n in CASE_NAMES if case(n).values.get("agent", {}).get("enabled", True)])
def test_agent_runs_on_gpu_nodes_only(name: str) -> None:
    agent = find(render(name), "DaemonSet", "-agent")
    pod = agent["spec"]["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    keys = {e["key"] for term in terms for e in term["matchExpressions"]}
    assert "nvidia.com/gpu.present" in keys
    assert {"key": "nvidia.com/gpu", "operator": "Exists"} in pod["tolerations"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["NVIDIA_DRIVER_CAPABILITIES"]["value"] == "utility"
    assert container["args"][:2] == ["agent", "--node-name=$(NODE_NAME)"]
    assert "nvidia.com/gpu" not in str(container["resources"])  # it reads NVML without taking a GPU
    runtime = case(name).values.get("agent", {}).get("runtimeClassName")
    assert pod.get("runtimeClassName") == runtime


def test_agent_off_renders_no_agent_objects() -> None:
    docs = render("agent-off")
    assert not [d for d in docs if "-agent" in d["metadata"]["name"]]


def _rules(docs: list[dict[str, Any]], suffix: str) -> list[dict[str, Any]]:
    roles = [d for d in docs if d["kind"] in ("ClusterRole", "Role") and d["metadata"]["name"].endswith(suffix)]
    assert len(roles) == 1
    rules: list[dict[str, Any]] = roles[0]["rules"]
    return rules


def _grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def test_rbac_is_least_privilege() -> None:
    docs = render("ha-postgresql")
    agent = _grants(_rules(docs, "-agent"))
    assert agent == {("", "nodes", "get"), ("", "nodes", "patch")}
    webhook = _grants(_rules(docs, "-webhook"))
    assert {v for _, _, v in webhook} == {"get", "list", "watch", "create"}
    # Beyond Namespaces and Nodes, only `get` on the kinds a /scale request can grow (their parent is judged).
    scalable = {(group, RESOURCES[(group, kind)].plural, "get") for group, kind in SCALE_SUBRESOURCES}
    nodes_and_namespaces = {("", r, v) for r in ("namespaces", "nodes") for v in ("get", "list", "watch")}
    # and `get` on the StatefulSets and Pods an LWS pod's owner chain runs through (one rule over "" and apps)
    lws_chain = {(group, r, "get") for group in ("", "apps") for r in ("pods", "statefulsets")}
    # and `list`/`watch` on the DRA claims a pod names (their devices are counted from the watched view)
    claims = {("resource.k8s.io", r, v) for r in ("resourceclaimtemplates", "resourceclaims")
              for v in ("list", "watch")}
    # and `create` on the two reviews that authenticate and authorise a /metrics scraper's token (nothing else)
    reviews = {("authentication.k8s.io", "tokenreviews", "create"),
               ("authorization.k8s.io", "subjectaccessreviews", "create")}
    # and `get` on what a kind's pods are built from (a TrainJob's TrainingRuntime and ClusterTrainingRuntime)
    referenced = {(r.group, r.plural, "get") for kind in KINDS for r in kind.reads}
    assert ("trainer.kubeflow.org", "clustertrainingruntimes", "get") in referenced
    assert webhook == nodes_and_namespaces | scalable | lws_chain | claims | reviews | referenced
    reader = _rules(docs, "-metrics-reader")
    assert reader == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    reconciler = _grants(_rules(docs, "-reconciler"))
    for group, kind in SUPPORTED_KINDS:
        for verb in ("get", "list", "watch"):
            assert (group, kind.lower() + "s", verb) in reconciler
    assert {v for _, _, v in reconciler} == {"get", "list", "watch"}
    election_rules = _rules(docs, "-reconciler-leader-election")
    election = _grants(election_rules)
    assert election == {("coordination.k8s.io", "leases", verb) for verb in ("get", "create", "update")}
    by_name = [r for r in election_rules if r.get("resourceNames")]  # get/update only on its own Lease
    assert by_name == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                        "resourceNames": ["gq-gpuquota-reconciler"], "verbs": ["get", "update"]}]  # fmt: skip
    everything = agent | webhook | reconciler | election
    assert not [g for g in everything if g[1] in ("secrets", "*") or g[2] in ("*", "escalate", "bind", "impersonate")]
    bindings = {d["metadata"]["name"]: d for d in docs if d["kind"] in ("ClusterRoleBinding", "RoleBinding")}
    reconciler_sa = find(docs, "Deployment", "-reconciler")["spec"]["template"]["spec"]["serviceAccountName"]
    assert bindings["gq-gpuquota-reconciler"]["subjects"][0]["name"] == reconciler_sa


def test_a_stopping_profile_lets_the_reconciler_suspend_or_delete_and_nothing_more() -> None:
    """overrun.action stop (the inline profile of this case): patch on the kinds with a suspend field, delete on the
    others — the reconciler reads the profile it is given (--policy), mounted like the webhook's."""
    docs = render("inline-policy-tenants")
    reconciler = _grants(_rules(docs, "-reconciler"))
    stopping = {(g, r, v) for g, r, v in reconciler if v not in ("get", "list", "watch")}
    expected = {(k.group, k.plural, "patch" if k.suspend is not None else "delete") for k in KINDS}
    assert stopping == expected
    container = next(c for c in find(docs, "Deployment", "-webhook")["spec"]["template"]["spec"]["containers"]
                     if c["name"] == "reconciler")  # fmt: skip
    assert "--policy=/etc/gpuquota/policy/profile.yaml" in container["args"]
    assert {"name": "policy", "mountPath": "/etc/gpuquota/policy", "readOnly": True} in container["volumeMounts"]


def test_sqlite_install_gives_the_webhook_pod_the_reconciler_rights() -> None:
    docs = render("defaults")
    webhook_sa = find(docs, "Deployment", "-webhook")["spec"]["template"]["spec"]["serviceAccountName"]
    bindings = {d["metadata"]["name"]: d for d in docs if d["kind"] in ("ClusterRoleBinding", "RoleBinding")}
    for name in ("gq-gpuquota-reconciler", "gq-gpuquota-reconciler-leader-election", "gq-gpuquota-webhook"):
        assert bindings[name]["subjects"] == [{"kind": "ServiceAccount", "name": webhook_sa, "namespace": NAMESPACE}]


# --- TLS -----------------------------------------------------------------------------------------------------


def _verify(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    key = issuer.public_key()
    assert cert.signature_hash_algorithm is not None
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    else:
        raise AssertionError(f"unexpected CA key type {type(key)}")


@pytest.mark.parametrize("name", [n for n in CASE_NAMES if not case(n).values.get("tls")])
def test_generated_ca_signs_the_served_certificate(name: str) -> None:
    docs = render(name)
    secret = find(docs, "Secret", "-webhook-tls")
    assert secret["type"] == "kubernetes.io/tls"
    ca_pem = base64.b64decode(secret["data"]["ca.crt"])
    ca = x509.load_pem_x509_certificate(ca_pem)
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    vwc = find(docs, "ValidatingWebhookConfiguration")
    for hook in vwc["webhooks"]:
        assert base64.b64decode(hook["clientConfig"]["caBundle"]) == ca_pem  # same CA in every hook and the Secret
    _verify(cert, ca)
    service = find(docs, "Service", "-webhook")["metadata"]["name"]
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert f"{service}.{NAMESPACE}.svc" in names  # the name the API server connects to
    assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=3000)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    pod = find(docs, "Deployment", "-webhook")["spec"]["template"]
    assert pod["metadata"]["annotations"]["checksum/tls"]  # a regenerated certificate rolls the pods
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == secret["metadata"]["name"]


@pytest.mark.parametrize("name", ["cert-manager", "cert-manager-cluster-issuer-ha"])
def test_cert_manager_issues_the_certificate_and_injects_the_ca(name: str) -> None:
    docs = render(name)
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-webhook-tls")]
    certificate = find(docs, "Certificate", "-webhook")
    vwc = find(docs, "ValidatingWebhookConfiguration")
    assert vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"{NAMESPACE}/{certificate['metadata']['name']}")
    assert all("caBundle" not in hook["clientConfig"] for hook in vwc["webhooks"])  # cainjector fills it
    service = find(docs, "Service", "-webhook")["metadata"]["name"]
    assert f"{service}.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    assert "server auth" in certificate["spec"]["usages"]
    pod = find(docs, "Deployment", "-webhook")["spec"]["template"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == certificate["spec"]["secretName"]
    # The webhook reloads renewed certificates itself: no restart on renewal.
    assert "checksum/tls" not in pod["metadata"].get("annotations", {})
    issuer_ref = case(name).values["tls"]["certManager"].get("issuerRef")
    if issuer_ref:
        assert certificate["spec"]["issuerRef"] == issuer_ref
        assert not [d for d in docs if d["kind"] == "Issuer"]
    else:
        ca_issuer = find(docs, "Issuer", "-ca")
        assert certificate["spec"]["issuerRef"] == {"kind": "Issuer", "name": ca_issuer["metadata"]["name"]}
        ca_cert = find(docs, "Certificate", "-ca")
        assert ca_cert["spec"]["isCA"] is True
        assert ca_issuer["spec"]["ca"]["secretName"] == ca_cert["spec"]["secretName"]
