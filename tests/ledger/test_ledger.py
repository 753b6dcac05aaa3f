"""The ledger's behaviour, run identically against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gpuquota.domain import Charge, Metric, Scope, UsageKey
from gpuquota.ledger import LedgerError, ReservationState, ReserveStatus, WorkloadRef, open_ledger, reserving
from gpuquota.ledger.reserving import ReservePlan
from gpuquota.ledger.store import SqlLedger
from tests.ledger.builders import H100_TPP, NOW, audit, concurrent, reservation, rolling, yearly

ACME = concurrent(Scope.TENANT, "acme")
JP = concurrent(Scope.JURISDICTION, "JP")
CLUSTER = concurrent(Scope.CLUSTER, "cluster")


def table_counts(ledger: SqlLedger) -> tuple[int, int, int]:
    with ledger.db.transaction(write=False) as tx:
        return (
            int(tx.execute("SELECT count(*) FROM reservations")[0][0]),
            int(tx.execute("SELECT count(*) FROM reservation_counters")[0][0]),
            int(tx.execute("SELECT count(*) FROM decisions")[0][0]),
        )


def test_reserve_counts_every_scope_and_writes_the_audit_record(ledger: SqlLedger) -> None:
    result = ledger.reserve(reservation("uid-1", tenant_cap=100 * H100_TPP), NOW)
    assert result.status is ReserveStatus.RESERVED
    assert result.reservation_id is not None
    usage = ledger.usage([ACME, JP, CLUSTER, yearly(Scope.TENANT, "acme"), rolling(Scope.TENANT, "acme")], NOW)
    assert usage[ACME] == pytest.approx(8 * H100_TPP)
    assert usage[JP] == pytest.approx(8 * H100_TPP)
    assert usage[CLUSTER] == pytest.approx(8 * H100_TPP)
    assert usage[yearly(Scope.TENANT, "acme")] == pytest.approx(3.6e18)
    assert usage[rolling(Scope.TENANT, "acme")] == pytest.approx(3.6e18)
    [record] = ledger.decisions()
    assert record.request_uid == "uid-1"
    assert record.allowed
    assert record.time == NOW
    assert record.rules == ("tier2-tenant-concurrent",)
    [stored] = ledger.reservations()
    assert stored.id == result.reservation_id
    assert stored.state is ReservationState.RESERVED
    assert stored.workload == WorkloadRef("acme-train", "Job", "uid-1", "batch")


def test_unknown_keys_read_as_zero(ledger: SqlLedger) -> None:
    assert ledger.usage([ACME, yearly(Scope.TENANT, "nobody")], NOW) == {ACME: 0.0, yearly(Scope.TENANT, "nobody"): 0.0}
    assert ledger.usage([], NOW) == {}


def test_a_retried_request_is_idempotent(ledger: SqlLedger) -> None:
    first = ledger.reserve(reservation("uid-1"), NOW)
    again = ledger.reserve(reservation("uid-1"), NOW + timedelta(seconds=3))
    assert again.status is ReserveStatus.DUPLICATE
    assert again.reservation_id == first.reservation_id
    assert ledger.usage([ACME], NOW)[ACME] == pytest.approx(8 * H100_TPP)
    assert table_counts(ledger) == (1, 5, 1)


def test_cap_exceeded_writes_nothing_and_reports_the_charge(ledger: SqlLedger) -> None:
    cap = 20 * H100_TPP
    assert ledger.reserve(reservation("a", tenant_cap=cap), NOW).status is ReserveStatus.RESERVED
    assert ledger.reserve(reservation("b", tenant_cap=cap), NOW).status is ReserveStatus.RESERVED
    before = table_counts(ledger)
    refused = ledger.reserve(reservation("c", tenant_cap=cap), NOW)
    assert refused.status is ReserveStatus.CAP_EXCEEDED
    assert refused.reservation_id is None
    assert refused.exceeded is not None
    assert refused.exceeded.key == ACME
    assert refused.used == pytest.approx(16 * H100_TPP)
    assert table_counts(ledger) == before
    assert ledger.usage([ACME, CLUSTER], NOW) == {
        ACME: pytest.approx(16 * H100_TPP),
        CLUSTER: pytest.approx(16 * H100_TPP),
    }
    # A smaller job still fits exactly to the cap.
    assert ledger.reserve(reservation("d", gpus=4, tenant_cap=cap), NOW).status is ReserveStatus.RESERVED
    assert ledger.usage([ACME], NOW)[ACME] == pytest.approx(cap)


def test_a_refused_uid_can_be_retried_later(ledger: SqlLedger) -> None:
    cap = 8 * H100_TPP
    ledger.reserve(reservation("a", tenant_cap=cap), NOW)
    assert ledger.reserve(reservation("b", tenant_cap=cap), NOW).status is ReserveStatus.CAP_EXCEEDED
    ledger.release(WorkloadRef("acme-train", "Job", "a", "batch"), NOW + timedelta(minutes=1), "deleted")
    assert ledger.reserve(reservation("b", tenant_cap=cap), NOW).status is ReserveStatus.RESERVED


def test_operations_cap_counts_the_window(ledger: SqlLedger) -> None:
    # 1 h at 1e15 op/s = 3.6e18 per job; a yearly cap of 1e19 fits two.
    for uid in ("a", "b"):
        assert ledger.reserve(reservation(uid, ops_cap=1e19), NOW).status is ReserveStatus.RESERVED
    refused = ledger.reserve(reservation("c", ops_cap=1e19), NOW)
    assert refused.status is ReserveStatus.CAP_EXCEEDED
    assert refused.exceeded is not None
    assert refused.exceeded.key == yearly(Scope.TENANT, "acme")
    assert refused.used == pytest.approx(7.2e18)


def test_a_rolling_cap_is_checked_over_its_days(ledger: SqlLedger) -> None:
    def job(uid: str, when: datetime) -> object:
        return reservation(
            uid,
            when=when,
            charges=(Charge(rolling(Scope.TENANT, "acme", 7, when), 3.6e18, 8e18, "weekly"),),
        )

    day0 = NOW
    assert ledger.reserve(job("a", day0), day0).status is ReserveStatus.RESERVED  # type: ignore[arg-type]
    assert ledger.reserve(job("b", day0 + timedelta(days=3)), day0 + timedelta(days=3)).status is (  # type: ignore[arg-type]
        ReserveStatus.RESERVED
    )
    # Day 6: a and b are both inside the 7-day window → 7.2e18 + 3.6e18 > 8e18.
    day6 = day0 + timedelta(days=6)
    refused = ledger.reserve(job("c", day6), day6)  # type: ignore[arg-type]
    assert refused.status is ReserveStatus.CAP_EXCEEDED
    assert refused.used == pytest.approx(7.2e18)
    # Day 7: a's day has rolled out of the window.
    day7 = day0 + timedelta(days=7)
    assert ledger.usage([rolling(Scope.TENANT, "acme", 7, day7)], day7)[rolling(Scope.TENANT, "acme", 7, day7)] == (
        pytest.approx(3.6e18)
    )
    assert ledger.reserve(job("c", day7), day7).status is ReserveStatus.RESERVED  # type: ignore[arg-type]


def test_calendar_year_boundary(ledger: SqlLedger) -> None:
    eve = datetime(2026, 12, 31, 23, 59, 30, tzinfo=UTC)
    new_year = datetime(2027, 1, 1, 0, 0, 30, tzinfo=UTC)
    ledger.reserve(reservation("old", when=eve), eve)
    ledger.reserve(reservation("new", when=new_year), new_year)
    y2026, y2027 = yearly(Scope.TENANT, "acme", eve), yearly(Scope.TENANT, "acme", new_year)
    r30 = rolling(Scope.TENANT, "acme", 30, new_year)
    usage = ledger.usage([y2026, y2027, r30], new_year)
    assert usage[y2026] == pytest.approx(3.6e18)
    assert usage[y2027] == pytest.approx(3.6e18)
    assert usage[r30] == pytest.approx(7.2e18)  # the rolling window spans the boundary
    # Settling the old job after midnight keeps its operations on the day (and year) it was charged to.
    ledger.mark_running([ledger.reservations(request_uid="old")[0].id], eve)
    ledger.release(WorkloadRef("acme-train", "Job", "old", "batch"), eve + timedelta(seconds=600), "finished")
    usage = ledger.usage([y2026, y2027], new_year)
    assert usage[y2026] == pytest.approx(6e17)
    assert usage[y2027] == pytest.approx(3.6e18)


def test_total_window(ledger: SqlLedger) -> None:
    total = UsageKey(Scope.TENANT, "acme", Metric.OPERATIONS, "total")
    ledger.reserve(reservation("a", charges=(Charge(total, 5.0, 12.0),)), NOW)
    ledger.reserve(reservation("b", charges=(Charge(total, 5.0, 12.0),)), NOW + timedelta(days=400))
    assert ledger.usage([total], NOW)[total] == 10.0
    assert ledger.reserve(reservation("c", charges=(Charge(total, 5.0, 12.0),)), NOW).status is (
        ReserveStatus.CAP_EXCEEDED
    )


def test_charges_on_one_counter_under_several_windows_count_once(ledger: SqlLedger) -> None:
    r = reservation("a")  # charges the tenant's operations under a yearly and a 30-day window
    ledger.reserve(r, NOW)
    assert ledger.usage([yearly(Scope.TENANT, "acme")], NOW)[yearly(Scope.TENANT, "acme")] == pytest.approx(3.6e18)


def test_scale_up_adds_to_the_workload_and_release_frees_all(ledger: SqlLedger) -> None:
    ledger.reserve(reservation("create", name="llm"), NOW)
    ledger.reserve(reservation("update", name="llm", gpus=8), NOW + timedelta(minutes=5))
    view = ledger.find_active(WorkloadRef("acme-train", "Job", "llm", "batch"))
    assert view is not None
    assert view.gpus == 16
    assert view.tpp == pytest.approx(16 * H100_TPP)
    assert len(view.reservation_ids) == 2
    assert view.state is ReservationState.RESERVED
    assert view.reserved_at == NOW
    assert ledger.find_active(WorkloadRef("acme-train", "Job", "llm", "kubeflow.org")) is None
    released = ledger.release(WorkloadRef("acme-train", "Job", "llm", "batch"), NOW + timedelta(hours=2), "deleted")
    assert released == 2
    assert ledger.find_active(WorkloadRef("acme-train", "Job", "llm", "batch")) is None
    assert ledger.usage([ACME], NOW)[ACME] == 0.0
    assert ledger.release(WorkloadRef("acme-train", "Job", "llm", "batch"), NOW + timedelta(hours=3), "again") == 0


def test_settlement_replaces_reserved_operations_by_actual(ledger: SqlLedger) -> None:
    ledger.reserve(reservation("a", ops_per_second=2e15, max_runtime_s=3600), NOW)
    [rec] = ledger.active_reservations()
    assert ledger.mark_running([rec.id], NOW + timedelta(seconds=60)) == 1
    assert ledger.mark_running([rec.id], NOW + timedelta(seconds=90)) == 0  # keeps the first start
    ended = NOW + timedelta(seconds=60 + 900)
    assert ledger.finish([rec.id], ReservationState.SETTLED, ended, "Complete") == 1
    [done] = ledger.reservations()
    assert done.state is ReservationState.SETTLED
    assert done.started_at == NOW + timedelta(seconds=60)
    assert done.ended_at == ended
    assert done.actual_operations == pytest.approx(2e15 * 900)
    usage = ledger.usage([ACME, yearly(Scope.TENANT, "acme"), rolling(Scope.TENANT, "acme")], ended)
    assert usage[ACME] == pytest.approx(0.0, abs=1e-6)
    assert usage[yearly(Scope.TENANT, "acme")] == pytest.approx(1.8e18)
    assert usage[rolling(Scope.TENANT, "acme", 30, ended)] == pytest.approx(1.8e18)
    # Finishing again changes nothing.
    assert ledger.finish([rec.id], ReservationState.RELEASED, ended + timedelta(hours=1), "late") == 0
    assert ledger.usage([yearly(Scope.TENANT, "acme")], ended)[yearly(Scope.TENANT, "acme")] == pytest.approx(1.8e18)


def test_actual_runtime_is_never_clamped_to_the_declared_runtime(ledger: SqlLedger) -> None:
    """A run declared at 10 minutes that ran 5 hours spent 5 hours of operations: the declaration is a claim."""
    ledger.reserve(reservation("a", max_runtime_s=600), NOW)
    [rec] = ledger.active_reservations()
    ledger.finish([rec.id], ReservationState.SETTLED, NOW + timedelta(hours=5), "Complete", started=NOW)
    assert ledger.reservations()[0].actual_operations == pytest.approx(1e15 * 5 * 3600)
    key = yearly(Scope.TENANT, "acme")
    assert ledger.usage([key], NOW)[key] == pytest.approx(1e15 * 5 * 3600)


def test_unseen_start_counts_from_admission(ledger: SqlLedger) -> None:
    ledger.reserve(reservation("a"), NOW)
    ledger.release(WorkloadRef("acme-train", "Job", "a", "batch"), NOW + timedelta(seconds=100), "deleted")
    assert ledger.reservations()[0].actual_operations == pytest.approx(1e17)


def test_expiry_frees_the_cap_and_spends_nothing(ledger: SqlLedger) -> None:
    cap = 8 * H100_TPP
    ledger.reserve(reservation("ghost", tenant_cap=cap), NOW)
    assert ledger.reserve(reservation("next", tenant_cap=cap), NOW).status is ReserveStatus.CAP_EXCEEDED
    [ghost] = ledger.active_reservations()
    assert ledger.finish([ghost.id], ReservationState.EXPIRED, NOW + timedelta(minutes=6), "never created") == 1
    assert ledger.usage([ACME, yearly(Scope.TENANT, "acme")], NOW) == {
        ACME: pytest.approx(0.0, abs=1e-6),
        yearly(Scope.TENANT, "acme"): pytest.approx(0.0, abs=1e-3),
    }
    assert ledger.reservations()[0].state is ReservationState.EXPIRED
    assert ledger.reserve(reservation("next", tenant_cap=cap), NOW).status is ReserveStatus.RESERVED


def test_finish_refuses_an_active_state(ledger: SqlLedger) -> None:
    with pytest.raises(LedgerError, match="final state"):
        ledger.finish([1], ReservationState.RUNNING, NOW, "x")


def test_record_decision_keeps_denials(ledger: SqlLedger) -> None:
    w = WorkloadRef("acme-train", "PyTorchJob", "big", "kubeflow.org")
    denial = audit("deny-1", w, "acme", allowed=False, message="tier2 cap exceeded")
    dry = replace(audit("dry-1", w, "acme", dry_run=True), warnings=("unknown GPU model",))
    ledger.record_decision(denial)
    ledger.record_decision(dry)
    records = ledger.decisions(NOW - timedelta(seconds=1), NOW + timedelta(seconds=1))
    assert [r.request_uid for r in records] == ["deny-1", "dry-1"]
    assert records[0] == denial
    assert records[1].warnings == ("unknown GPU model",)
    assert records[1].dry_run
    assert ledger.decisions(NOW + timedelta(seconds=1)) == []
    assert table_counts(ledger) == (0, 0, 2)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"request_uid": ""}, "request uid"),
        ({"tenant": ""}, "no tenant"),
        ({"gpus": float("nan")}, "gpus"),
        ({"tpp": -1.0}, "tpp"),
        ({"operations": float("inf")}, "operations"),
        ({"workload": WorkloadRef("", "Job", "x")}, "workload"),
        ({"charges": (Charge(UsageKey(Scope.TENANT, "acme", Metric.OPERATIONS, "fortnight"), 1.0),)}, "window"),
        ({"charges": (Charge(ACME, 1.0, float("nan")),)}, "cap"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    ledger: SqlLedger, change: dict[str, object], message: str
) -> None:
    bad = replace(reservation("bad"), **change)  # type: ignore[arg-type]
    with pytest.raises(LedgerError, match=message):
        ledger.reserve(bad, NOW)
    assert table_counts(ledger) == (0, 0, 0)
    assert ledger.usage([ACME], NOW)[ACME] == 0.0


def test_a_failure_inside_the_transaction_rolls_everything_back(
    ledger: SqlLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.reserve(reservation("before"), NOW)

    real = reserving.plan_reservation

    def breaking_the_last_counter(*args: Any) -> ReservePlan:
        # The database refuses the last counter row (NULL amount), after the reservation, its audit record, its
        # increments and the other counter rows were written in the same transaction.
        plan = real(*args)
        *rows, last = plan.counters
        return replace(plan, counters=(*rows, (*last[:4], None)))  # type: ignore[arg-type]

    monkeypatch.setattr("gpuquota.ledger.store.plan_reservation", breaking_the_last_counter)
    with pytest.raises(LedgerError, match=r"(?i)null"):
        ledger.reserve(reservation("during", tenant_cap=1e12), NOW)
    monkeypatch.undo()
    assert table_counts(ledger) == (1, 5, 1)
    assert ledger.usage([ACME], NOW)[ACME] == pytest.approx(8 * H100_TPP)
    assert ledger.reserve(reservation("during"), NOW).status is ReserveStatus.RESERVED


def test_threads_share_one_ledger_without_overrun(ledger: SqlLedger) -> None:
    cap = 40 * H100_TPP  # five 8-GPU jobs
    start = threading.Barrier(8)

    def one(i: int) -> ReserveStatus:
        if i < 8:
            start.wait()
        return ledger.reserve(reservation(f"t{i}", tenant_cap=cap), NOW).status

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(24)))
    assert statuses.count(ReserveStatus.RESERVED) == 5
    assert ledger.usage([ACME], NOW)[ACME] == pytest.approx(cap)
    assert len(ledger.active_reservations()) == 5


def test_ping_and_close(ledger: SqlLedger) -> None:
    ledger.ping()
    ledger.close()
    with pytest.raises(LedgerError):
        ledger.ping()


def test_count_active_counts_reserved_and_running_only(ledger: SqlLedger) -> None:
    assert ledger.count_active() == 0
    for uid in ("a", "b", "c", "d"):
        assert ledger.reserve(reservation(uid), NOW).status is ReserveStatus.RESERVED
    assert ledger.reserve(reservation("a"), NOW).status is ReserveStatus.DUPLICATE  # a retry adds nothing
    assert ledger.mark_running([ledger.reservations(request_uid="b")[0].id], NOW + timedelta(seconds=5)) == 1
    assert ledger.count_active() == 4  # running still counts
    ledger.release(WorkloadRef("acme-train", "Job", "a", "batch"), NOW + timedelta(minutes=1), "deleted")
    ledger.finish([ledger.reservations(request_uid="c")[0].id], ReservationState.SETTLED, NOW + timedelta(hours=1),
                  "Complete")
    assert ledger.count_active() == 2
    assert ledger.count_active() == len(ledger.active_reservations())


def test_count_active_is_answered_from_the_active_index_on_sqlite(tmp_path: Path) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'plan.db'}")
    try:
        with ledger.db.transaction(write=False) as tx:
            plan = tx.execute("EXPLAIN QUERY PLAN SELECT count(*) FROM reservations "
                              "WHERE cluster = 'default' AND state IN ('reserved', 'running')")
    finally:
        ledger.close()
    assert "reservations_cluster_active" in " ".join(str(row[-1]) for row in plan)  # one cluster's active rows
