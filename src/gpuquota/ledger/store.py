"""The ledger over any ``Database``: reserving, usage, settlement and the audit, written once for both backends.

Every write is one transaction. Reserving inserts the reservation first (its unique ``request_uid`` makes
retries idempotent and makes a concurrent duplicate wait for the first), then adds to the counter rows in one
global order — which takes their locks — then re-reads the capped windows and rolls everything back if a cap
no longer fits. Nothing half-written survives an error, a cap refusal or a crash.
"""

# SQL here is assembled from constants and ``?`` placeholder lists only; every value goes in as a parameter.
# ruff: noqa: S608

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TypeVar

from gpuquota.domain import Charge, Metric, UsageKey
from gpuquota.ledger.counters import (
    TOTAL_BUCKET,
    CounterId,
    CounterRow,
    bucket_range,
    check_charge,
    counter_rows,
    day_bucket,
    increments,
    year_bucket,
)
from gpuquota.ledger.database import Database, Row, TransientConflict, Tx
from gpuquota.ledger.schema import migrate
from gpuquota.ledger.timeutil import utc, utc_day
from gpuquota.ledger.types import (
    ACTIVE_STATES,
    AuditRecord,
    LedgerError,
    Reservation,
    ReservationRecord,
    ReservationState,
    ReservationView,
    ReserveResult,
    ReserveStatus,
    WorkloadRef,
)

T = TypeVar("T")
MAX_ATTEMPTS = 5

_RESERVATION_COLUMNS = (
    "id, request_uid, namespace, kind, api_group, name, tenant, jurisdiction, tier, model, gpus, tpp, operations, "
    "operations_per_second, max_runtime_s, profile, profile_version, state, reserved_at, started_at, ended_at, "
    "actual_operations, reason"
)
_DECISION_COLUMNS = (
    "time, request_uid, operation, user_name, namespace, kind, name, tenant, jurisdiction, tier, allowed, dry_run, "
    "message, rules, warnings, gpus, model, tpp, operations, profile, profile_version"
)
_ACTIVE_SQL = "('reserved', 'running')"
_UPSERT_COUNTER = (
    "INSERT INTO counters (scope, subject, metric, bucket, amount) VALUES {values} "
    "ON CONFLICT (scope, subject, metric, bucket) DO UPDATE SET amount = counters.amount + excluded.amount "
    "RETURNING scope, subject, metric, bucket, amount"
)


@dataclass(slots=True)
class _CapExceeded(Exception):  # noqa: N818 - control flow inside a transaction, never leaves this module
    charge: Charge
    used: float


def _finite(name: str, value: float | None, *, optional: bool = False) -> None:
    if value is None:
        if not optional:
            raise LedgerError(f"{name} is required")
        return
    if not isinstance(value, int | float) or math.isnan(value) or math.isinf(value) or value < 0:
        raise LedgerError(f"{name} must be a finite number ≥ 0, got {value!r}")


def validate(reservation: Reservation) -> None:
    """Reject a reservation that would store nonsense, before any row is touched."""
    r = reservation
    if not r.request_uid:
        raise LedgerError("reservation without a request uid")
    if not (r.workload.namespace and r.workload.kind and r.workload.name):
        raise LedgerError(f"reservation {r.request_uid}: incomplete workload reference {r.workload!r}")
    if not r.tenant:
        raise LedgerError(f"reservation {r.request_uid}: no tenant")
    for name in ("gpus", "tpp", "operations_per_second"):
        _finite(f"reservation {r.request_uid}: {name}", getattr(r, name))
    _finite(f"reservation {r.request_uid}: operations", r.operations, optional=True)
    _finite(f"reservation {r.request_uid}: max_runtime_s", r.max_runtime_s, optional=True)
    for charge in r.charges:
        _finite(f"reservation {r.request_uid}: charge on {charge.key}", charge.amount)
        _finite(f"reservation {r.request_uid}: cap on {charge.key}", charge.cap, optional=True)
        try:
            bucket_range(charge.key)
        except ValueError as exc:
            raise LedgerError(f"reservation {r.request_uid}: {exc}") from exc


def _placeholders(count: int, width: int) -> str:
    row = "(" + ", ".join("?" * width) + ")"
    return ", ".join([row] * count)


def _in(values: Sequence[object]) -> str:
    return "(" + ", ".join("?" * len(values)) + ")"


def actual_operations(
    state: ReservationState,
    *,
    ops_per_second: float,
    reserved_at: datetime,
    started_at: datetime | None,
    ended: datetime,
    max_runtime_s: float | None,
) -> float:
    """Operations a finished reservation really spent: rate × runtime, never more than its runtime bound.

    A workload never created spent nothing. One whose start nobody saw is counted from its admission — an upper
    bound, because usage is never under-counted."""
    if state is ReservationState.EXPIRED:
        return 0.0
    start = started_at if started_at is not None else reserved_at
    runtime = max(0.0, (ended - start).total_seconds())
    if max_runtime_s is not None:
        runtime = min(runtime, max_runtime_s)
    return ops_per_second * runtime


class SqlLedger:
    """The ledger on SQLite or PostgreSQL. Thread-safe: each call borrows a pooled connection."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock_clause = " FOR UPDATE" if db.name == "postgresql" else ""
        try:
            self.schema_version_found = self._retry(lambda: migrate(db))
        except BaseException:
            db.close()
            raise

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _retry(self, fn: Callable[[], T]) -> T:
        for attempt in range(MAX_ATTEMPTS):
            try:
                return fn()
            except TransientConflict:
                if attempt == MAX_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _upsert(self, tx: Tx, rows: list[CounterRow]) -> dict[tuple[str, str, str, str], float]:
        if not rows:
            return {}
        params = [v for row in rows for v in row]
        result = tx.execute(_UPSERT_COUNTER.format(values=_placeholders(len(rows), 5)), params)
        return {(r[0], r[1], r[2], r[3]): float(r[4]) for r in result}

    def _window_value(self, tx: Tx, key: UsageKey) -> float:
        rng = bucket_range(key)
        rows = tx.execute(
            "SELECT sum(amount) FROM counters "
            "WHERE scope = ? AND subject = ? AND metric = ? AND bucket BETWEEN ? AND ?",
            (str(key.scope), key.subject, str(key.metric), rng.low, rng.high),
        )
        return float(rows[0][0] or 0.0) if rows else 0.0

    def _insert_decision(self, tx: Tx, audit: AuditRecord, reservation_id: int | None) -> None:
        a = audit
        tx.execute(
            f"INSERT INTO decisions ({_DECISION_COLUMNS}, reservation_id) VALUES {_placeholders(1, 22)}",
            (
                self.db.ts(a.time), a.request_uid, a.operation, a.user, a.namespace, a.kind, a.name, a.tenant,
                a.jurisdiction, a.tier, a.allowed, a.dry_run, a.message, json.dumps(list(a.rules)),
                json.dumps(list(a.warnings)), float(a.gpus), a.model, float(a.tpp), a.operations, a.profile,
                a.profile_version, reservation_id,
            ),
        )  # fmt: skip

    # -- the webhook's interface ------------------------------------------------------------------------------

    def usage(self, keys: Iterable[UsageKey], now: datetime) -> dict[UsageKey, float]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        parts: list[str] = []
        params: list[object] = []
        for i, key in enumerate(wanted):
            try:
                rng = bucket_range(key)
            except ValueError as exc:
                raise LedgerError(str(exc)) from exc
            parts.append(
                f"SELECT {i}, sum(amount) FROM counters "
                "WHERE scope = ? AND subject = ? AND metric = ? AND bucket BETWEEN ? AND ?"
            )
            params += [str(key.scope), key.subject, str(key.metric), rng.low, rng.high]
        with self.db.transaction(write=False) as tx:
            rows = tx.execute(" UNION ALL ".join(parts), params)
        values = {int(r[0]): float(r[1] or 0.0) for r in rows}
        return {key: values.get(i, 0.0) for i, key in enumerate(wanted)}

    def reserve(self, reservation: Reservation, now: datetime) -> ReserveResult:
        validate(reservation)
        return self._retry(lambda: self._reserve_once(reservation, now))

    def _reserve_once(self, r: Reservation, now: datetime) -> ReserveResult:
        day = utc_day(now)
        incs = increments(r.charges)
        try:
            with self.db.transaction(write=True) as tx:
                inserted = tx.execute(
                    "INSERT INTO reservations (request_uid, namespace, kind, api_group, name, tenant, jurisdiction, "
                    "tier, model, gpus, tpp, operations, operations_per_second, max_runtime_s, profile, "
                    f"profile_version, state, charge_day, reserved_at) VALUES {_placeholders(1, 19)} "
                    "ON CONFLICT (request_uid) DO NOTHING RETURNING id",
                    (
                        r.request_uid, r.workload.namespace, r.workload.kind, r.workload.group, r.workload.name,
                        r.tenant, r.jurisdiction, r.tier, r.model, float(r.gpus), float(r.tpp), r.operations,
                        float(r.operations_per_second), r.max_runtime_s, r.profile, r.profile_version,
                        str(ReservationState.RESERVED), day.isoformat(), self.db.ts(now),
                    ),
                )  # fmt: skip
                if not inserted:
                    first = tx.execute("SELECT id FROM reservations WHERE request_uid = ?", (r.request_uid,))
                    return ReserveResult(ReserveStatus.DUPLICATE, int(first[0][0]) if first else None)
                rid = int(inserted[0][0])
                if incs:
                    tx.executemany(
                        "INSERT INTO reservation_counters (reservation_id, scope, subject, metric, amount) "
                        "VALUES (?, ?, ?, ?, ?)",
                        [(rid, *cid, amount) for cid, amount in incs.items()],
                    )
                self._insert_decision(tx, r.audit, rid)
                # From here on the counter rows are locked until commit: keep this part short.
                after = self._upsert(tx, counter_rows(incs, day))
                for charge in r.charges:
                    if charge.cap is None:
                        continue
                    cid = (str(charge.key.scope), charge.key.subject, str(charge.key.metric))
                    rng = bucket_range(charge.key)
                    single = after.get((*cid, rng.low)) if rng.low == rng.high else None
                    value = single if single is not None else self._window_value(tx, charge.key)
                    ok, used = check_charge(value, incs[cid], charge, day)
                    if not ok:
                        raise _CapExceeded(charge, used)
        except _CapExceeded as exc:
            return ReserveResult(ReserveStatus.CAP_EXCEEDED, None, exc.charge, exc.used)
        return ReserveResult(ReserveStatus.RESERVED, rid)

    def record_decision(self, audit: AuditRecord) -> None:
        with self.db.transaction(write=True) as tx:
            self._insert_decision(tx, audit, None)

    def release(self, workload: WorkloadRef, now: datetime, reason: str) -> int:
        view = self.find_active(workload)
        if view is None:
            return 0
        return self.finish(view.reservation_ids, ReservationState.RELEASED, now, reason)

    def find_active(self, workload: WorkloadRef) -> ReservationView | None:
        with self.db.transaction(write=False) as tx:
            rows = tx.execute(
                f"SELECT {_RESERVATION_COLUMNS} FROM reservations WHERE namespace = ? AND name = ? AND kind = ? "
                f"AND api_group = ? AND state IN {_ACTIVE_SQL} ORDER BY id",
                (workload.namespace, workload.name, workload.kind, workload.group),
            )
        return self._view([self._record(r) for r in rows])

    def ping(self) -> None:
        self.db.ping()

    def close(self) -> None:
        self.db.close()

    # -- the reconciler's interface ---------------------------------------------------------------------------

    def active_reservations(self) -> list[ReservationRecord]:
        with self.db.transaction(write=False) as tx:
            rows = tx.execute(
                f"SELECT {_RESERVATION_COLUMNS} FROM reservations WHERE state IN {_ACTIVE_SQL} ORDER BY id"
            )
        return [self._record(r) for r in rows]

    def mark_running(self, reservation_ids: Iterable[int], started: datetime) -> int:
        ids = sorted(set(reservation_ids))
        if not ids:
            return 0
        with self.db.transaction(write=True) as tx:
            changed = tx.execute(
                f"UPDATE reservations SET state = 'running', started_at = ? WHERE id IN {_in(ids)} "
                "AND state = 'reserved' RETURNING id",
                (self.db.ts(started), *ids),
            )
        return len(changed)

    def finish(
        self,
        reservation_ids: Iterable[int],
        state: ReservationState,
        ended: datetime,
        reason: str,
        started: datetime | None = None,
    ) -> int:
        if state.active:
            raise LedgerError(f"finish() moves reservations to a final state, not {state}")
        ids = sorted(set(reservation_ids))
        if not ids:
            return 0
        return self._retry(lambda: self._finish_once(ids, state, utc(ended), reason, started))

    def _finish_once(
        self, ids: list[int], state: ReservationState, ended: datetime, reason: str, started: datetime | None
    ) -> int:
        with self.db.transaction(write=True) as tx:
            rows = tx.execute(
                "SELECT id, reserved_at, started_at, operations_per_second, max_runtime_s, charge_day "
                f"FROM reservations WHERE id IN {_in(ids)} AND state IN {_ACTIVE_SQL} "
                f"ORDER BY id{self._lock_clause}",
                ids,
            )
            if not rows:
                return 0
            actual: dict[int, tuple[float, date]] = {}
            for rid, reserved_at, started_at, rate, max_runtime, charge_day in rows:
                start = self.db.from_ts(started_at) if started_at is not None else started
                ops = actual_operations(
                    state,
                    ops_per_second=float(rate),
                    reserved_at=self.db.from_ts(reserved_at),
                    started_at=start,
                    ended=ended,
                    max_runtime_s=max_runtime,
                )
                actual[int(rid)] = (ops, date.fromisoformat(charge_day))
                tx.execute(
                    "UPDATE reservations SET state = ?, ended_at = ?, started_at = coalesce(started_at, ?), "
                    "actual_operations = ?, reason = ? WHERE id = ?",
                    (str(state), self.db.ts(ended), None if start is None else self.db.ts(start), ops, reason, rid),
                )
            found = sorted(actual)
            charged = tx.execute(
                "SELECT reservation_id, scope, subject, metric, amount FROM reservation_counters "
                f"WHERE reservation_id IN {_in(found)}",
                found,
            )
            deltas: dict[tuple[str, str, str, str], float] = {}
            for rid, scope, subject, metric, amount in charged:
                ops, day = actual[int(rid)]
                if metric == Metric.OPERATIONS:
                    for bucket in (day_bucket(day), year_bucket(day.year), TOTAL_BUCKET):
                        k = (scope, subject, metric, bucket)
                        deltas[k] = deltas.get(k, 0.0) + ops - float(amount)
                else:
                    k = (scope, subject, metric, "now")
                    deltas[k] = deltas.get(k, 0.0) - float(amount)
            self._upsert(tx, sorted((*k, v) for k, v in deltas.items()))
        return len(actual)

    # -- reading back -----------------------------------------------------------------------------------------

    def reservations(
        self, start: datetime | None = None, end: datetime | None = None, request_uid: str | None = None
    ) -> list[ReservationRecord]:
        """Reservations that held anything during [start, end): admitted before ``end`` and not ended before
        ``start``. Reads the history: for reports and tests, never on the admission path."""
        where: list[str] = []
        params: list[object] = []
        if end is not None:
            where.append("reserved_at < ?")
            params.append(self.db.ts(end))
        if start is not None:
            where.append("(ended_at IS NULL OR ended_at >= ?)")
            params.append(self.db.ts(start))
        if request_uid is not None:
            where.append("request_uid = ?")
            params.append(request_uid)
        sql = f"SELECT {_RESERVATION_COLUMNS} FROM reservations"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self.db.transaction(write=False) as tx:
            rows = tx.execute(sql + " ORDER BY id", params)
        return [self._record(r) for r in rows]

    def decisions(self, start: datetime | None = None, end: datetime | None = None) -> list[AuditRecord]:
        """Audit records with ``start <= time < end``, oldest first."""
        where: list[str] = []
        params: list[object] = []
        if start is not None:
            where.append("time >= ?")
            params.append(self.db.ts(start))
        if end is not None:
            where.append("time < ?")
            params.append(self.db.ts(end))
        sql = f"SELECT {_DECISION_COLUMNS} FROM decisions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self.db.transaction(write=False) as tx:
            rows = tx.execute(sql + " ORDER BY id", params)
        return [self._audit(r) for r in rows]

    def _audit(self, r: Row) -> AuditRecord:
        return AuditRecord(
            time=self.db.from_ts(r[0]), request_uid=r[1], operation=r[2], user=r[3], namespace=r[4], kind=r[5],
            name=r[6], tenant=r[7], jurisdiction=r[8], tier=r[9], allowed=bool(r[10]), dry_run=bool(r[11]),
            message=r[12], rules=tuple(json.loads(r[13])), warnings=tuple(json.loads(r[14])), gpus=float(r[15]),
            model=r[16], tpp=float(r[17]), operations=None if r[18] is None else float(r[18]), profile=r[19],
            profile_version=r[20],
        )  # fmt: skip

    def _record(self, r: Row) -> ReservationRecord:
        return ReservationRecord(
            id=int(r[0]), request_uid=r[1], workload=WorkloadRef(r[2], r[3], r[5], r[4]), tenant=r[6],
            jurisdiction=r[7], tier=r[8], model=r[9], gpus=float(r[10]), tpp=float(r[11]),
            operations=None if r[12] is None else float(r[12]), operations_per_second=float(r[13]),
            max_runtime_s=None if r[14] is None else float(r[14]), profile=r[15], profile_version=r[16],
            state=ReservationState(r[17]), reserved_at=self.db.from_ts(r[18]),
            started_at=None if r[19] is None else self.db.from_ts(r[19]),
            ended_at=None if r[20] is None else self.db.from_ts(r[20]),
            actual_operations=None if r[21] is None else float(r[21]), reason=r[22],
        )  # fmt: skip

    @staticmethod
    def _view(records: list[ReservationRecord]) -> ReservationView | None:
        if not records:
            return None
        first = records[0]
        ops = [r.operations for r in records]
        starts = [r.started_at for r in records if r.started_at is not None]
        return ReservationView(
            workload=first.workload,
            reservation_ids=tuple(r.id for r in records),
            tenant=first.tenant,
            jurisdiction=first.jurisdiction,
            tier=first.tier,
            model=first.model,
            state=ReservationState.RUNNING
            if any(r.state is ReservationState.RUNNING for r in records)
            else ReservationState.RESERVED,
            gpus=sum(r.gpus for r in records),
            tpp=sum(r.tpp for r in records),
            operations=None if any(o is None for o in ops) else sum(o for o in ops if o is not None),
            reserved_at=min(r.reserved_at for r in records),
            started_at=min(starts) if starts else None,
        )


__all__ = ["ACTIVE_STATES", "CounterId", "SqlLedger", "actual_operations", "validate"]
