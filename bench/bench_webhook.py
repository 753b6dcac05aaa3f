"""The webhook under load: one ``gpuquota serve`` process over TLS on loopback, driven by Debian's ``wrk`` with
realistic AdmissionReview bodies, for docs/benchmarks.md ("Webhook").

Scenarios (each after a warm-up; wrk with one thread):
- ``cpu-pod``: a Pod without GPUs (allowed at once, no ledger);
- ``dry-run-pytorchjob``: a 16-GPU PyTorchJob with ``dryRun: true`` (usage read and full decision, nothing written);
- ``owned-pod``: a worker Pod of an admitted PyTorchJob (owner verified once, then cached; nothing reserved);
- ``reserving-pod``: a new 1-GPU Pod per request (new uid and name): usage read, decision, reservation written.

The server watches a local API server holding ``--nodes`` GPU nodes and ``--namespaces`` labelled namespaces, so
its caches are full while it serves; its resident memory is read from /proc after the caches synced and after
the load. ``--profile`` runs the server under pyinstrument for the owned-pod and reserving scenarios instead.

    .venv/bin/python bench/bench_webhook.py                 # all scenarios, 10 s each
    .venv/bin/python bench/bench_webhook.py --profile       # where the time goes (pyinstrument, text report)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.admission.pki, tests.kube.apiserver

from tests.admission.pki import make_ca  # noqa: E402
from tests.admission.serverproc import free_port, verifier  # noqa: E402
from tests.kube.apiserver import ApiState, api_server  # noqa: E402
from tests.pgserver import fresh_ledger_database, postgres_server  # noqa: E402

from gpuquota.ledger import open_ledger  # noqa: E402

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
TENANT_NS = "acme-train"  # examples/tenants.yaml: acme, JP (tier-1 under ai-diffusion-2025)
PRODUCTS = ["NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB", "NVIDIA-L40S", "NVIDIA-L4", "NVIDIA-H200"]
COUNTRIES = ["JP", "BR", "IN", "DE", "FR", "US", "MX", "SG", "AE", "CL"]


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk (Debian package)…", file=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True)
    found = shutil.which("wrk")
    assert found, "wrk could not be installed"
    return found


# --- realistic bodies --------------------------------------------------------------------------------------------

def _managed_fields(manager: str) -> list[dict[str, Any]]:
    return [{"manager": manager, "operation": "Update", "apiVersion": "v1", "time": "2026-11-26T10:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                                                     "f:spec": {"f:containers": {'k:{"name":"train"}': {
                                                         ".": {}, "f:image": {}, "f:resources": {".": {}}}}}}}]


def pod(name: str, namespace: str, gpus: int, *, owner: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A Pod as the API server hands it to admission (managedFields, env, volumes, probes, tolerations: ~4 KB)."""
    resources: dict[str, Any] = {"requests": {"cpu": "16", "memory": "200Gi"},
                                 "limits": {"cpu": "32", "memory": "240Gi"}}
    if gpus:
        resources["limits"]["nvidia.com/gpu"] = str(gpus)
        resources["requests"]["nvidia.com/gpu"] = str(gpus)
    metadata: dict[str, Any] = {
        "name": name, "namespace": namespace, "uid": str(uuid.uuid4()), "creationTimestamp": "2026-11-26T10:00:00Z",
        "labels": {"app": "llm-train", "team": "research", **(labels or {})},
        "annotations": {"gpuquota.io/max-runtime": "72h", "gpuquota.io/purpose": "training",
                        "kubectl.kubernetes.io/last-applied-configuration": "{}"},
        "managedFields": _managed_fields("kubectl-client-side-apply"),
    }
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": metadata,
        "spec": {
            "restartPolicy": "OnFailure", "serviceAccountName": "default", "schedulerName": "default-scheduler",
            "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst", "priority": 0,
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"} if gpus else {},
            "tolerations": ([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}] if gpus else [])
            + [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": 300}],
            "containers": [{
                "name": "train", "image": "nvcr.io/nvidia/pytorch:24.05-py3", "imagePullPolicy": "IfNotPresent",
                "command": ["torchrun", "--nnodes=2", "--nproc-per-node=8", "train.py", "--config=/etc/train/cfg.yaml"],
                "env": [{"name": f"TRAIN_SETTING_{i}", "value": f"value-{i}"} for i in range(12)]
                + [{"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}}],
                "resources": resources,
                "ports": [{"containerPort": 29500, "name": "rdzv", "protocol": "TCP"}],
                "readinessProbe": {"tcpSocket": {"port": 29500}, "periodSeconds": 10, "timeoutSeconds": 1},
                "volumeMounts": [
                    {"name": "dshm", "mountPath": "/dev/shm"}, {"name": "cfg", "mountPath": "/etc/train"},
                    {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                     "readOnly": True}],
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
            }],
            "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Gi"}},
                        {"name": "cfg", "configMap": {"name": "train-config", "defaultMode": 420}},
                        {"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        ]}}],
        },
        "status": {"phase": "Pending", "qosClass": "Burstable"},
    }


def pytorch_job(name: str, namespace: str, workers: int) -> dict[str, Any]:
    template = pod("template", namespace, 8)
    spec = {k: v for k, v in template["spec"].items() if k not in ("restartPolicy",)}
    return {
        "apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                     "annotations": {"gpuquota.io/max-runtime": "72h"}, "managedFields": _managed_fields("kubectl")},
        "spec": {"runPolicy": {"activeDeadlineSeconds": 259200, "cleanPodPolicy": "None"},
                 "pytorchReplicaSpecs": {
                     "Master": {"replicas": 1, "restartPolicy": "OnFailure",
                                "template": {"metadata": {"labels": {"app": "llm"}}, "spec": copy.deepcopy(spec)}},
                     "Worker": {"replicas": workers, "restartPolicy": "OnFailure",
                                "template": {"metadata": {"labels": {"app": "llm"}}, "spec": copy.deepcopy(spec)}}}},
    }


OPERATOR = "system:serviceaccount:kubeflow:training-operator"  # who creates a PyTorchJob's pods


def review(obj: dict[str, Any], *, uid: str | None = None, dry_run: bool = False,
           user: str = "alice@example.com") -> dict[str, Any]:
    api_version = obj["apiVersion"]
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    version = api_version.rpartition("/")[2]
    gvk = {"group": group, "version": version, "kind": obj["kind"]}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid or str(uuid.uuid4()), "kind": gvk, "requestKind": gvk,
        "resource": {"group": group, "version": version, "resource": obj["kind"].lower() + "s"},
        "name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"], "operation": "CREATE",
        "userInfo": {"username": user, "uid": "b1e2", "groups": ["research", "system:authenticated"]},
        "object": obj, "oldObject": None, "dryRun": dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions", "fieldManager": "kubectl"}}}


# --- the cluster the server watches ----------------------------------------------------------------------------

def cluster_state(nodes: int, namespaces: int) -> ApiState:
    state = ApiState()
    state.page_size = 500
    for i in range(nodes):
        product = PRODUCTS[i % len(PRODUCTS)]
        name = f"gpu-node-{i:05d}"
        state.put(f"/api/v1/nodes/{name}", {"metadata": {"name": name, "labels": {
            "nvidia.com/gpu.product": product, "nvidia.com/gpu.count": "8", "kubernetes.io/hostname": name,
            "node.kubernetes.io/instance-type": "p5.48xlarge", "topology.kubernetes.io/zone": f"zone-{i % 3}"}},
            "status": {"capacity": {"nvidia.com/gpu": "8", "cpu": "192", "memory": "2Ti"}}})
    for i in range(namespaces):
        name = f"tenant-ns-{i:05d}"
        state.put(f"/api/v1/namespaces/{name}", {"metadata": {"name": name, "labels": {
            "gpuquota.io/tenant": f"tenant-{i // 5:04d}", "gpuquota.io/jurisdiction": COUNTRIES[i % len(COUNTRIES)],
            "kubernetes.io/metadata.name": name, "team": f"team-{i % 40}"}}})
    state.put("/api/v1/namespaces/kubeflow", {"metadata": {"name": "kubeflow", "labels": {  # no tenant's
        "kubernetes.io/metadata.name": "kubeflow"}}})
    return state


# --- running ---------------------------------------------------------------------------------------------------

def rss_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = int(line.split()[1])
    return out


# The issue's targets: (reviews per second, connections).
TARGETS = {"cpu-pod": (6000, 16), "dry-run-pytorchjob": (6000, 16), "owned-pod": (6000, 16),
           "reserving-pod": (1500, 32)}
KINDS = {"cpu-pod": "Pod", "dry-run-pytorchjob": "PyTorchJob", "owned-pod": "Pod", "reserving-pod": "Pod"}


def histogram(text: str, kind: str) -> dict[float, float]:
    """Cumulative bucket counts of ``gpuquota_admission_duration_seconds`` for one kind."""
    out: dict[float, float] = {}
    prefix = "gpuquota_admission_duration_seconds_bucket{"
    for line in text.splitlines():
        if line.startswith(prefix) and f'kind="{kind}"' in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def server_p99_ms(before: dict[float, float], after: dict[float, float]) -> float | None:
    """Upper bound of the bucket holding the 99th percentile of the server-side time between two scrapes."""
    delta = {le: after.get(le, 0.0) - before.get(le, 0.0) for le in after}
    total = delta.get(float("inf"), 0.0)
    if total <= 0:
        return None
    for le in sorted(delta):
        if delta[le] >= 0.99 * total:
            return le * 1000
    return None


def wrk(url: str, script: Path, args: list[str], connections: int, seconds: int) -> dict[str, Any]:
    cmd = [ensure_wrk(), "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script), url, "--",
           *args]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("{")][-1]
    result: dict[str, Any] = json.loads(line)
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def start(workdir: Path, port: int, tls: tuple[Path, Path], api: tuple[str, Path], profile: Path | None,  # noqa: PLR0917
          extra: list[str], ledger_url: str) -> subprocess.Popen[bytes]:
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--ledger", ledger_url,
            "--tenants", str(ROOT / "examples" / "tenants.yaml"), "--tls-cert", str(tls[0]), "--tls-key", str(tls[1]),
            "--audit-log", str(workdir / "audit.jsonl"), "--state-dir", str(workdir / "state"),
            "--log-level", "warning", "--kube", "in-cluster", "--api-server", api[0], "--token-file", str(api[1]),
            "--trusted-controller", OPERATOR, *extra]
    if profile is None:
        cmd = [str(Path(sys.executable).parent / "gpuquota"), *args]
    else:
        code = ("import sys; from pyinstrument import Profiler; from gpuquota.cli import main\n"
                "p = Profiler(interval=0.0002, async_mode='disabled'); p.start()\n"
                f"sys.argv = ['gpuquota', *{args!r}]\n"
                "try:\n    main()\nexcept SystemExit:\n    pass\n"
                f"p.stop(); open({str(profile)!r}, 'w').write(p.output_text(unicode=True, show_all=False))\n")
        cmd = [sys.executable, "-c", code]
    log = (workdir / "server.log").open("wb")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(base: str, ca: Path, expect_gpus: int, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> float:
    started = time.monotonic()
    with httpx.Client(base_url=base, verify=verifier(ca), timeout=5) as client:
        while time.monotonic() - started < timeout_s:
            assert proc.poll() is None, "server exited"
            try:
                if client.get("/readyz").status_code == 200:
                    text = client.get("/metrics").text
                    gpus = sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
                               if ln.startswith("gpuquota_cluster_gpus{"))
                    if gpus >= expect_gpus:
                        return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    raise RuntimeError("server caches did not sync in time")


def run_scenario(base: str, scraper: httpx.Client, *, body: Path, name: str, mode: str, connections: int,
                 seconds: int) -> dict[str, Any]:
    """One wrk run after a warm-up: ``max`` as fast as the server answers (closed loop), ``paced`` at the target
    rate (the wait after each response calibrated until the achieved rate matches)."""
    reserving = name == "reserving-pod"
    script = BENCH / ("bench_webhook_reserving.lua" if reserving else "bench_webhook_replay.lua")
    rate, _ = TARGETS[name]
    cycle_ms = connections * 1000 / rate  # each connection's request interval at the target rate
    args = [str(body), *([f"warm-{mode}"] if reserving else [])]
    warm = wrk(base, script, args, connections, 2)
    if mode == "paced":  # wait after each response = interval − latency, corrected from the achieved rate
        pause = max(0.0, cycle_ms - warm["mean_us"] / 1000)
        for attempt in range(3):
            if reserving:
                args[1] = f"calibrate-{attempt}"
            probe = wrk(base, script, [*args, f"pace={pause:.3f}"], connections, 2)
            pause = max(0.0, pause + cycle_ms - connections * 1000 / max(probe["rps"], 1.0))
        args.append(f"pace={pause:.3f}")
    if reserving:
        args[1] = f"run-{mode}"
    before = histogram(scraper.get("/metrics").text, KINDS[name])
    result = wrk(base, script, args, connections, seconds)
    after = histogram(scraper.get("/metrics").text, KINDS[name])
    result["connections"] = connections
    result["server_p99_ms_le"] = server_p99_ms(before, after)
    if mode == "paced":
        result["offered_rps"] = rate
    return result


def main() -> None:  # noqa: PLR0915 - one linear script: set up, run, report
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--namespaces", type=int, default=5_000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--only", nargs="*", help="run only these scenarios")
    parser.add_argument("--serve-args", default="", help="extra `gpuquota serve` arguments (quoted)")
    parser.add_argument("--postgresql", action="store_true",
                        help="ledger on a throwaway PostgreSQL server (tests/pgserver.py) instead of SQLite")
    opts = parser.parse_args()
    ensure_wrk()
    RESULTS.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="gpuquota-bench-webhook-"))
    ca = make_ca(workdir / "pki", "bench")
    tls = ca.issue(workdir / "pki", "serving")
    state = cluster_state(opts.nodes, opts.namespaces)
    token = workdir / "token"
    token.write_text(state.token)
    port = free_port()
    base = f"https://127.0.0.1:{port}"
    profile = RESULTS / "webhook-profile.txt" if opts.profile else None
    bodies = workdir / "bodies"
    bodies.mkdir()
    report: dict[str, Any] = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_before": os.getloadavg(),
        "seconds": opts.seconds, "nodes": opts.nodes, "namespaces": opts.namespaces, "serve_args": opts.serve_args,
    }
    with contextlib.ExitStack() as stack:
        if opts.postgresql:
            ledger_url = stack.enter_context(fresh_ledger_database(stack.enter_context(postgres_server())))
        else:
            ledger_url = f"sqlite:///{workdir / 'ledger.db'}"
        report["ledger"] = "postgresql" if opts.postgresql else "sqlite"
        api_url = stack.enter_context(api_server(state))
        proc = start(workdir, port, tls, (api_url, token), profile, opts.serve_args.split(), ledger_url)
        try:
            report["sync_s"] = round(wait_ready(base, ca.ca_file, opts.nodes * 8, proc), 2)
            report["rss_after_sync_kib"] = rss_kib(proc.pid)
            with httpx.Client(base_url=base, verify=verifier(ca.ca_file), timeout=5) as client:
                trainer = pytorch_job("bench-trainer", TENANT_NS, workers=1)
                answer = client.post("/validate", json=review(trainer)).json()["response"]
                assert answer["allowed"], answer
                owner = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "name": "bench-trainer",
                         "uid": trainer["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
                owned = pod("bench-trainer-worker-0", TENANT_NS, 8, owner=owner, labels={
                    "training.kubeflow.org/job-name": "bench-trainer",
                    "training.kubeflow.org/operator-name": "pytorchjob-controller"})
                samples = {
                    "cpu-pod": review(pod("web-0", TENANT_NS, 0)),
                    "dry-run-pytorchjob": review(pytorch_job("dry", TENANT_NS, workers=1), dry_run=True),
                    "owned-pod": review(owned, user=OPERATOR),
                    "reserving-pod": review(pod("__NAME__", TENANT_NS, 1), uid="__UID__"),
                }
                for name, body in samples.items():
                    data = json.dumps(body, separators=(",", ":"))
                    (bodies / f"{name}.json").write_text(data)
                    report.setdefault("body_bytes", {})[name] = len(data)
                    if name != "reserving-pod":
                        answer = client.post("/validate", content=data).json()["response"]
                        assert answer["allowed"], (name, answer)
            scenarios = [(name, conns) for name, (_, conns) in TARGETS.items() if not opts.only or name in opts.only]
            with httpx.Client(base_url=base, verify=verifier(ca.ca_file), timeout=5) as scraper:
                for name, connections in scenarios:
                    for mode in ("max", "paced"):
                        result = run_scenario(base, scraper, body=bodies / f"{name}.json", name=name, mode=mode,
                                              connections=connections, seconds=opts.seconds)
                        report.setdefault("scenarios", {})[f"{name}/{mode}"] = result
                        print(f"{name:20s} {mode:6s} c={connections:<3d} {result['rps']:8.0f} req/s  "
                              f"p50 {result['p50_us'] / 1000:.2f} ms  p99 {result['p99_us'] / 1000:.2f} ms  "
                              f"server p99 ≤ {result['server_p99_ms_le']} ms  errors {result['errors_status']}",
                              flush=True)
            report["rss_after_load_kib"] = rss_kib(proc.pid)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
        if "reserving-pod/max" in report.get("scenarios", {}):
            ledger = open_ledger(ledger_url)
            try:
                reserved = sum(1 for r in ledger.reservations() if r.workload.name.startswith("job-run-max-"))
            finally:
                ledger.close()
            report["reserving_reservations_written"] = reserved  # ≥ answered: requests in flight at the end too
            report["reserving_requests_answered"] = report["scenarios"]["reserving-pod/max"]["requests"]
    print(json.dumps(report, indent=2))
    name = "webhook-profile" if opts.profile else ("webhook-postgresql" if opts.postgresql else "webhook")
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2))
    if profile is not None:
        print(f"profile: {profile}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
