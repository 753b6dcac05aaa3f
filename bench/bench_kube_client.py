"""Which transport carries gpuquota's hot Kubernetes paths, measured (docs/benchmarks.md, "Kubernetes client").

Both candidates take their configuration and credentials from the official ``kubernetes`` package
(``gpuquota.kube.config``), parse bodies with orjson into plain dicts and split watch lines the same way; they
differ in what carries the bytes:

- ``apiclient``: ``gpuquota.kube.KubeClient`` — the package's own ``ApiClient`` (urllib3), ``call_api`` with raw
  JSON, none of its generated models (the transport gpuquota uses);
- ``httpx``: a lean transport (httpx) fed by the same configuration, as gpuquota carried before (kept here, and only
  here, so the comparison can be re-run).

A stand-in API server runs in a process of its own (so its CPU is not counted) and serves pre-serialised bytes:
``--nodes`` realistic Node objects listed in pages of 500 (as the client asks), and a watch stream of ``--events``
MODIFIED node events, one chunk per event as the API server flushes them. Each candidate runs in a fresh process:
the time to list every node (the cache's sync; best and median of ``--repeat``), watch events per second through one
stream (best of ``--repeat``), the client process's own CPU time for each (``time.process_time``: other work on a
shared machine does not count), and the process's peak RSS after importing and listing.

    .venv/bin/python bench/bench_kube_client.py            # 10,000 nodes, 20,000 events, 5 rounds
    scripts/cluster up bench && .venv/bin/python bench/bench_kube_client.py --kubeconfig var/cluster/bench/kubeconfig
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

ROOT = Path(__file__).resolve().parents[1]
PAGE = 500
TOKEN = "bench-token"  # noqa: S105 - a throwaway token for the stand-in server
PRODUCTS = ["NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB", "NVIDIA-L40S", "NVIDIA-L4", "NVIDIA-H200"]


def node(i: int, version: int) -> dict[str, Any]:
    """A Node about the size a real one is once the fields gpuquota never reads are counted (~2 KB)."""
    name = f"gpu-node-{i:05d}"
    return {
        "kind": "Node", "apiVersion": "v1",
        "metadata": {
            "name": name, "uid": f"00000000-0000-4000-8000-{i:012d}", "resourceVersion": str(version),
            "creationTimestamp": "2026-11-01T00:00:00Z",
            "labels": {"nvidia.com/gpu.product": PRODUCTS[i % len(PRODUCTS)], "nvidia.com/gpu.count": "8",
                       "kubernetes.io/hostname": name, "node.kubernetes.io/instance-type": "p5.48xlarge",
                       "topology.kubernetes.io/zone": f"zone-{i % 3}", "kubernetes.io/arch": "amd64",
                       "kubernetes.io/os": "linux", "nvidia.com/cuda.driver.major": "560"},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                            "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
        },
        "spec": {"podCIDR": f"10.{i // 250}.{i % 250}.0/24", "providerID": f"aws:///zone/i-{i:017x}"},
        "status": {
            "capacity": {"nvidia.com/gpu": "8", "cpu": "192", "memory": "2097152Mi", "pods": "110",
                         "ephemeral-storage": "7630885Mi"},
            "allocatable": {"nvidia.com/gpu": "8", "cpu": "191", "memory": "2000000Mi", "pods": "110",
                            "ephemeral-storage": "7000000Mi"},
            "conditions": [{"type": t, "status": "False" if t != "Ready" else "True",
                            "lastHeartbeatTime": "2026-12-03T07:00:00Z", "lastTransitionTime": "2026-11-01T00:00:00Z",
                            "reason": f"Kubelet{t}", "message": f"kubelet reports {t}"}
                           for t in ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")],
            "addresses": [{"type": "InternalIP", "address": f"10.0.{i // 250}.{i % 250}"},
                          {"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": "v1.37.2", "containerRuntimeVersion": "containerd://2.1.0",
                         "kernelVersion": "6.8.0", "osImage": "Ubuntu 24.04", "architecture": "amd64",
                         "operatingSystem": "linux", "machineID": f"{i:032x}", "bootID": f"{i:032x}"},
        },
    }


# --- the stand-in API server (its own process) ---------------------------------------------------------------------

def serve(nodes: int, events: int, port_file: Path) -> None:
    pages = []
    for start in range(0, nodes, PAGE):
        metadata: dict[str, Any] = {"resourceVersion": "1000"}
        if start + PAGE < nodes:
            metadata["continue"] = str(start + PAGE)
        items = [node(i, 100 + i) for i in range(start, min(nodes, start + PAGE))]
        pages.append(orjson.dumps({"kind": "NodeList", "apiVersion": "v1", "metadata": metadata, "items": items}))
    stream = [orjson.dumps({"type": "MODIFIED", "object": node(e % nodes, 1001 + e)}) + b"\n" for e in range(events)]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if query.get("watch") in ("1", "true"):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for line in stream:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
                return
            body = pages[int(query.get("continue") or 0) // PAGE]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_file.write_text(str(server.server_address[1]))
    server.serve_forever()


# --- the candidates (each in a fresh process) ----------------------------------------------------------------------

class HttpxTransport:
    """List and watch over httpx, configured from the package's ``Configuration`` (the rejected candidate)."""

    def __init__(self, credentials: Any) -> None:
        import httpx  # noqa: PLC0415

        self.credentials = credentials
        endpoint = credentials.endpoint
        verify: ssl.SSLContext | bool = True
        if endpoint.host.startswith("https://"):  # as gpuquota's httpx client built it from the flags
            verify = ssl.create_default_context(cafile=endpoint.ca_file)
            if endpoint.cert_file and endpoint.key_file:
                verify.load_cert_chain(endpoint.cert_file, endpoint.key_file)
        self.http = httpx.Client(base_url=endpoint.host, timeout=httpx.Timeout(30.0), trust_env=False, verify=verify,
                                 headers={"Accept": "application/json", "User-Agent": "gpuquota"})

    def _headers(self) -> dict[str, str]:
        token = self.credentials.authorization()
        return {"Authorization": token} if token else {}

    def list(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        params = {"limit": str(PAGE)}
        while True:
            response = self.http.get(path, params=params, headers=self._headers())
            response.raise_for_status()
            body = orjson.loads(response.content)
            items.extend(body["items"])
            token = body["metadata"].get("continue")
            if not token:
                return items
            params["continue"] = token

    def watch(self, path: str, resource_version: str, stop_after: int) -> int:
        import httpx  # noqa: PLC0415

        params = {"watch": "1", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                  "timeoutSeconds": "300"}
        count, pending = 0, b""
        with self.http.stream("GET", path, params=params, headers=self._headers(),
                              timeout=httpx.Timeout(30.0, read=330.0)) as response:
            for chunk in response.iter_bytes():
                pending += chunk
                if b"\n" not in pending:
                    continue
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        count += orjson.loads(line)["type"] in ("ADDED", "MODIFIED")
                if count >= stop_after:
                    break
        return count


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(variant: str, source: Any, repeat: int, watch_from: str, stop_after: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "src"))
    from gpuquota.kube import KubeClient  # noqa: PLC0415
    from gpuquota.kube.config import load_credentials  # noqa: PLC0415

    started = time.perf_counter()
    credentials = load_credentials(source)
    client: Any = KubeClient(credentials) if variant == "apiclient" else HttpxTransport(credentials)
    setup_s = time.perf_counter() - started
    lists, list_cpu, watches, watch_cpu, count = [], [], [], [], 0
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        listed = client.list("/api/v1/nodes")
        items = listed.items if variant == "apiclient" else listed
        lists.append(time.perf_counter() - started)
        list_cpu.append(time.process_time() - cpu)
        count = len(items)
        del listed, items
    rss_after_list = peak_rss_mib()
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        if variant == "apiclient":
            seen = 0
            for event in client.watch("/api/v1/nodes", watch_from, timeout_s=300):
                seen += event.type in ("ADDED", "MODIFIED")
                if seen >= stop_after:
                    break
        else:
            seen = client.watch("/api/v1/nodes", watch_from, stop_after)
        watches.append((seen, time.perf_counter() - started))
        watch_cpu.append(time.process_time() - cpu)
    return {
        "variant": variant, "nodes": count, "import_and_config_s": round(setup_s, 3),
        "list_best_s": round(min(lists), 3), "list_median_s": round(statistics.median(lists), 3),
        "list_cpu_best_s": round(min(list_cpu), 3),
        "watch_events": watches[0][0],
        "watch_cpu_us_per_event": round(min(watch_cpu) / watches[0][0] * 1e6, 1),
        "watch_best_events_per_s": round(max(n / s for n, s in watches)),
        "watch_median_events_per_s": round(statistics.median(n / s for n, s in watches)),
        "peak_rss_mib_after_list": round(rss_after_list, 1),
    }


def real_cluster(opts: argparse.Namespace) -> None:
    """The same comparison against a real API server (e.g. ``scripts/cluster up bench``): Nodes created there."""
    sys.path.insert(0, str(ROOT / "src"))
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    from gpuquota.kube import ConflictError, KubeClient  # noqa: PLC0415

    with KubeClient.connect(kubeconfig=opts.kubeconfig) as kube:
        present = len(kube.list("/api/v1/nodes").items)

        def create(i: int) -> None:
            body = node(i, 0)
            body["metadata"].pop("resourceVersion")
            body["metadata"].pop("uid")
            body.pop("status")
            with contextlib.suppress(ConflictError):  # made by an earlier run
                kube.create("/api/v1/nodes", body)

        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(present, opts.nodes)))
        print(f"created {opts.nodes - present} nodes in {time.perf_counter() - started:.1f} s", flush=True)
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; load {os.getloadavg()[0]:.2f}; real API server, {opts.nodes} nodes")
    for _ in range(opts.rounds):
        for variant in ("apiclient", "httpx"):
            out = subprocess.run([sys.executable, __file__, "--measure", variant, f"kubeconfig={opts.kubeconfig}",
                                  "-", "--repeat", str(opts.repeat), "--nodes", str(opts.nodes)],
                                 check=True, capture_output=True, text=True)
            print(out.stdout.strip(), flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each candidate")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--kubeconfig", type=Path,
                        help="measure against this real cluster instead of the stand-in: --nodes Node objects are "
                             "created there if missing; the watch is one from resourceVersion 0 (the API server's "
                             "synthetic ADDED event per node, from its watch cache)")
    parser.add_argument("--measure", nargs=3, metavar=("VARIANT", "URL", "TOKEN_FILE"), help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.serve is not None:
        serve(opts.nodes, opts.events, opts.serve)
        return
    if opts.measure is not None:
        sys.path.insert(0, str(ROOT / "src"))
        from gpuquota.kube import KubeSource  # noqa: PLC0415

        variant, url, token_file = opts.measure
        if url.startswith("kubeconfig="):
            source, watch_from, stop_after = KubeSource(kubeconfig=Path(url.split("=", 1)[1])), "0", opts.nodes
        else:
            source, watch_from, stop_after = KubeSource(api_server=url, token_file=Path(token_file)), "1000", 10**9
        print(json.dumps(measure(variant, source, opts.repeat, watch_from, stop_after)))
        return
    if opts.kubeconfig is not None:
        real_cluster(opts)
        return

    workdir = Path(tempfile.mkdtemp(prefix="gpuquota-bench-kube-"))
    token_file = workdir / "token"
    token_file.write_text(TOKEN)
    port_file = workdir / "port"
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file), "--nodes", str(opts.nodes),
                               "--events", str(opts.events)])
    try:
        deadline = time.monotonic() + 120
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the stand-in API server did not start")
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port_file.read_text()}"
        print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, Python "
              f"{platform.python_version()}; load {os.getloadavg()[0]:.2f}; {opts.nodes} nodes, {opts.events} events")
        for _ in range(opts.rounds):
            for variant in ("apiclient", "httpx"):
                out = subprocess.run([sys.executable, __file__, "--measure", variant, url, str(token_file),
                                      "--repeat", str(opts.repeat)], check=True, capture_output=True, text=True)
                print(out.stdout.strip(), flush=True)
        print(f"load after: {os.getloadavg()[0]:.2f}")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
