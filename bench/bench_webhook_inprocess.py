"""Where a review's time goes, without HTTP: the webhook's decision path (``Admission``) called in-process on the
same bodies as bench/bench_webhook.py, with the ledger calls timed separately. Subtracting these figures from the
per-request time under wrk gives the cost of uvicorn, HTTP and TLS.

    .venv/bin/python bench/bench_webhook_inprocess.py --repeat 3000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_webhook import OPERATOR, TENANT_NS, pod, pytorch_job, review  # noqa: E402
from gpuquota.admission import judge as judge_module  # noqa: E402
from gpuquota.admission.audit import AuditLog  # noqa: E402
from gpuquota.admission.handler import Admission, Pending, Reply  # noqa: E402
from gpuquota.admission.live import LiveConfig  # noqa: E402
from gpuquota.admission.metrics import WebhookMetrics  # noqa: E402
from gpuquota.domain import UsageKey  # noqa: E402
from gpuquota.ledger import (  # noqa: E402
    AuditRecord,
    Ledger,
    Reservation,
    ReservationView,
    ReserveResult,
    Rider,
    RideResult,
    WorkloadRef,
    open_ledger,
)


class TimedLedger:
    """Delegates to a real ledger and adds up the seconds spent in each call."""

    def __init__(self, inner: Ledger) -> None:
        self.inner = inner
        self.seconds: dict[str, float] = defaultdict(float)

    def _timed(self, name: str, call: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return call()
        finally:
            self.seconds[name] += time.perf_counter() - started

    def usage(self, keys: Iterable[UsageKey], now: datetime) -> dict[UsageKey, float]:
        result: dict[UsageKey, float] = self._timed("usage", lambda: self.inner.usage(keys, now))
        return result

    def reserve(self, reservation: Reservation, now: datetime) -> ReserveResult:
        result: ReserveResult = self._timed("reserve", lambda: self.inner.reserve(reservation, now))
        return result

    def record_decision(self, audit: AuditRecord) -> None:
        self._timed("record_decision", lambda: self.inner.record_decision(audit))

    def release(self, workload: WorkloadRef, now: datetime, reason: str) -> int:
        result: int = self._timed("release", lambda: self.inner.release(workload, now, reason))
        return result

    def mark_releasing(self, workload: WorkloadRef, now: datetime, reason: str) -> int:
        result: int = self._timed("mark_releasing", lambda: self.inner.mark_releasing(workload, now, reason))
        return result

    def find_active(self, workload: WorkloadRef) -> ReservationView | None:
        result: ReservationView | None = self._timed("find_active", lambda: self.inner.find_active(workload))
        return result

    def reserved_by(self, request_uid: str) -> int | None:
        result: int | None = self._timed("reserved_by", lambda: self.inner.reserved_by(request_uid))
        return result

    def ride(self, owner: WorkloadRef, owner_uid: str, rider: Rider, now: datetime) -> RideResult:
        result: RideResult = self._timed("ride", lambda: self.inner.ride(owner, owner_uid, rider, now))
        return result

    def count_active(self) -> int:
        return self.inner.count_active()

    def ping(self) -> None:
        self.inner.ping()

    def close(self) -> None:
        self.inner.close()


def time_functions(ledger: TimedLedger) -> None:
    """Wrap the pure steps the judge calls (demand extraction, the GPU walk, usage keys, decide) so their time is
    counted with the ledger calls' (same table, same clock)."""
    for name in ("extract", "requests_gpu", "usage_keys", "decide", "scale_delta"):
        original = getattr(judge_module, name)

        def timed(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                ledger.seconds[_name] += time.perf_counter() - started

        setattr(judge_module, name, timed)


def handle(admission: Admission, body: bytes) -> Reply:
    result = admission.begin(body)
    return result.run() if isinstance(result, Pending) else result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="gpuquota-bench-inproc-"))
    live = LiveConfig("ai-diffusion-2025", ROOT / "examples" / "tenants.yaml")
    ledger = TimedLedger(open_ledger(f"sqlite:///{workdir / 'ledger.db'}"))
    metrics = WebhookMetrics(lambda: live.current.known_tenants)
    admission = Admission(live, ledger, metrics, AuditLog(str(workdir / "audit.jsonl")),
                          trusted_controllers=(OPERATOR,))
    time_functions(ledger)
    trainer = pytorch_job("bench-trainer", TENANT_NS, workers=1)
    assert b'"allowed":true' in handle(admission, json.dumps(review(trainer)).encode()).body
    owner = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "name": "bench-trainer",
             "uid": trainer["metadata"]["uid"], "controller": True}
    owned = pod("bench-trainer-worker-0", TENANT_NS, 8, owner=owner, labels={
        "training.kubeflow.org/job-name": "bench-trainer",
        "training.kubeflow.org/operator-name": "pytorchjob-controller"})
    fixed = {
        "cpu-pod": json.dumps(review(pod("web-0", TENANT_NS, 0))).encode(),
        "dry-run-pytorchjob": json.dumps(review(pytorch_job("dry", TENANT_NS, 1), dry_run=True)).encode(),
        "owned-pod": json.dumps(review(owned, user=OPERATOR)).encode(),
    }
    results: dict[str, dict[str, float]] = {}
    for name in [*fixed, "reserving-pod"]:
        per_round: list[float] = []
        split: dict[str, list[float]] = defaultdict(list)
        for round_index in range(opts.rounds):
            if name == "reserving-pod":
                bodies = [json.dumps(review(pod(f"job-{round_index}-{i}", TENANT_NS, 1))).encode()
                          for i in range(opts.repeat)]
            else:
                bodies = [fixed[name]] * opts.repeat
            ledger.seconds.clear()
            started = time.perf_counter()
            for body in bodies:
                handle(admission, body)
            per_round.append((time.perf_counter() - started) / opts.repeat * 1e6)
            for call, seconds in ledger.seconds.items():
                split[call].append(seconds / opts.repeat * 1e6)
        results[name] = {"total_us": statistics.median(per_round), "best_us": min(per_round),
                         **{f"{call}_us": statistics.median(v) for call, v in split.items()}}
    print(f"{'scenario':22s} {'µs/review':>10s} {'best':>8s}  of which (µs/review)")
    for name, row in results.items():
        calls = ", ".join(f"{k[:-3]} {v:.0f}" for k, v in row.items() if k not in ("total_us", "best_us"))
        print(f"{name:22s} {row['total_us']:10.1f} {row['best_us']:8.1f}  {calls or '-'}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
