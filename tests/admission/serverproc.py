"""Start the real webhook (``gpuquota serve`` in a subprocess, uvicorn, TLS) and talk to it like the API server."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

GPUQUOTA = Path(sys.executable).parent / "gpuquota"

TEST_POLICY = """\
schema: 1
name: webhook-test
version: "1"
effective: 2025-01-01
description: Small caps so the webhook tests can fill them with a few requests.
tiers:
  - name: tier-1
    description: Japan only
    jurisdictions: [JP]
  - name: tier-2
    description: everyone else
    jurisdictions: []
defaultTier: tier-2
unknownJurisdiction:
  action: deny
  message: >-
    the namespace has no jurisdiction: ask a cluster admin to set the Namespace label gpuquota.io/jurisdiction
defaultModel: H100-SXM5-80GB
sharedGpuFraction: 0.5
operations:
  bitLength: 16
  utilisation: 1.0
  unboundedRuntime:
    assume: infinite
rules:
  - id: tenant-cap
    description: tier-2 tenants hold at most 16 H100 SXM at once
    match:
      tiers: [tier-2]
    cap:
      kind: concurrent-tpp
      amount: 253312
    scope: tenant
    action: deny
    warnAt: 0.75
  - id: tier1-soft-cap
    description: tier-1 tenants are warned above 8 H100 SXM
    match:
      tiers: [tier-1]
    cap:
      kind: concurrent-tpp
      amount: 126656
    scope: tenant
    action: warn
  - id: closed-weights-1e26
    description: closed-weight training above 1e26 operations (one tenant, so no other test meets it)
    match:
      tenants: [bigtrain]
      purposes: [training]
      weights: [closed]
    cap:
      kind: workload-operations
      amount: 1.0e+26
    scope: tenant
    action: deny
"""

TENANTS = ["acme:JP", "bigtrain:JP"] + [f"{name}:BR" for name in (
    "allow", "deny", "warn", "dry", "retry", "scale", "delete", "owner", "forged", "kinds", "reload", "bad", "race",
    "crash", "metrics", "audit", "ledgerdown", "tls", "cron", "claims", "labelclaims", "budget",
)]


def tenants_yaml(entries: list[str] = TENANTS) -> str:
    lines = ["tenants:"]
    for entry in entries:
        name, jurisdiction = entry.split(":")
        lines += [f"  - name: {name}", f"    jurisdiction: {jurisdiction}", f"    namespaces: [{name}]"]
    return "\n".join(lines) + "\n"


def verifier(ca_file: Path | None) -> ssl.SSLContext | bool:
    """Verify the server against the test CA only (as the API server does with the webhook's caBundle)."""
    return ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    base_url: str
    ca_file: Path | None
    ledger_url: str
    log_path: Path
    audit_path: Path
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, timeout: float = 10.0) -> httpx.Client:
        client = httpx.Client(base_url=self.base_url, verify=verifier(self.ca_file), timeout=timeout)
        self.clients.append(client)
        return client

    def post(self, body: bytes | dict[str, Any], client: httpx.Client | None = None) -> httpx.Response:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        return (client or self.client()).post("/validate", content=data,
                                               headers={"content-type": "application/json"})

    def review(self, body: dict[str, Any], client: httpx.Client | None = None) -> dict[str, Any]:
        """POST a review, expect an AdmissionReview back, return its ``response``."""
        response = self.post(body, client)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["apiVersion"] == "admission.k8s.io/v1"
        assert answer["kind"] == "AdmissionReview"
        assert answer["response"]["uid"] == body["request"]["uid"]
        result: dict[str, Any] = answer["response"]
        return result

    def metrics(self) -> str:
        return self.client().get("/metrics").text

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)


def start_server(
    workdir: Path,
    *,
    ledger_url: str | None = None,
    policy: Path | str | None = None,
    tenants: Path | None = None,
    tls: tuple[Path, Path] | None = None,
    ca_file: Path | None = None,
    port: int | None = None,
    extra: tuple[str, ...] = (),
    wait_ready: bool = True,
    name: str = "server",
    self_signed: bool = False,
) -> Server:
    """Run ``gpuquota serve``; wait until ``/healthz`` answers over TLS (verified against ``ca_file``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    ledger_url = ledger_url or f"sqlite:///{workdir / 'ledger.db'}"
    log_path = workdir / f"{name}.log"
    audit_path = workdir / f"{name}-audit.jsonl"
    args = [str(GPUQUOTA), "serve", "--host", "127.0.0.1", "--port", str(port), "--ledger", ledger_url,
            "--kube", "none", "--state-dir", str(workdir / "state"), "--audit-log", str(audit_path),
            "--reload-interval", "0.2", "--ping-interval", "0.3", "--log-level", "warning"]
    if policy is not None:
        args += ["--policy", str(policy)]
    if tenants is not None:
        args += ["--tenants", str(tenants)]
    if tls is not None:
        args += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    elif self_signed:
        ca_file = workdir / "state" / "tls" / "tls.crt"  # generated on first start; it is its own CA
    else:
        args += ["--insecure"]
    args += list(extra)
    env = dict(os.environ)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    secure = tls is not None or self_signed
    server = Server(proc, f"{'https' if secure else 'http'}://127.0.0.1:{port}", ca_file if secure else None,
                    ledger_url, log_path, audit_path)
    if wait_ready:
        try:
            wait_healthy(server)
        except BaseException:
            server.stop()  # never leave a server behind a failed start
            raise
    return server


def wait_healthy(server: Server, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if not server.alive():
            raise RuntimeError(f"gpuquota serve exited with {server.proc.returncode}:\n{server.log()}")
        if server.ca_file is None or server.ca_file.exists():  # a self-signed certificate appears at start
            try:
                with httpx.Client(base_url=server.base_url, verify=verifier(server.ca_file), timeout=2.0) as client:
                    if client.get("/healthz").status_code == 200:
                        return
            except httpx.TransportError:
                pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"gpuquota serve did not become healthy:\n{server.log()}")
        time.sleep(0.05)


def wait_for(predicate: Any, timeout_s: float = 10.0, interval_s: float = 0.05) -> Any:
    """Poll until ``predicate()`` is truthy; return its value (or the last one on timeout)."""
    deadline = time.monotonic() + timeout_s
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval_s)
        value = predicate()
    return value
