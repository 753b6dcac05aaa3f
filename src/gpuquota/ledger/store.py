"""The ledger over any ``Database``: reserving, usage, settlement and the audit, written once for both backends.

Every write is one transaction. Reserving (planned in ``reserving.py``, executed by the backend) inserts the
reservation first — its unique ``request_uid`` makes retries idempotent and makes a concurrent duplicate wait for
the first — then adds to the counter rows in one global order, which takes their locks, then re-reads the capped
windows and rolls everything back if a cap no longer fits. Settlement takes the same locks in the same order.
Nothing half-written survives an error, a cap refusal or a crash.
"""

# SQL here is assembled from constants and ``?`` placeholder lists only; every value goes in as a parameter.
# ruff: noqa: S608

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, time
from functools import lru_cache
from typing import Any, TypeVar

from gpuquota.clusters import DEFAULT_CLUSTER, ClusterIdentity, claim_problem
from gpuquota.domain import Metric, UsageKey
from gpuquota.ledger.counters import (
    TOTAL_BUCKET,
    CounterRow,
    bucket_range,
    day_bucket,
    fits,
    year_bucket,
)
from gpuquota.ledger.database import CapCheckFailed, Database, DuplicateRequest, Row, TransientConflict, Tx
from gpuquota.ledger.reserving import (
    DECISION_COLUMNS,
    UPSERT_COUNTERS,
    audit_values,
    decision_fingerprint,
    plan_reservation,
)
from gpuquota.ledger.schema import migrate
from gpuquota.ledger.timeutil import utc, utc_day
from gpuquota.ledger.types import (
    AuditRecord,
    ClusterConflict,
    LedgerError,
    Reservation,
    ReservationRecord,
    ReservationState,
    ReservationView,
    ReserveResult,
    ReserveStatus,
    Rider,
    RideResult,
    RiderRecord,
    RideStatus,
    WorkloadRef,
)

T = TypeVar("T")
MAX_ATTEMPTS = 5

_RESERVATION_COLUMNS = (
    "id, request_uid, namespace, kind, api_group, name, tenant, jurisdiction, tier, model, gpus, tpp, operations, "
    "operations_per_second, max_runtime_s, profile, profile_version, state, reserved_at, started_at, ended_at, "
    "actual_operations, reason, object_uid, releasing_at, accrued_operations, cluster"
)
_ACTIVE_SQL = "('reserved', 'running')"
_WORKLOAD_SQL = "cluster = ? AND namespace = ? AND name = ? AND kind = ? AND api_group = ?"


def _workload_params(cluster: str, w: WorkloadRef) -> tuple[str, str, str, str, str]:
    """A workload is one cluster's: ``train`` in two clusters is two workloads (reservations_cluster_active)."""
    return (cluster, w.namespace, w.name, w.kind, w.group)


def _fields(columns: str) -> tuple[str, ...]:
    return tuple(column.strip() for column in columns.split(","))


_RESERVATION_FIELDS = _fields(_RESERVATION_COLUMNS)
_DECISION_FIELDS = (*_fields(DECISION_COLUMNS), "repeats", "last_time")


def _named(fields: tuple[str, ...], row: Row) -> dict[str, Any]:
    """A row selected with ``fields`` (the SELECT's column list), by column name: adding a column moves nothing."""
    return dict(zip(fields, row, strict=True))


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _finite(value: float | None, *, optional: bool = False) -> bool:
    if value is None:
        return optional
    return isinstance(value, int | float) and not math.isnan(value) and not math.isinf(value) and value >= 0


def validate(reservation: Reservation) -> None:
    """Reject a reservation that would store nonsense, before any row is touched. (Cheap on the happy path:
    messages are built only for a failure.)"""
    r = reservation
    if not r.request_uid:
        raise LedgerError("reservation without a request uid")
    if not (r.workload.namespace and r.workload.kind and r.workload.name):
        raise LedgerError(f"reservation {r.request_uid}: incomplete workload reference {r.workload!r}")
    if not r.tenant:
        raise LedgerError(f"reservation {r.request_uid}: no tenant")
    for name, value, optional in (
        ("gpus", r.gpus, False),
        ("tpp", r.tpp, False),
        ("operations_per_second", r.operations_per_second, False),
        ("operations", r.operations, True),
        ("max_runtime_s", r.max_runtime_s, True),
    ):
        if not _finite(value, optional=optional):
            raise LedgerError(f"reservation {r.request_uid}: {name} must be a finite number ≥ 0, got {value!r}")
    for charge in r.charges:
        if not _finite(charge.amount):
            raise LedgerError(f"reservation {r.request_uid}: charge on {charge.key} must be finite and ≥ 0")
        if not _finite(charge.cap, optional=True):
            raise LedgerError(f"reservation {r.request_uid}: cap on {charge.key} must be finite and ≥ 0")
        try:
            bucket_range(charge.key)
        except ValueError as exc:
            raise LedgerError(f"reservation {r.request_uid}: {exc}") from exc


def _in(values: Sequence[object]) -> str:
    return "(" + ", ".join("?" * len(values)) + ")"


def actual_operations(
    state: ReservationState,
    *,
    ops_per_second: float,
    reserved_at: datetime,
    started_at: datetime | None,
    ended: datetime,
) -> float:
    """Operations a finished reservation really spent: rate × the runtime it really had — never clamped to a
    declared runtime (``max_runtime_s`` is a claim; a run past it has spent more, and that is charged).

    A workload never created spent nothing. One whose start nobody saw is counted from its admission — an upper
    bound, because usage is never under-counted."""
    if state is ReservationState.EXPIRED:
        return 0.0
    start = started_at if started_at is not None else reserved_at
    return ops_per_second * max(0.0, (ended - start).total_seconds())


class SqlLedger:
    """The ledger on SQLite or PostgreSQL. Thread-safe: each call borrows a pooled connection.

    A handle speaks for one cluster (``cluster``): what it writes records that cluster, and what it reads for the
    webhook's and the reconciler's work (a workload's reservations, the active ones, the decisions it prunes) is
    that cluster's alone — while usage counters are the fleet's. Opened with an ``identity``, it first claims the
    cluster's name on the ledger (``gpuquota.clusters``) and refuses to open, writing nothing, when it may not."""

    def __init__(self, db: Database, identity: ClusterIdentity | None = None) -> None:
        self.db = db
        self.cluster = DEFAULT_CLUSTER if identity is None else identity.name
        self._lock_clause = " FOR UPDATE" if db.name == "postgresql" else ""
        try:
            self.schema_version_found = self._retry(lambda: migrate(db))
            if identity is not None:
                self._retry(lambda: self._claim(identity))
        except BaseException:
            db.close()
            raise

    def _claim(self, identity: ClusterIdentity) -> None:
        """Check and record the claim under the migration lock (one start at a time); a refusal rolls back."""
        now = self.db.ts(datetime.now(UTC))
        with self.db.migration_lock() as tx:
            registered = {str(n): u for n, u in tx.execute("SELECT name, kube_system_uid FROM clusters")}
            problem = claim_problem(identity, registered)
            if problem is not None:
                raise ClusterConflict(problem)
            if identity.name in registered:
                tx.execute(
                    "UPDATE clusters SET kube_system_uid = coalesce(kube_system_uid, ?), last_start = ? WHERE name = ?",
                    (identity.uid, now, identity.name),
                )
            else:
                tx.execute(
                    "INSERT INTO clusters (name, kube_system_uid, registered_at, last_start) VALUES (?, ?, ?, ?)",
                    (identity.name, identity.uid, now, now),
                )

    def clusters(self) -> dict[str, str | None]:
        """The clusters registered on this ledger: name → kube-system namespace uid (``None`` until known)."""
        with self.db.transaction(write=False) as tx:
            return {str(n): u for n, u in tx.execute("SELECT name, kube_system_uid FROM clusters ORDER BY name")}

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _retry(self, fn: Callable[[], T]) -> T:
        for attempt in range(MAX_ATTEMPTS):
            try:
                return fn()
            except TransientConflict:
                if attempt == MAX_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _upsert(self, tx: Tx, rows: list[CounterRow]) -> None:
        """Add to counter rows in the order given (callers sort them: the one global lock order)."""
        if rows:
            values = ", ".join(["(?, ?, ?, ?, ?)"] * len(rows))
            tx.execute(UPSERT_COUNTERS.format(values=values), [v for row in rows for v in row])

    @staticmethod
    @lru_cache(maxsize=1024)
    def _sums_statement(keys: tuple[UsageKey, ...]) -> tuple[str, tuple[object, ...]]:
        """One statement summing each key's window: (index, sum) rows. Cached: a policy asks for the same few key
        sets on every review, and windows roll only daily."""
        parts: list[str] = []
        params: list[object] = []
        for i, key in enumerate(keys):
            rng = bucket_range(key)
            parts.append(
                f"SELECT {i}, sum(amount) FROM counters "
                "WHERE scope = ? AND subject = ? AND metric = ? AND bucket BETWEEN ? AND ?"
            )
            params += [str(key.scope), key.subject, str(key.metric), rng.low, rng.high]
        return " UNION ALL ".join(parts), tuple(params)

    # -- the webhook's interface ------------------------------------------------------------------------------

    def usage(self, keys: Iterable[UsageKey], now: datetime) -> dict[UsageKey, float]:
        wanted = tuple(dict.fromkeys(keys))
        if not wanted:
            return {}
        try:
            sql, params = self._sums_statement(wanted)
        except ValueError as exc:
            raise LedgerError(str(exc)) from exc
        rows = self.db.read(sql, params)
        values = {int(r[0]): float(r[1] or 0.0) for r in rows}
        return {key: values.get(i, 0.0) for i, key in enumerate(wanted)}

    def reserve(self, reservation: Reservation, now: datetime) -> ReserveResult:
        validate(reservation)
        return self._retry(lambda: self._reserve_once(reservation, now))

    def _reserve_once(self, r: Reservation, now: datetime) -> ReserveResult:
        """One transaction (one round trip on PostgreSQL): the reservation, its audit record, its counter
        increments — which lock the counter rows, in one global order — and the cap checks, which sum each capped
        window after those locks are held and roll everything back when a cap no longer fits."""
        plan = plan_reservation(r, utc_day(now), self.db.ts(now), self.db.ts(r.audit.time), self.cluster)
        try:
            rid = self.db.reserve(plan)
        except DuplicateRequest:
            return ReserveResult(ReserveStatus.DUPLICATE, self._reservation_id(r.request_uid))
        except CapCheckFailed as refused:
            capped = [c for c in r.charges if c.cap is not None]
            return ReserveResult(ReserveStatus.CAP_EXCEEDED, None, capped[refused.index], refused.used)
        return ReserveResult(ReserveStatus.RESERVED, rid)

    def _reservation_id(self, request_uid: str) -> int | None:
        with self.db.transaction(write=False) as tx:
            rows = tx.execute("SELECT id FROM reservations WHERE request_uid = ?", (request_uid,))
        return int(rows[0][0]) if rows else None

    def record_decision(self, audit: AuditRecord) -> None:
        """A decision without a reservation. A denial identical to one already recorded the same UTC day (same
        request in every field but its uid and time) adds to that record's ``repeats`` and ``last_time`` instead
        of a row: what bounds the ledger's growth under a loop of denied requests."""
        at = self.db.ts(audit.time)
        with self.db.transaction(write=True) as tx:
            if audit.allowed:
                values = audit_values(audit, at, self.cluster)
                tx.execute(f"INSERT INTO decisions ({DECISION_COLUMNS}) VALUES ({', '.join('?' * len(values))})",
                           values)
                return
            fingerprint = decision_fingerprint(audit, self.cluster)
            day = self.db.ts(datetime.combine(utc_day(audit.time), time.min, tzinfo=UTC))
            folded = tx.execute(
                "UPDATE decisions SET repeats = repeats + 1, last_time = ? WHERE id = (SELECT max(id) FROM decisions "
                "WHERE fingerprint = ? AND time >= ?) RETURNING id",
                (at, fingerprint, day),
            )
            if not folded:
                values = (*audit_values(audit, at, self.cluster), fingerprint)
                tx.execute(
                    f"INSERT INTO decisions ({DECISION_COLUMNS}, fingerprint) VALUES ({', '.join('?' * len(values))})",
                    values,
                )

    def prune_decisions(self, before: datetime, batch: int = 5_000) -> int:
        """Delete this cluster's decision records older than ``before`` (its retention setting), at most ``batch``
        per transaction so no lock is held long; returns how many went."""
        cutoff = self.db.ts(before)
        removed = 0
        while True:
            with self.db.transaction(write=True) as tx:
                rows = tx.execute(
                    "DELETE FROM decisions WHERE id IN (SELECT id FROM decisions WHERE time < ? AND cluster = ? "
                    "ORDER BY id LIMIT ?) RETURNING id",
                    (cutoff, self.cluster, batch),
                )
            removed += len(rows)
            if len(rows) < batch:
                return removed

    def release(self, workload: WorkloadRef, now: datetime, reason: str) -> int:
        with self.db.transaction(write=False) as tx:
            rows = tx.execute(f"SELECT id FROM reservations WHERE {_WORKLOAD_SQL} AND state IN {_ACTIVE_SQL}",
                              _workload_params(self.cluster, workload))  # fmt: skip
        return self.finish([int(r[0]) for r in rows], ReservationState.RELEASED, now, reason)

    def mark_releasing(self, workload: WorkloadRef, now: datetime, reason: str) -> int:
        with self.db.transaction(write=True) as tx:
            changed = tx.execute(
                f"UPDATE reservations SET releasing_at = ?, reason = ? WHERE {_WORKLOAD_SQL} "
                f"AND state IN {_ACTIVE_SQL} AND releasing_at IS NULL RETURNING id",
                (self.db.ts(now), reason, *_workload_params(self.cluster, workload)),
            )
        return len(changed)

    def find_active(self, workload: WorkloadRef) -> ReservationView | None:
        with self.db.transaction(write=False) as tx:
            rows = tx.execute(
                f"SELECT {_RESERVATION_COLUMNS} FROM reservations WHERE {_WORKLOAD_SQL} "
                f"AND state IN {_ACTIVE_SQL} AND releasing_at IS NULL ORDER BY id",
                _workload_params(self.cluster, workload),
            )
        return self._view([self._record(r) for r in rows])

    def reserved_by(self, request_uid: str) -> int | None:
        return self._reservation_id(request_uid)

    def ride(self, owner: WorkloadRef, owner_uid: str, rider: Rider, now: datetime) -> RideResult:
        if not (rider.pod_uid and _finite(rider.gpus)):
            raise LedgerError(f"rider {rider!r}: needs a pod uid and a finite GPU count ≥ 0")
        return self._retry(lambda: self._ride_once(owner, owner_uid, rider, now))

    def _ride_once(self, owner: WorkloadRef, owner_uid: str, rider: Rider, now: datetime) -> RideResult:
        """Locks the owner's reservation rows (PostgreSQL FOR UPDATE; SQLite's write transaction excludes every
        other writer), so two pods racing for the last GPUs of a budget cannot both ride."""
        with self.db.transaction(write=True) as tx:
            rows = tx.execute(
                f"SELECT id, gpus, object_uid FROM reservations WHERE {_WORKLOAD_SQL} AND state IN {_ACTIVE_SQL} "
                f"AND releasing_at IS NULL ORDER BY id{self._lock_clause}",
                _workload_params(self.cluster, owner),
            )
            # A pod naming its owner's uid rides only on that object's reservations: a re-created object of the
            # same name is another workload.
            rows = [r for r in rows if not owner_uid or not r[2] or r[2] == owner_uid]
            if not rows:
                return RideResult(RideStatus.NO_OWNER)
            ids = [int(r[0]) for r in rows]
            budget = sum(float(r[1]) for r in rows)
            already = tx.execute(
                f"SELECT count(*) FROM riders WHERE reservation_id IN {_in(ids)} AND pod_uid = ?", (*ids, rider.pod_uid)
            )
            used_rows = tx.execute(
                f"SELECT coalesce(sum(gpus), 0) FROM riders WHERE reservation_id IN {_in(ids)} AND gone_at IS NULL",
                ids,
            )
            riding = float(used_rows[0][0] or 0.0)
            if int(already[0][0]):
                return RideResult(RideStatus.DUPLICATE, budget, riding)
            if not fits(riding, rider.gpus, budget):
                return RideResult(RideStatus.OVER_BUDGET, budget, riding)
            tx.execute(
                "INSERT INTO riders (reservation_id, pod_uid, namespace, name, gpus, admitted_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (ids[0], rider.pod_uid, rider.namespace, rider.name, float(rider.gpus), self.db.ts(now)),
            )
        return RideResult(RideStatus.RIDING, budget, riding)

    def count_active(self) -> int:
        with self.db.transaction(write=False) as tx:  # the partial index reservations_active covers this WHERE
            rows = tx.execute(f"SELECT count(*) FROM reservations WHERE cluster = ? AND state IN {_ACTIVE_SQL}",
                              (self.cluster,))
        return int(rows[0][0])

    def ping(self) -> None:
        self.db.ping()

    def close(self) -> None:
        self.db.close()

    # -- the reconciler's interface ---------------------------------------------------------------------------

    def active_reservations(self) -> list[ReservationRecord]:
        """This cluster's: another cluster's reservations are that cluster's reconciler's to settle."""
        with self.db.transaction(write=False) as tx:
            rows = tx.execute(
                f"SELECT {_RESERVATION_COLUMNS} FROM reservations WHERE cluster = ? AND state IN {_ACTIVE_SQL} "
                "ORDER BY id",
                (self.cluster,),
            )
        return [self._record(r) for r in rows]

    def live_riders(self) -> list[RiderRecord]:
        with self.db.transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT r.pod_uid, r.namespace, r.name, r.gpus, r.reservation_id, r.admitted_at FROM riders r "
                f"JOIN reservations s ON s.id = r.reservation_id WHERE r.gone_at IS NULL AND s.state IN {_ACTIVE_SQL} "
                "AND s.cluster = ? ORDER BY r.reservation_id, r.pod_uid",
                (self.cluster,),
            )
        return [RiderRecord(str(r[0]), str(r[1]), str(r[2]), float(r[3]), int(r[4]), self.db.from_ts(r[5]))
                for r in rows]  # fmt: skip

    def riders_gone(self, riders: Iterable[tuple[int, str]], at: datetime) -> int:
        pairs = sorted(set(riders))
        if not pairs:
            return 0
        changed = 0
        with self.db.transaction(write=True) as tx:
            for rid, pod_uid in pairs:
                changed += len(tx.execute(
                    "UPDATE riders SET gone_at = ? WHERE reservation_id = ? AND pod_uid = ? AND gone_at IS NULL "
                    "RETURNING pod_uid",
                    (self.db.ts(at), rid, pod_uid),
                ))  # fmt: skip
        return changed

    def accrue(self, measured: Iterable[tuple[int, float]], at: datetime) -> int:
        wanted = {rid: ops for rid, ops in measured if _finite(ops)}
        if not wanted:
            return 0
        return self._retry(lambda: self._accrue_once(wanted, utc(at)))

    def _accrue_once(self, wanted: dict[int, float], at: datetime) -> int:
        """Raise each running reservation's operations counters to what it measurably spent: the part above its
        reserved operations not yet accrued goes into today's buckets (so rolling windows see it when it ran)."""
        ids = sorted(wanted)
        with self.db.transaction(write=True) as tx:
            rows = tx.execute(
                f"SELECT id, coalesce(operations, 0), accrued_operations FROM reservations WHERE id IN {_in(ids)} "
                f"AND state IN {_ACTIVE_SQL} ORDER BY id{self._lock_clause}",
                ids,
            )
            extra: dict[int, float] = {}
            for rid, reserved, accrued in rows:
                new = wanted[int(rid)]
                if new <= float(accrued):
                    continue
                extra[int(rid)] = max(0.0, new - float(reserved)) - max(0.0, float(accrued) - float(reserved))
                tx.execute("UPDATE reservations SET accrued_operations = ? WHERE id = ?", (new, rid))
            charged = [rid for rid, ops in extra.items() if ops > 0]
            if charged:
                counters = tx.execute(
                    "SELECT reservation_id, scope, subject, metric FROM reservation_counters "
                    f"WHERE reservation_id IN {_in(charged)} AND metric = ?",
                    (*charged, str(Metric.OPERATIONS)),
                )
                day = at.date()
                deltas: dict[tuple[str, str, str, str], float] = {}
                for rid, scope, subject, metric in counters:
                    for bucket in (day_bucket(day), year_bucket(day.year), TOTAL_BUCKET):
                        k = (scope, subject, metric, bucket)
                        deltas[k] = deltas.get(k, 0.0) + extra[int(rid)]
                self._upsert(tx, sorted((*k, v) for k, v in deltas.items()))
        return len(extra)

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
                "SELECT id, reserved_at, started_at, operations_per_second, charge_day, "
                f"coalesce(operations, 0), accrued_operations FROM reservations WHERE id IN {_in(ids)} "
                f"AND state IN {_ACTIVE_SQL} ORDER BY id{self._lock_clause}",
                ids,
            )
            if not rows:
                return 0
            actual: dict[int, tuple[float, date]] = {}
            # What accrual already added beyond the reservation is in the counters: settle only the rest.
            accrued_extra: dict[int, float] = {int(r[0]): max(0.0, float(r[6]) - float(r[5])) for r in rows}
            for rid, reserved_at, started_at, rate, charge_day, _reserved, accrued in rows:
                start = self.db.from_ts(started_at) if started_at is not None else started
                ops = actual_operations(
                    state,
                    ops_per_second=float(rate),
                    reserved_at=self.db.from_ts(reserved_at),
                    started_at=start,
                    ended=ended,
                )
                if state is not ReservationState.EXPIRED:  # what was measured while it ran is a floor
                    ops = max(ops, float(accrued))
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
                        deltas[k] = deltas.get(k, 0.0) + ops - float(amount) - accrued_extra[int(rid)]
                else:
                    k = (scope, subject, metric, "now")
                    deltas[k] = deltas.get(k, 0.0) - float(amount)
            self._upsert(tx, sorted((*k, v) for k, v in deltas.items()))
            tx.execute(f"UPDATE riders SET gone_at = ? WHERE reservation_id IN {_in(found)} AND gone_at IS NULL",
                       (self.db.ts(ended), *found))  # fmt: skip
        return len(actual)

    # -- reading back -----------------------------------------------------------------------------------------

    def reservations(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        request_uid: str | None = None,
        cluster: str | None = None,
    ) -> list[ReservationRecord]:
        """Reservations that held anything during [start, end): admitted before ``end`` and not ended before
        ``start`` — every cluster's, or ``cluster``'s. Reads the history: for reports and tests, never on the
        admission path."""
        where: list[str] = []
        params: list[object] = []
        if cluster is not None:
            where.append("cluster = ?")
            params.append(cluster)
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

    def decisions(
        self, start: datetime | None = None, end: datetime | None = None, cluster: str | None = None
    ) -> list[AuditRecord]:
        """Audit records with ``start <= time < end`` (every cluster's, or ``cluster``'s), oldest first."""
        where: list[str] = []
        params: list[object] = []
        if cluster is not None:
            where.append("cluster = ?")
            params.append(cluster)
        if start is not None:
            where.append("time >= ?")
            params.append(self.db.ts(start))
        if end is not None:
            where.append("time < ?")
            params.append(self.db.ts(end))
        sql = f"SELECT {', '.join(_DECISION_FIELDS)} FROM decisions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self.db.transaction(write=False) as tx:
            rows = tx.execute(sql + " ORDER BY id", params)
        return [self._audit(r) for r in rows]

    def _audit(self, row: Row) -> AuditRecord:
        r = _named(_DECISION_FIELDS, row)
        return AuditRecord(
            time=self.db.from_ts(r["time"]), request_uid=r["request_uid"], operation=r["operation"],
            user=r["user_name"], namespace=r["namespace"], kind=r["kind"], name=r["name"], tenant=r["tenant"],
            jurisdiction=r["jurisdiction"], tier=r["tier"], allowed=bool(r["allowed"]), dry_run=bool(r["dry_run"]),
            message=r["message"], rules=tuple(json.loads(r["rules"])), warnings=tuple(json.loads(r["warnings"])),
            gpus=float(r["gpus"]), model=r["model"], tpp=float(r["tpp"]), operations=_opt_float(r["operations"]),
            profile=r["profile"], profile_version=r["profile_version"], repeats=int(r["repeats"]),
            last_time=self._opt_ts(r["last_time"]), cluster=r["cluster"],
        )  # fmt: skip

    def _record(self, row: Row) -> ReservationRecord:
        r = _named(_RESERVATION_FIELDS, row)
        return ReservationRecord(
            id=int(r["id"]), request_uid=r["request_uid"],
            workload=WorkloadRef(r["namespace"], r["kind"], r["name"], r["api_group"]), tenant=r["tenant"],
            jurisdiction=r["jurisdiction"], tier=r["tier"], model=r["model"], gpus=float(r["gpus"]),
            tpp=float(r["tpp"]), operations=_opt_float(r["operations"]),
            operations_per_second=float(r["operations_per_second"]), max_runtime_s=_opt_float(r["max_runtime_s"]),
            profile=r["profile"], profile_version=r["profile_version"], state=ReservationState(r["state"]),
            reserved_at=self.db.from_ts(r["reserved_at"]), started_at=self._opt_ts(r["started_at"]),
            ended_at=self._opt_ts(r["ended_at"]), actual_operations=_opt_float(r["actual_operations"]),
            reason=r["reason"], object_uid=r["object_uid"] or "", releasing_at=self._opt_ts(r["releasing_at"]),
            accrued_operations=float(r["accrued_operations"] or 0.0), cluster=r["cluster"],
        )  # fmt: skip

    def _opt_ts(self, value: object) -> datetime | None:
        return None if value is None else self.db.from_ts(value)

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
            object_uid=first.object_uid,
        )


__all__ = ["SqlLedger", "actual_operations", "validate"]
