"""The values matrix the chart is checked with, and its renders (``helm template``), each rendered once per run."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate.utils as kv_utils
import yaml

from tests.deploy.tools import documents, helm, template_args

OLDEST_KUBE = "1.30.0"
NEWEST_KUBE = kv_utils.latest_version()  # the newest schema kubernetes-validate bundles
KUBE_VERSIONS = (OLDEST_KUBE, NEWEST_KUBE)

MONITORING_API = "monitoring.coreos.com/v1"
PG_SECRET = "gpuquota-ledger"


@dataclass(frozen=True)
class Case:
    name: str
    values: dict[str, Any]
    api_versions: tuple[str, ...] = ()
    monitoring: bool = False  # Prometheus Operator objects expected
    postgres: bool = False
    tags: frozenset[str] = field(default_factory=frozenset)


REPO_PROFILES = Path(__file__).resolve().parents[2] / "src" / "gpuquota" / "policy" / "profiles"
# An operator's own profile supplied inline: the bundled "unrestricted" one under another name, stopping runs past
# their declared runtime (so the reconciler is granted patch/delete on the workload kinds).
INLINE_PROFILE: dict[str, Any] = {
    **yaml.safe_load((REPO_PROFILES / "unrestricted.yaml").read_text()),
    "name": "acme-internal",
    "description": "An operator's own profile, supplied inline through the chart.",
    "overrun": {"action": "stop"},
}

# An operator's local GPU catalog: one part this release does not know, with its figure and source.
LOCAL_CATALOG: dict[str, Any] = {
    "schema": 2,
    "sources": [{"id": "acme-x1-datasheet", "title": "Acme X1 accelerator datasheet, rev. 3"}],
    "gpus": [{
        "key": "Acme-X1", "vendor": "nvidia", "names": ["NVIDIA Acme X1"], "labels": ["NVIDIA-Acme-X1"],
        "dense": {"fp8": {"tflops": 9000, "source": "acme-x1-datasheet", "confidence": "P"}},
        "source": "operator's row",
    }],
}

TENANTS: list[dict[str, Any]] = [
    {"name": "acme", "jurisdiction": "JP", "namespaces": ["acme-train", "acme-dev"], "exemptions": []},
    {"name": "initech", "jurisdiction": "IN", "namespaces": ["initech"],
     "exemptions": [{"kind": "veu", "id": "VEU-2025-0042", "expires": "2027-12-31"}]},
]

CASES: tuple[Case, ...] = (
    Case("defaults", {}),
    Case("ha-postgresql", {"ledger": {"postgresql": {"existingSecret": PG_SECRET}}}, postgres=True),
    Case("ha-postgresql-url-3-replicas",
         {"ledger": {"postgresql": {"url": "postgresql://gq:s3cret@db.example:5432/gpuquota?sslmode=require"}},
          "webhook": {"replicas": 3, "podAntiAffinity": "hard"}},
         postgres=True),
    Case("cert-manager", {"tls": {"certManager": {"enabled": True}}}),
    Case("cert-manager-cluster-issuer-ha",
         {"tls": {"certManager": {"enabled": True, "issuerRef": {"kind": "ClusterIssuer", "name": "corp-ca"}}},
          "ledger": {"postgresql": {"existingSecret": PG_SECRET}}},
         postgres=True),
    Case("agent-off", {"agent": {"enabled": False}, "reconciler": {"enabled": False}}),
    Case("monitoring-on", {"monitoring": {"labels": {"release": "kube-prometheus-stack"}}},
         api_versions=(MONITORING_API,), monitoring=True),
    Case("monitoring-forced",
         {"monitoring": {"force": True}, "agent": {"runtimeClassName": "nvidia"},
          "ledger": {"postgresql": {"existingSecret": PG_SECRET}}},
         monitoring=True, postgres=True),
    Case("gpu-table",
         {"webhook": {"gpuResources": {
             "extra": [{"name": "nvidia.com/a100", "vendor": "nvidia", "model": "A100-SXM4-80GB"},
                       {"name": "example.com/vgpu-*", "vendor": "nvidia", "share": "partition", "fraction": 0.25}],
             "deviceClasses": [{"name": "gpu.example.com", "vendor": "nvidia"}],
             "draAllDevices": 4}}}),
    Case("inline-policy-tenants",
         {"policy": {"inline": INLINE_PROFILE}, "tenants": TENANTS, "catalog": {"local": LOCAL_CATALOG},
          "ledger": {"sqlite": {"persistence": {"enabled": False}}},
          "webhook": {"failurePolicy": "Ignore", "timeoutSeconds": 10, "excludeNamespaces": ["monitoring"],
                      "trustedControllers": ["system:serviceaccount:ml-ops:training-operator"]}}),
    Case("kueue", {"kueue": {"enabled": True, "checkName": "compute-caps", "interval": 2}},
         api_versions=(MONITORING_API,), monitoring=True),
    Case("kueue-ha-postgresql", {"kueue": {"enabled": True, "leaderElection": {"enabled": False}},
                                 "clusterName": "eu-west",  # one cluster of a fleet on a shared ledger
                                 "ledger": {"postgresql": {"existingSecret": PG_SECRET}},
                                 "networkPolicy": {"apiServerCIDRs": ["10.0.0.10/32"]}}, postgres=True),
    Case("mtls-networkpolicy",
         {"webhook": {"clientCASecret": "apiserver-client-ca", "metrics": {"auth": "none", "port": 9443}},
          "networkPolicy": {"apiServerCIDRs": ["10.0.0.10/32", "fd00::10/128"],
                            "webhookFrom": [{"ipBlock": {"cidr": "172.16.0.0/28"}}],
                            "metricsFrom": [{"namespaceSelector": {"matchLabels": {
                                "kubernetes.io/metadata.name": "monitoring"}}}]}}),
)
CASE_NAMES = tuple(case.name for case in CASES)
_BY_NAME = {case.name: case for case in CASES}

_WORK = Path(tempfile.mkdtemp(prefix="gpuquota-chart-"))
atexit.register(shutil.rmtree, _WORK, ignore_errors=True)


def case(name: str) -> Case:
    return _BY_NAME[name]


@cache
def render_text(name: str, kube_version: str = OLDEST_KUBE) -> str:
    c = _BY_NAME[name]
    values_file = _WORK / f"{name}-{kube_version}.yaml"
    result = helm(*template_args(c.values, values_file, kube_version, c.api_versions))
    assert result.returncode == 0, f"helm template failed for {name}:\n{result.output}"
    (_WORK / f"{name}-{kube_version}.rendered.yaml").write_text(result.stdout)
    return result.stdout


def rendered_file(name: str, kube_version: str = OLDEST_KUBE) -> Path:
    render_text(name, kube_version)
    return _WORK / f"{name}-{kube_version}.rendered.yaml"


@cache
def render(name: str, kube_version: str = OLDEST_KUBE) -> list[dict[str, Any]]:
    """The rendered objects (shared between tests: read them, never change them)."""
    return documents(render_text(name, kube_version))


def values_file(name: str) -> Path:
    render_text(name)
    return _WORK / f"{name}-{OLDEST_KUBE}.yaml"


def find(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    names = [d["metadata"]["name"] for d in matches]
    assert len(matches) == 1, f"expected one {kind} named *{name_suffix}, found {names}"
    return matches[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(workload name, pod spec) of every Deployment and DaemonSet."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "DaemonSet"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]
