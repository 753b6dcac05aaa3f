"""What one reservation writes and checks, computed once in Python for both backends.

``plan_reservation`` turns a ``Reservation`` into plain rows: the reservation row, its audit row, its counter
increments, the counter rows to add to (in the one global lock order) and the cap checks (which window to sum,
what to deduct and add, the cap). The backends only execute it: SQLite as a statement batch under BEGIN
IMMEDIATE (``batch_statements``), PostgreSQL as one call of ``gpuquota_reserve`` (schema migration 3) — one round
trip, and no lock is held while the client waits.
"""

# SQL here is assembled from constants and ``?`` placeholder lists only; every value goes in as a parameter.
# ruff: noqa: S608

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from gpuquota.clusters import DEFAULT_CLUSTER
from gpuquota.ledger.counters import CounterRow, bucket_range, counter_id, counter_rows, increments
from gpuquota.ledger.types import AuditRecord, Reservation, ReservationState

RESERVATION_COLUMNS = (
    "request_uid, namespace, kind, api_group, name, tenant, jurisdiction, tier, model, gpus, tpp, operations, "
    "operations_per_second, max_runtime_s, profile, profile_version, state, charge_day, reserved_at, object_uid, "
    "cluster"
)
DECISION_COLUMNS = (
    "time, request_uid, operation, user_name, namespace, kind, name, tenant, jurisdiction, tier, allowed, dry_run, "
    "message, rules, warnings, gpus, model, tpp, operations, profile, profile_version, cluster"
)

Check = tuple[str, str, str, str, str, float, float, float]  # scope, subject, metric, low, high, deduct, inc, cap


@dataclass(frozen=True, slots=True)
class ReservePlan:
    request_uid: str
    reservation: tuple[object, ...]  # RESERVATION_COLUMNS (the order of gpuquota_reserve's first parameters)
    audit: tuple[object, ...]  # DECISION_COLUMNS
    increments: tuple[tuple[str, str, str, float], ...]  # reservation_counters rows (without the id)
    counters: tuple[CounterRow, ...]  # in lock order
    checks: tuple[Check, ...]  # one per capped charge, in the reservation's charge order


def audit_values(audit: AuditRecord, ts: object, cluster: str) -> tuple[object, ...]:
    """``DECISION_COLUMNS`` values; ``cluster`` is the writing ledger's (the record's own is what was read back)."""
    a = audit
    return (
        ts, a.request_uid, a.operation, a.user, a.namespace, a.kind, a.name, a.tenant, a.jurisdiction, a.tier,
        a.allowed, a.dry_run, a.message, json.dumps(list(a.rules)), json.dumps(list(a.warnings)), float(a.gpus),
        a.model, float(a.tpp), None if a.operations is None else float(a.operations), a.profile, a.profile_version,
        cluster,
    )  # fmt: skip


def decision_fingerprint(audit: AuditRecord, cluster: str) -> str:
    """What makes two decisions the same for aggregation: every recorded field but the request uid and the time
    (the cluster included: each cluster's denials are its own record)."""
    identity = audit_values(audit, None, cluster)[2:]
    return hashlib.sha256(json.dumps(identity, separators=(",", ":")).encode()).hexdigest()


def plan_reservation(
    r: Reservation, day: date, reserved_at: object, audit_time: object, cluster: str = DEFAULT_CLUSTER
) -> ReservePlan:
    """``day`` is the UTC day operations are charged on; the timestamps come already in the backend's form;
    ``cluster`` is the admitting cluster's name."""
    incs = increments(r.charges)
    checks: list[Check] = []
    for charge in r.charges:
        if charge.cap is None:
            continue
        rng = bucket_range(charge.key)
        inc = incs[counter_id(charge.key)]
        checks.append((*counter_id(charge.key), rng.low, rng.high, inc if rng.covers(day) else 0.0, inc, charge.cap))
    row = (
        r.request_uid, r.workload.namespace, r.workload.kind, r.workload.group, r.workload.name, r.tenant,
        r.jurisdiction, r.tier, r.model, float(r.gpus), float(r.tpp),
        None if r.operations is None else float(r.operations), float(r.operations_per_second),
        None if r.max_runtime_s is None else float(r.max_runtime_s), r.profile, r.profile_version,
        str(ReservationState.RESERVED), day.isoformat(), reserved_at, r.object_uid, cluster,
    )  # fmt: skip
    return ReservePlan(
        request_uid=r.request_uid,
        reservation=row,
        audit=audit_values(r.audit, audit_time, cluster),
        increments=tuple((*cid, float(amount)) for cid, amount in incs.items()),
        counters=tuple(counter_rows(incs, day)),
        checks=tuple(checks),
    )


def _rows(count: int, width: int) -> str:
    return ", ".join(["(" + ", ".join("?" * width) + ")"] * count)


UPSERT_COUNTERS = (
    "INSERT INTO counters (scope, subject, metric, bucket, amount) VALUES {values} "
    "ON CONFLICT (scope, subject, metric, bucket) DO UPDATE SET amount = counters.amount + excluded.amount"
)


def batch_statements(plan: ReservePlan) -> list[tuple[str, Sequence[object]]]:
    """The plan as plain SQL, in order: reservation (its unique request uid refuses a second one), audit record,
    increments, counter upsert (locks), then the cap checks through ``gpuquota_check_cap``."""
    by_uid = "(SELECT id FROM reservations WHERE request_uid = ?)"
    out: list[tuple[str, Sequence[object]]] = [
        (
            f"INSERT INTO reservations ({RESERVATION_COLUMNS}) VALUES {_rows(1, len(plan.reservation))} RETURNING id",
            plan.reservation,
        ),
        (
            f"INSERT INTO decisions ({DECISION_COLUMNS}, reservation_id) VALUES ({', '.join('?' * len(plan.audit))}, "
            f"{by_uid})",
            (*plan.audit, plan.request_uid),
        ),
    ]
    if plan.increments:
        out.append(
            (
                "INSERT INTO reservation_counters (reservation_id, scope, subject, metric, amount) VALUES "
                + ", ".join([f"({by_uid}, ?, ?, ?, ?)"] * len(plan.increments)),
                [v for inc in plan.increments for v in (plan.request_uid, *inc)],
            )
        )
    if plan.counters:
        out.append(
            (UPSERT_COUNTERS.format(values=_rows(len(plan.counters), 5)), [v for row in plan.counters for v in row])
        )
    if plan.checks:
        sql = " UNION ALL ".join(
            "SELECT gpuquota_check_cap(?, (SELECT coalesce(sum(amount), 0) FROM counters WHERE scope = ? "
            "AND subject = ? AND metric = ? AND bucket BETWEEN ? AND ?), ?, ?, ?)"
            for _ in plan.checks
        )
        out.append((sql, [v for i, check in enumerate(plan.checks) for v in (i, *check)]))
    return out
