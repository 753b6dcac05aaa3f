"""Normal reviews beside hostile traffic, for docs/benchmarks.md ("Hostile traffic").

One ``gpuquota serve`` process over TLS on loopback with mutual TLS (the API server's client certificate), a metrics
port of its own and the default limits. A normal client sends dry-run GPU Pod reviews one after another over a
kept-alive connection (what the API server does per connection) for ``--seconds``, first alone, then beside every
attacker of tests/admission/hostile.py at once (slow headers, 100,000-deep JSON, ~1 MB selectors, forged reviews
without a client certificate). Latency quantiles and throughput of the normal client are printed for both phases,
with what each attacker sent and how it was answered.

    .venv/bin/python bench/bench_hostile.py                  # 20 s per phase
    .venv/bin/python bench/bench_hostile.py --seconds 5
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.admission.*

from tests.admission.hostile import ATTACKS, Target, normal_reviews, quantile, start_attacks  # noqa: E402
from tests.admission.pki import make_ca  # noqa: E402
from tests.admission.serverproc import (  # noqa: E402
    TEST_POLICY,
    free_port,
    start_server,
    tenants_yaml,
    verifier,
    wait_for,
)


def _row(label: str, latencies: list[float], seconds: float) -> str:
    ms = [x * 1000 for x in latencies]
    return (f"{label:10} {len(ms) / seconds:>9.0f} {quantile(ms, 0.5):>8.2f} {quantile(ms, 0.95):>8.2f} "
            f"{quantile(ms, 0.99):>8.2f} {max(ms):>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gpuquota-hostile-") as tmp:
        root = Path(tmp)
        (root / "policy.yaml").write_text(TEST_POLICY)
        (root / "tenants.yaml").write_text(tenants_yaml())
        ca = make_ca(root / "pki", "serving")
        tls = ca.issue(root / "pki", "serving")
        clients = make_ca(root / "client-pki", "clients")
        apiserver = clients.issue(root / "client-pki", "kube-apiserver")
        metrics_port = free_port()
        server = start_server(root / "srv", policy=root / "policy.yaml", tenants=root / "tenants.yaml", tls=tls,
                              ca_file=ca.ca_file, wait_ready=False,
                              extra=("--client-ca", str(clients.ca_file), "--metrics-port", str(metrics_port),
                                     "--audit-log", "off"))
        try:
            def ready() -> bool:
                try:
                    with httpx.Client(base_url=f"https://127.0.0.1:{metrics_port}", verify=verifier(ca.ca_file),
                                      timeout=5) as client:
                        return client.get("/readyz").status_code == 200
                except httpx.TransportError:
                    return False

            assert wait_for(ready, timeout_s=30), server.log()
            target = Target("127.0.0.1", int(server.base_url.rsplit(":", 1)[1]), str(ca.ca_file),
                            (str(apiserver[0]), str(apiserver[1])))
            normal_reviews(target, seconds=2.0)  # warm-up
            print(f"python {platform.python_version()} on {platform.machine()}, {args.seconds:g} s per phase; "
                  "normal client: sequential dry-run GPU Pod reviews over one TLS connection")
            print(f"{'phase':10} {'reviews/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
            quiet = normal_reviews(target, seconds=args.seconds)
            print(_row("alone", quiet, args.seconds))
            stop, tallies, threads = start_attacks(target, list(ATTACKS))
            started = time.monotonic()
            try:
                loud = normal_reviews(target, seconds=args.seconds)
            finally:
                stop.set()
                for thread in threads:
                    thread.join(timeout=10)
            print(_row("attacked", loud, args.seconds))
            elapsed = time.monotonic() - started
            for name, tally in tallies.items():
                answers = ", ".join(f"HTTP {code} x {count}" for code, count in sorted(tally.answered.items()))
                print(f"  {name:15} {tally.sent / elapsed:>8.1f}/s  refused or closed {tally.refused:>6}  "
                      f"{answers or 'no HTTP answer'}")
            print(f"server alive: {server.alive()}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
