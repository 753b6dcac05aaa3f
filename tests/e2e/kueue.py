"""The real Kueue controller manager (built from ``sigs.k8s.io/kueue`` by scripts/build-kueue) run against the test
control plane, out of cluster, as the admin — for the tests of gpuquota's AdmissionCheck (docs/kueue.md).

What this leaves out of a real Kueue install, and why:
- **Kueue's admission webhooks are not registered** with the API server (no ValidatingWebhookConfiguration or
  MutatingWebhookConfiguration objects), because the API server could only reach them through a Service. Kueue's
  mutating webhook is what suspends a Job created with the queue-name label, so the tests create such Jobs
  suspended themselves (``manageJobsWithoutQueueName: false``: other Jobs are left alone, as by default).
  Kueue's validation of its own objects (defaults of ClusterQueue fields etc.) is not applied either; the tests'
  objects are written complete.
- **CRD conversion** (v1beta1 ↔ v1beta2): Kueue's install points its CRDs' conversion at its webhook Service; we
  do the same (Kueue's certificate manager insists on injecting its CA there), so a request for the old version
  v1beta1 would fail — everything here uses v1beta2, the stored version, which needs no conversion.
- Kueue's on-demand visibility API (an aggregated API server) is off; so is its own metrics server
  (``bindAddress: "0"``); its health probe serves readiness on a free port.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml

from tests.admission.serverproc import free_port
from tests.cluster import REPO, Cluster, wait_until
from tests.e2e.crds import module_dir
from tests.e2e.procs import Proc, start

KUEUE_MODULE = "sigs.k8s.io/kueue"
KUEUE_VERSION = "v0.17.0"
KUEUE_NAMESPACE = "kueue-system"
WEBHOOK_SERVICE = "kueue-webhook-service"
WEBHOOK_SECRET = "kueue-webhook-server-cert"
CONVERTED = ("workloads", "localqueues", "clusterqueues", "cohorts", "resourceflavors", "multikueueclusters")


def kueue_binary() -> Path:
    """scripts/build-kueue's binary, built first when this machine has none (minutes)."""
    proc = subprocess.run([str(REPO / "scripts" / "build-kueue"), "--print-dir"], capture_output=True, text=True,
                          check=False, timeout=3600, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/build-kueue failed ({proc.returncode}):\n{proc.stderr}")
    return Path(proc.stdout.strip()) / "kueue"


def install_crds(cluster: Cluster) -> None:
    """Every CRD of Kueue's module (the manager watches MultiKueue and ProvisioningRequest configs too), with the
    conversion settings of Kueue's own install (config/components/crd/patches/webhook_in_*.yaml)."""
    bases = module_dir(KUEUE_MODULE, KUEUE_VERSION) / "config" / "components" / "crd" / "bases"
    args = [arg for path in sorted(bases.glob("*.yaml")) for arg in ("-f", str(path))]
    cluster.kubectl("apply", "--server-side", "--force-conflicts", *args, timeout_s=180)
    conversion = {"spec": {"conversion": {"strategy": "Webhook", "webhook": {
        "clientConfig": {"service": {"namespace": KUEUE_NAMESPACE, "name": WEBHOOK_SERVICE, "path": "/convert"}},
        "conversionReviewVersions": ["v1"]}}}}
    for plural in CONVERTED:
        cluster.kubectl("patch", "crd", f"{plural}.kueue.x-k8s.io", "--type=merge", "-p", json.dumps(conversion))
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=120s", timeout_s=150)


def configuration(workdir: Path, health_port: int, webhook_port: int) -> Path:
    config = {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": KUEUE_NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(workdir / "certs")},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": True, "webhookServiceName": WEBHOOK_SERVICE,
                                   "webhookSecretName": WEBHOOK_SECRET},
        "manageJobsWithoutQueueName": False,
        "integrations": {"frameworks": ["batch/job"]},
        # the on-demand visibility API server needs an in-cluster delegated-authentication setup (and writes its
        # certificate under /visibility): not what these tests are about
        "featureGates": {"VisibilityOnDemand": False},
    }
    path = workdir / "kueue-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def mount_secret(cluster: Cluster, cert_dir: Path, proc: Proc) -> None:
    """Play the kubelet's secret volume: Kueue's certificate manager writes its serving certificate into the
    Secret and then waits for the files to appear in its certDir, as they would in a pod."""
    def filled() -> dict[str, str] | None:
        if not proc.alive():
            raise AssertionError(f"kueue exited:\n{proc.log()[-4000:]}")
        secret = cluster.get("secret", WEBHOOK_SECRET, KUEUE_NAMESPACE) or {}
        data: dict[str, str] = secret.get("data") or {}
        return data if "tls.crt" in data else None
    data = wait_until(filled, timeout_s=60, interval_s=0.5, what="Kueue's webhook certificate in its Secret")
    cert_dir.mkdir(parents=True, exist_ok=True)
    for name in ("ca.crt", "tls.crt", "tls.key"):
        path = cert_dir / name
        path.write_bytes(base64.b64decode(data[name]))
        path.chmod(0o600)


@contextmanager
def run_kueue(cluster: Cluster, workdir: Path) -> Iterator[Proc]:
    """Kueue's manager on this cluster until the block ends; ready when its readiness probe passes."""
    binary = kueue_binary()
    install_crds(cluster)
    cluster.apply([
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KUEUE_NAMESPACE}},
        # Kueue's install ships this Secret empty; its certificate manager fills it (and refuses to start without)
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": WEBHOOK_SECRET, "namespace": KUEUE_NAMESPACE}},
    ])
    workdir.mkdir(parents=True, exist_ok=True)
    health = free_port()
    config = configuration(workdir, health, free_port())
    proc = start("kueue", [f"--config={config}", "--zap-log-level=2"], workdir,
                 env={"KUBECONFIG": str(cluster.kubeconfig)}, program=binary)
    try:
        mount_secret(cluster, workdir / "certs", proc)

        def ready() -> bool:
            if not proc.alive():
                raise AssertionError(f"kueue exited:\n{proc.log()[-4000:]}")
            try:
                return httpx.get(f"http://127.0.0.1:{health}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        wait_until(ready, timeout_s=120, interval_s=0.5, what="Kueue's readiness probe")
        yield proc
    finally:
        proc.stop()
