"""A real Kubernetes control plane for end-to-end tests: ``scripts/cluster up`` (etcd, kube-apiserver and
kube-controller-manager built from source) and the few things tests do with it — kubectl as the admin or as a
tenant (impersonated, so the webhook sees a real ``userInfo``), apply manifests, read objects back, mint
service-account tokens, patch pod status where no kubelet runs.

The cluster is reached through its admin kubeconfig (``Cluster.kubeconfig``), so any client works: kubectl, the
official ``kubernetes`` package, or gpuquota's own commands (``Cluster.api_flags``). Fixtures live in
tests/e2e/conftest.py; one cluster serves a whole pytest run."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tests.deploy import tools

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = REPO / "scripts" / "cluster"
T = TypeVar("T")

Manifest = Mapping[str, Any]


class KubectlError(AssertionError):
    """kubectl failed where the test expected success; the message carries its command and output."""


@dataclass(frozen=True)
class Result(tools.Result):
    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def warnings(self) -> list[str]:
        """The admission warnings kubectl printed (``Warning: …`` lines on stderr), without the prefix."""
        return [line.removeprefix("Warning: ") for line in self.stderr.splitlines() if line.startswith("Warning: ")]


def wait_until(predicate: Callable[[], T | None], timeout_s: float = 30.0, interval_s: float = 0.1,
               what: str = "the condition") -> T:
    """Poll ``predicate`` until it returns a truthy value and return it; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what} (last: {value!r})")
        time.sleep(interval_s)


def _env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


@dataclass(frozen=True)
class Cluster:
    """A running control plane made by ``scripts/cluster up NAME``."""

    name: str
    apiserver: str
    kubeconfig: Path
    ca_file: Path
    kubectl_bin: Path
    bin_dir: Path

    @classmethod
    def up(cls, name: str, timeout_s: float = 1800) -> Cluster:
        """Start (or find) cluster ``name``; builds the binaries first if this machine has none (minutes)."""
        proc = subprocess.run([str(CLUSTER_SCRIPT), "up", name], capture_output=True, text=True, check=False,
                              timeout=timeout_s, cwd=REPO)
        if proc.returncode != 0:
            raise RuntimeError(f"scripts/cluster up {name} failed ({proc.returncode}):\n{proc.stderr}")
        return cls.of(name)

    @classmethod
    def of(cls, name: str) -> Cluster:
        env = _env_file(REPO / "var" / "cluster" / name / "cluster.env")
        return cls(name, env["APISERVER"], Path(env["KUBECONFIG"]), Path(env["CA_FILE"]), Path(env["KUBECTL"]),
                   Path(env["BIN_DIR"]))

    def down(self) -> None:
        subprocess.run([str(CLUSTER_SCRIPT), "down", self.name], capture_output=True, check=False, timeout=60,
                       cwd=REPO)

    # -- kubectl ----------------------------------------------------------------------------------------------

    def kubectl(self, *args: str, as_user: str | None = None, as_groups: Sequence[str] = (),
                stdin: str | None = None, check: bool = True, timeout_s: float = 60) -> Result:
        """Run kubectl as the admin, or impersonating ``as_user`` (and ``as_groups``) like ``kubectl --as``."""
        argv = [str(self.kubectl_bin), "--kubeconfig", str(self.kubeconfig)]
        if as_user is not None:
            argv += [f"--as={as_user}", *(f"--as-group={group}" for group in as_groups)]
        proc = subprocess.run([*argv, *args], input=stdin, capture_output=True, text=True, check=False,
                              timeout=timeout_s, env={**os.environ, "KUBECTL_COMMAND_HEADERS": "false"})
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and not result.ok:
            raise KubectlError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{result.output}")
        return result

    def apply(self, manifests: Manifest | Iterable[Manifest], *args: str, as_user: str | None = None,
              check: bool = True) -> Result:
        """``kubectl apply -f -`` of one manifest or several (``args``: ``--dry-run=server``, ``--server-side`` …)."""
        docs = [manifests] if isinstance(manifests, Mapping) else list(manifests)
        text = yaml.safe_dump_all([dict(doc) for doc in docs], sort_keys=False)
        return self.kubectl("apply", "-f", "-", *args, stdin=text, as_user=as_user, check=check)

    def create(self, manifest: Manifest, *args: str, as_user: str | None = None, check: bool = True) -> Result:
        return self.kubectl("create", "-f", "-", *args, stdin=yaml.safe_dump(dict(manifest)), as_user=as_user,
                            check=check)

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object as JSON, or None when it does not exist."""
        ns = ["-n", namespace] if namespace else []
        result = self.kubectl("get", resource, name, *ns, "-o", "json", "--ignore-not-found", check=True)
        return json.loads(result.stdout) if result.stdout.strip() else None

    def items(self, resource: str, namespace: str | None = None, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["get", resource, "-o", "json", *(["-n", namespace] if namespace else ["-A"])]
        if selector:
            args += ["-l", selector]
        items: list[dict[str, Any]] = json.loads(self.kubectl(*args).stdout)["items"]
        return items

    def patch_status(self, resource: str, name: str, namespace: str, status: Mapping[str, Any]) -> None:
        """Merge-patch the status subresource (no kubelet runs here: tests play it)."""
        self.kubectl("patch", resource, name, "-n", namespace, "--subresource=status", "--type=merge",
                     "-p", json.dumps({"status": dict(status)}))

    # -- identities -------------------------------------------------------------------------------------------

    def token(self, service_account: str, namespace: str, duration: str = "2h") -> str:
        """A bound token of a service account (TokenRequest API, as a projected volume would get one)."""
        result = self.kubectl("create", "token", service_account, "-n", namespace, f"--duration={duration}")
        return result.stdout.strip()

    def token_file(self, service_account: str, namespace: str, directory: Path) -> Path:
        path = directory / f"{namespace}.{service_account}.token"
        path.write_text(self.token(service_account, namespace))
        path.chmod(0o600)
        return path

    def api_flags(self, token_file: Path) -> list[str]:
        """gpuquota's flags that reach this API server with a token (``--api-server --token-file --ca-file``)."""
        return ["--api-server", self.apiserver, "--token-file", str(token_file), "--ca-file", str(self.ca_file)]

    def tenant_namespace(self, namespace: str, user: str, labels: Mapping[str, str]) -> Tenant:
        """A namespace labelled by the admin (tenant, jurisdiction) and a user who is namespace-admin there (the
        ``admin`` ClusterRole, as a provider would grant a customer)."""
        self.apply([
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": dict(labels)}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "tenant-admin", "namespace": namespace},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
             "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]},
        ])
        wait_until(lambda: self.get("serviceaccount", "default", namespace), what=f"{namespace}'s default SA")
        return Tenant(self, namespace, user)


@dataclass(frozen=True)
class Tenant:
    """A tenant's user acting in its own namespace through impersonation (``kubectl --as``)."""

    cluster: Cluster
    namespace: str
    user: str

    def kubectl(self, *args: str, check: bool = False, stdin: str | None = None) -> Result:
        return self.cluster.kubectl(*args, "-n", self.namespace, as_user=self.user, stdin=stdin, check=check)

    def apply(self, manifests: Manifest | Iterable[Manifest], *args: str, check: bool = False) -> Result:
        return self.cluster.apply(manifests, "-n", self.namespace, *args, as_user=self.user, check=check)
