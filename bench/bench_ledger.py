"""Ledger reserving throughput and latency, and its cost as the history grows, for docs/benchmarks.md.

Several processes (each with its own ledger connections, like webhook replicas) reserve in closed loops for a
fixed time against one database; every reservation charges what ``decide()`` charges under the 2025 tiers
(tenant, jurisdiction, tier and cluster concurrent TPP; the tenant's yearly and 30-day operations; the
jurisdiction's yearly operations), with caps on the tenant and jurisdiction counters — so every reservation
locks the cluster row, the hottest row there is. Then the history is bulk-loaded to ``--history`` settled
reservations over ``--tenants`` tenants (a year of work) and the same load runs again.

    .venv/bin/python bench/bench_ledger.py --backend postgresql --processes 4 --seconds 10 --history 1000000
    .venv/bin/python bench/bench_ledger.py --backend sqlite --processes 4 --seconds 10 --history 1000000
    .venv/bin/python bench/bench_ledger.py --cpu 2800     # CPU per reservation, client and server (PostgreSQL)

PostgreSQL is a throwaway server started for the run (tests/pgserver.py) with its default durability settings.
"""

# Bulk-load SQL is assembled from constant column lists and placeholders only.
# ruff: noqa: S608

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.pgserver, tests.ledger.builders

from tests.ledger.builders import H100_TPP, reservation

from gpuquota.domain import Charge, Metric, Scope, UsageKey, calendar_year_window, rolling_window
from gpuquota.ledger import Reservation, ReserveStatus, open_ledger

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
JURISDICTIONS = [f"J{i:02d}" for i in range(40)]
TIERS = ["tier1", "tier2", "tier3"]
INF_CAP = 1e30


def tenant_of(i: int) -> tuple[str, str, str]:
    return f"tenant-{i:05d}", JURISDICTIONS[i % len(JURISDICTIONS)], TIERS[i % len(TIERS)]


def make(uid: str, tenant_index: int, now: datetime) -> Reservation:
    tenant, jur, tier = tenant_of(tenant_index)
    tpp, ops = 8 * H100_TPP, 3.6e18
    day = now.date()
    charges = (
        Charge(UsageKey(Scope.TENANT, tenant, Metric.CONCURRENT_TPP), tpp, INF_CAP, "tenant-tpp"),
        Charge(UsageKey(Scope.JURISDICTION, jur, Metric.CONCURRENT_TPP), tpp, INF_CAP, "jur-tpp"),
        Charge(UsageKey(Scope.TIER, tier, Metric.CONCURRENT_TPP), tpp),
        Charge(UsageKey(Scope.CLUSTER, "cluster", Metric.CONCURRENT_TPP), tpp, INF_CAP, "cluster-tpp"),
        Charge(UsageKey(Scope.TENANT, tenant, Metric.OPERATIONS, calendar_year_window(day)), ops, INF_CAP, "y"),
        Charge(UsageKey(Scope.TENANT, tenant, Metric.OPERATIONS, rolling_window(30, day)), ops, INF_CAP, "30d"),
        Charge(UsageKey(Scope.JURISDICTION, jur, Metric.OPERATIONS, calendar_year_window(day)), ops, INF_CAP, "jy"),
    )
    return reservation(uid, tenant=tenant, jurisdiction=jur, tier=tier, name=uid, namespace=f"{tenant}-ml",
                       charges=charges, when=now)  # fmt: skip


@dataclass(frozen=True)
class Load:
    url: str
    label: str
    processes: int
    threads: int
    seconds: float
    tenants: int


def worker(load: Load, process: int, barrier: Any) -> dict[str, Any]:
    label = f"{load.label}-{load.processes}x{load.threads}-p{process}"
    seconds, threads, tenants = load.seconds, load.threads, load.tenants
    ledger = open_ledger(load.url, pool_size=threads)
    latencies: list[float] = []
    counts: dict[str, int] = defaultdict(int)
    lock = threading.Lock()
    try:
        barrier.wait(timeout=300)
        deadline = time.perf_counter() + seconds

        def loop(t: int) -> None:
            rng = random.Random(f"{label}-{t}")
            mine: list[float] = []
            n = 0
            while time.perf_counter() < deadline:
                r = make(f"{label}-{t}-{n}", rng.randrange(tenants), NOW)
                t0 = time.perf_counter()
                result = ledger.reserve(r, NOW)
                mine.append((time.perf_counter() - t0) * 1000)
                with lock:
                    counts[str(result.status)] += 1
                n += 1
            with lock:
                latencies.extend(mine)

        pool = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
        for th in pool:
            th.start()
        for th in pool:
            th.join()
    finally:
        ledger.close()
    return {"latencies": latencies, "counts": dict(counts)}


def run_load(load: Load) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Manager().Barrier(load.processes)
    with ctx.Pool(load.processes) as pool:
        parts = pool.starmap(worker, [(load, p, barrier) for p in range(load.processes)])
    latencies = sorted(x for p in parts for x in p["latencies"])
    counts: dict[str, int] = defaultdict(int)
    for p in parts:
        for k, v in p["counts"].items():
            counts[k] += v
    assert counts.get(str(ReserveStatus.RESERVED), 0) == len(latencies), counts
    return {
        "label": load.label,
        "processes": load.processes,
        "threads": load.threads,
        "reservations": len(latencies),
        "per_s": len(latencies) / load.seconds,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "max_ms": latencies[-1],
    }


# -- bulk history ---------------------------------------------------------------------------------------------


def history_rows(count: int, tenants: int, seed: int = 7) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Settled reservations over the year before NOW and the counter rows they add up to."""
    rng = random.Random(seed)
    rows: list[tuple[Any, ...]] = []
    counters: dict[tuple[str, str, str, str], float] = defaultdict(float)
    start = NOW - timedelta(days=365)
    for i in range(count):
        ti = rng.randrange(tenants)
        tenant, jur, tier = tenant_of(ti)
        reserved = start + timedelta(seconds=rng.randrange(364 * 86400))
        runtime = rng.randrange(600, 3600)
        ops = 1e15 * runtime
        day: date = reserved.date()
        rows.append((f"hist-{i}", f"{tenant}-ml", "Job", "batch", f"hist-{i}", tenant, jur, tier,
                     "nvidia-h100-sxm5-80gb", 8.0, 8 * H100_TPP, 3.6e18, 1e15, 3600.0, "ai-diffusion-2025",
                     "2025-01-15", "settled", day.isoformat(), reserved, reserved + timedelta(seconds=30),
                     reserved + timedelta(seconds=30 + runtime), ops, "Complete"))  # fmt: skip
        for scope, subject in (("tenant", tenant), ("jurisdiction", jur)):
            for bucket in (f"d:{day.isoformat()}", f"y:{day.year:04d}", "total"):
                counters[(scope, subject, "operations", bucket)] += ops
    counter_rows = [(*k, v) for k, v in counters.items()]
    return rows, counter_rows


RES_COLS = ("request_uid, namespace, kind, api_group, name, tenant, jurisdiction, tier, model, gpus, tpp, operations, "
            "operations_per_second, max_runtime_s, profile, profile_version, state, charge_day, reserved_at, "
            "started_at, ended_at, actual_operations, reason")  # fmt: skip


def load_history_postgres(url: str, rows: list[tuple[Any, ...]], counters: list[tuple[Any, ...]]) -> None:
    import psycopg  # noqa: PLC0415 - only for this backend

    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY reservations ({RES_COLS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute("SELECT min(id) FROM reservations WHERE request_uid LIKE 'hist-%'")
        first = cur.fetchone()[0]  # type: ignore[index]
        with cur.copy("COPY reservation_counters (reservation_id, scope, subject, metric, amount) FROM STDIN") as copy:
            for i, row in enumerate(rows):
                rid = first + i
                for scope, subject in (("tenant", row[5]), ("jurisdiction", row[6])):
                    copy.write_row((rid, scope, subject, "operations", 3.6e18))
                for scope, subject in (("tenant", row[5]), ("jurisdiction", row[6]), ("tier", row[7]),
                                       ("cluster", "cluster")):  # fmt: skip
                    copy.write_row((rid, scope, subject, "concurrent-tpp", row[10]))
        with cur.copy("COPY decisions (time, request_uid, operation, user_name, namespace, kind, name, tenant, "
                      "jurisdiction, tier, allowed, dry_run, message, rules, gpus, model, tpp, operations, profile, "
                      "profile_version, reservation_id) FROM STDIN") as copy:  # fmt: skip
            for i, row in enumerate(rows):
                copy.write_row(
                    (row[18], row[0], "CREATE", "ci", row[1], "Job", row[4], row[5], row[6], row[7], True, False,
                     "admitted", "[]", 8.0, row[8], row[10], 3.6e18, row[14], row[15], first + i)
                )  # fmt: skip
        # The counters already hold today's load: add the history to them.
        cur.execute("CREATE TEMP TABLE bulk_counters (LIKE counters)")
        with cur.copy("COPY bulk_counters (scope, subject, metric, bucket, amount) FROM STDIN") as copy:
            for c in counters:
                copy.write_row(c)
        cur.execute(
            "INSERT INTO counters SELECT * FROM bulk_counters ON CONFLICT (scope, subject, metric, bucket) "
            "DO UPDATE SET amount = counters.amount + excluded.amount"
        )
        conn.commit()
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE")
        cur.execute("CHECKPOINT")  # write the load out now, not during the measurement


def load_history_sqlite(path: str, rows: list[tuple[Any, ...]], counters: list[tuple[Any, ...]]) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    iso = [(*r[:18], *(t.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00") for t in r[18:21]), *r[21:]) for r in rows]
    conn.executemany(f"INSERT INTO reservations ({RES_COLS}) VALUES ({', '.join('?' * 23)})", iso)
    first = conn.execute("SELECT min(id) FROM reservations WHERE request_uid LIKE 'hist-%'").fetchone()[0]
    conn.executemany(
        "INSERT INTO reservation_counters VALUES (?, ?, ?, ?, ?)",
        ((first + i, scope, subject, metric, amount) for i, r in enumerate(iso)
         for scope, subject, metric, amount in (("tenant", r[5], "operations", 3.6e18),
                                                ("jurisdiction", r[6], "operations", 3.6e18),
                                                ("tenant", r[5], "concurrent-tpp", r[10]),
                                                ("jurisdiction", r[6], "concurrent-tpp", r[10]),
                                                ("tier", r[7], "concurrent-tpp", r[10]),
                                                ("cluster", "cluster", "concurrent-tpp", r[10]))),
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO decisions (time, request_uid, operation, user_name, namespace, kind, name, tenant, jurisdiction, "
        "tier, allowed, dry_run, message, rules, gpus, model, tpp, operations, profile, profile_version, "
        f"reservation_id) VALUES ({', '.join('?' * 21)})",
        ((r[18], r[0], "CREATE", "ci", r[1], "Job", r[4], r[5], r[6], r[7], 1, 0, "admitted", "[]", 8.0, r[8], r[10],
          3.6e18, r[14], r[15], first + i) for i, r in enumerate(iso)),
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO counters VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET amount = amount + excluded.amount",
        counters,
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # write the load out now, not during the measurement
    conn.close()


def sizes(url: str) -> dict[str, int]:
    ledger = open_ledger(url)
    try:
        with ledger.db.transaction(write=False) as tx:
            return {t: int(tx.execute(f"SELECT count(*) FROM {t}")[0][0])
                    for t in ("reservations", "reservation_counters", "counters", "decisions")}  # fmt: skip
    finally:
        ledger.close()


def bench(url: str, backend: str, args: argparse.Namespace, sqlite_path: str | None) -> list[dict[str, Any]]:
    open_ledger(url).close()  # migrate
    results = []
    for processes in args.processes:
        load = Load(url, f"{backend}-empty", processes, args.threads, args.seconds, args.tenants)
        results.append({**run_load(load), "history": sizes(url)["reservations"]})
        print(json.dumps(results[-1]), flush=True)
    if args.history:
        t0 = time.perf_counter()
        rows, counters = history_rows(args.history, args.tenants)
        gen_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        if backend == "postgresql":
            load_history_postgres(url, rows, counters)
        else:
            assert sqlite_path is not None
            load_history_sqlite(sqlite_path, rows, counters)
        load_s = time.perf_counter() - t0
        del rows, counters
        print(json.dumps({"bulk_load_s": round(load_s, 1), "generate_s": round(gen_s, 1), **sizes(url)}), flush=True)
        for processes in args.processes:
            load = Load(url, f"{backend}-history", processes, args.threads, args.seconds, args.tenants)
            results.append({**run_load(load), "history": sizes(url)["reservations"], "bulk_load_s": round(load_s, 1)})
            print(json.dumps(results[-1]), flush=True)
    return results


def server_cpu_s() -> float:
    """CPU seconds (user + system) of every postgres process on this machine."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                if not f.read().startswith("postgres"):
                    continue
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def cpu_cost(url: str, count: int) -> dict[str, float]:
    """One client, one thread: CPU per reservation in this process and in the server processes."""
    ledger = open_ledger(url, pool_size=1)
    try:
        batch = [make(f"cpu-{i}", i % 10_000, NOW) for i in range(count + 200)]
        for r in batch[:200]:  # warm up: statement prepared, caches filled
            ledger.reserve(r, NOW)
        server0, client0, wall0 = server_cpu_s(), time.process_time(), time.perf_counter()
        for r in batch[200:]:
            ledger.reserve(r, NOW)
        per = 1000 / count
        return {
            "client_cpu_ms": (time.process_time() - client0) * per,
            "server_cpu_ms": (server_cpu_s() - server0) * per,
            "wall_ms": (time.perf_counter() - wall0) * per,
        }
    finally:
        ledger.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["postgresql", "sqlite", "both"], default="both")
    parser.add_argument("--processes", type=int, nargs="+", default=[4])
    parser.add_argument("--threads", type=int, default=2, help="threads per process (a webhook's worker pool)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--history", type=int, default=0, help="settled reservations to bulk-load, then rerun")
    parser.add_argument("--cpu", type=int, default=0, metavar="N",
                        help="PostgreSQL: only measure the CPU cost of N single-threaded reservations")  # fmt: skip
    args = parser.parse_args()
    if args.cpu:
        from tests.pgserver import fresh_database, postgres_server  # noqa: PLC0415

        with postgres_server() as server:
            url = fresh_database(server, "bench")
            open_ledger(url).close()
            print(json.dumps(cpu_cost(url, args.cpu)))
        return
    print(f"# {platform.node()} {platform.machine()} {platform.processor() or ''} cores={multiprocessing.cpu_count()} "
          f"python {platform.python_version()} sqlite {sqlite3.sqlite_version}")  # fmt: skip
    results: list[dict[str, Any]] = []
    if args.backend in ("postgresql", "both"):
        from tests.pgserver import fresh_database, postgres_server  # noqa: PLC0415

        with postgres_server() as server:
            results += bench(fresh_database(server, "bench"), "postgresql", args, None)
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "ledger.db")
            results += bench(f"sqlite:///{path}", "sqlite", args, path)
    print("| run | processes × threads | reservations in ledger after | reservations/s | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['label']} | {r['processes']} × {r['threads']} | {r['history']:,} | {r['per_s']:,.0f} "
              f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
