"""Admission overhead seen by clients of a real API server (docs/benchmarks.md, "Admission through a real API
server"): GPU pod creates at a fixed rate (open loop) against kube-apiserver built from source
(``scripts/cluster``), with gpuquota's webhook configuration registered and without it, alternating in the same
run; the latency a client sees, and what the webhook adds at p50 and p99.

The webhook is the chart's ValidatingWebhookConfiguration (``webhook.externalURL``) pointing at a local
``gpuquota serve`` over TLS (SQLite ledger, ``ai-diffusion-2025``, audit log off), installed as the end-to-end tests
install it (tests/e2e/install.py). Every pod asks for one GPU, so every create with the webhook registered is
judged and reserved; the tenant (Japan: Tier 1) is never refused. Requests carry the admin's client certificate and
impersonate the tenant, so the API server also authorises the impersonation on each one, in both modes.

    .venv/bin/python bench/bench_admission_e2e.py                     # 200 creates/s, 2 rounds of 10 s per mode
    .venv/bin/python bench/bench_admission_e2e.py --rate 100 --seconds 5 --cluster dev
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import ssl
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.cluster, tests.e2e.install

from tests.cluster import Cluster, wait_until  # noqa: E402
from tests.e2e.install import Gpuquota, install  # noqa: E402

PROFILE = ROOT / "src" / "gpuquota" / "policy" / "profiles" / "ai-diffusion-2025.yaml"
NAMESPACE = "bench"
USER = "bench-user"


def pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "main", "image": "registry.example/train:1",
                 "resources": {"limits": {"nvidia.com/gpu": 1}}}]}}


def api_client(cluster: Cluster, workdir: Path, connections: int) -> httpx.Client:
    """The admin's client certificate (from the kubeconfig), impersonating the tenant's user."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    user = config["users"][0]["user"]
    cert, key = workdir / "admin.crt", workdir / "admin.key"
    cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
    key.write_bytes(base64.b64decode(user["client-key-data"]))
    key.chmod(0o600)
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    context.load_cert_chain(str(cert), str(key))
    return httpx.Client(base_url=cluster.apiserver, verify=context, timeout=30.0,
                        headers={"Impersonate-User": USER, "Content-Type": "application/json"},
                        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections))


def create(client: httpx.Client, name: str) -> float:
    started = time.perf_counter()
    response = client.post(f"/api/v1/namespaces/{NAMESPACE}/pods", json=pod(name))
    elapsed = time.perf_counter() - started
    if response.status_code != 201:
        raise RuntimeError(f"create {name}: {response.status_code} {response.text[:300]}")
    return elapsed


def open_loop(client: httpx.Client, prefix: str, rate: float, seconds: float,
              workers: int) -> tuple[list[float], float]:
    """Creates at ``rate``/s for ``seconds`` (each sent at its scheduled time by a pool of ``workers``): latencies
    and the rate achieved."""
    n = int(rate * seconds)
    latencies: list[float] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        elapsed = create(client, f"{prefix}-{i}")
        with lock:
            latencies.append(elapsed)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        t0 = time.perf_counter()
        futures = []
        for i in range(n):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(one, i))
        for future in futures:
            future.result()
        took = time.perf_counter() - t0
    return latencies, n / took


def set_webhook(gq: Gpuquota, client: httpx.Client, on: bool) -> None:
    """Register or remove the chart's webhook configuration and wait until the API server acts on it (a probe pod
    is judged, or is not)."""
    vwc = next(d for d in gq.objects if d["kind"] == "ValidatingWebhookConfiguration")
    if on:
        gq.cluster.apply(vwc, "--server-side", "--force-conflicts")
    else:
        gq.cluster.kubectl("delete", "validatingwebhookconfiguration", vwc["metadata"]["name"], "--ignore-not-found")
    probes = iter(range(10_000))

    def effective() -> bool:
        before = gq.reviews("Pod")
        create(client, f"probe-{'on' if on else 'off'}-{next(probes)}")
        return (gq.reviews("Pod") > before) == on

    wait_until(effective, timeout_s=30, interval_s=0.2, what=f"the webhook configuration {'on' if on else 'off'}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def processes(gq: Gpuquota) -> dict[str, int]:
    """Where a create's CPU can go: the webhook, the control plane's processes (scripts/cluster's PID files), and
    this load generator."""
    found = {"webhook": gq.webhook.proc.pid, "load generator": os.getpid()}
    for name in ("kube-apiserver", "etcd", "kube-controller-manager"):
        pid_file = gq.cluster.kubeconfig.parent / f"{name}.pid"
        if pid_file.exists():
            found[name] = int(pid_file.read_text())
    return found


def handled(gq: Gpuquota) -> tuple[float, float]:
    """The webhook's own count and total seconds of handled reviews (its latency histogram): time inside the
    handler, apart from the network, TLS and waiting for a CPU."""
    count = total = 0.0
    for family in text_string_to_metric_families(gq.webhook.metrics()):
        for sample in family.samples:
            if sample.name == "gpuquota_admission_duration_seconds_count":
                count += sample.value
            elif sample.name == "gpuquota_admission_duration_seconds_sum":
                total += sample.value
    return count, total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="pod creates per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=2, help="without/with pairs")
    parser.add_argument("--workers", type=int, default=32, help="client threads (and connections)")
    parser.add_argument("--cluster", help="use this running cluster (scripts/cluster up NAME) and leave it running")
    args = parser.parse_args()

    cluster = Cluster.up(args.cluster or f"bench-{os.getpid()}")
    try:
        with tempfile.TemporaryDirectory(prefix="gpuquota-bench-") as tmp:
            root = Path(tmp)
            with install(cluster, root / "gq", PROFILE.read_text(),
                         serve_args=("--audit-log", "off", "--log-level", "warning")) as gq:
                gq.tenant(NAMESPACE, "bench", "JP")
                client = api_client(cluster, root, args.workers)
                results: dict[str, list[float]] = {"without": [], "with": []}
                rates: dict[str, list[float]] = {"without": [], "with": []}
                pids = processes(gq)
                cpu = {mode: dict.fromkeys(pids, 0.0) for mode in ("without", "with")}  # seconds, per process
                inside: dict[str, tuple[float, float]] = {"without": (0.0, 0.0), "with": (0.0, 0.0)}
                for r in range(args.rounds):
                    for mode in ("without", "with"):
                        set_webhook(gq, client, mode == "with")
                        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                        reviewed = handled(gq)
                        latencies, achieved = open_loop(client, f"{mode}-{r}", args.rate, args.seconds, args.workers)
                        for name, pid in pids.items():
                            cpu[mode][name] += cpu_seconds(pid) - before[name]
                        (count, total), (was_count, was_total) = handled(gq), reviewed
                        inside[mode] = (inside[mode][0] + count - was_count, inside[mode][1] + total - was_total)
                        results[mode] += latencies
                        rates[mode].append(achieved)
                        cluster.kubectl("delete", "pods", "--all", "-n", NAMESPACE, "--wait=false", timeout_s=300)
                        p50, p99 = percentile(latencies, .5) * 1e3, percentile(latencies, .99) * 1e3
                        print(f"round {r} {mode:7} {achieved:6.1f} creates/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms",
                              file=sys.stderr)
                client.close()
    finally:
        if not args.cluster:
            cluster.down()

    print(f"machine: {platform.node()} {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          f"{args.rate:g} creates/s x {args.seconds:g} s x {args.rounds} rounds per mode")
    print("| mode | creates | achieved/s | p50 ms | p90 ms | p99 ms | mean ms |")
    print("|---|---|---|---|---|---|---|")
    for mode, latencies in results.items():
        print(f"| webhook {'registered' if mode == 'with' else 'absent'} | {len(latencies)} | "
              f"{statistics.mean(rates[mode]):.1f} | {percentile(latencies, .5) * 1e3:.2f} | "
              f"{percentile(latencies, .9) * 1e3:.2f} | {percentile(latencies, .99) * 1e3:.2f} | "
              f"{statistics.mean(latencies) * 1e3:.2f} |")
    print()
    print(f"| CPU ms per create | {' | '.join(cpu['with'])} |")
    print(f"|---|{'---|' * len(cpu['with'])}")
    for mode, spent in cpu.items():
        print(f"| webhook {'registered' if mode == 'with' else 'absent'} | "
              + " | ".join(f"{seconds / len(results[mode]) * 1e3:.2f}" for seconds in spent.values()) + " |")
    reviews, seconds = inside["with"]
    if reviews:
        print(f"inside the webhook's handler: {reviews:.0f} reviews, mean {seconds / reviews * 1e3:.2f} ms")
    added = {q: (percentile(results["with"], q) - percentile(results["without"], q)) * 1e3 for q in (.5, .99)}
    print(f"added by the webhook: p50 {added[.5]:+.2f} ms, p99 {added[.99]:+.2f} ms (target: p99 <= 5 ms at 200/s)")


if __name__ == "__main__":
    main()
