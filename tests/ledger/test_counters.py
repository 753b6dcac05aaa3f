"""The pure part of the ledger: which counter rows a reservation touches and which a window sums; and a model
check of reserve/release sequences against a plain in-memory account."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from gpuquota.domain import Charge, Metric, Scope, UsageKey, calendar_year_window, rolling_window
from gpuquota.ledger import ReservationState, ReserveStatus, WorkloadRef, open_ledger
from gpuquota.ledger.counters import (
    bucket_range,
    counter_rows,
    day_bucket,
    fits,
    increments,
    year_bucket,
)
from gpuquota.ledger.reserving import plan_reservation
from gpuquota.ledger.store import SqlLedger, actual_operations
from tests.ledger.builders import concurrent, reservation

DAY = date(2026, 11, 26)


def ops_key(window: str, subject: str = "acme") -> UsageKey:
    return UsageKey(Scope.TENANT, subject, Metric.OPERATIONS, window)


def test_bucket_ranges() -> None:
    assert bucket_range(concurrent(Scope.TENANT, "acme")) == bucket_range(concurrent(Scope.CLUSTER, "cluster"))
    assert (bucket_range(ops_key("total")).low, bucket_range(ops_key("total")).high) == ("total", "total")
    year = bucket_range(ops_key(calendar_year_window(DAY)))
    assert (year.low, year.high) == ("y:2026", "y:2026")
    roll = bucket_range(ops_key(rolling_window(30, DAY)))
    assert (roll.low, roll.high) == ("d:2026-10-28", "d:2026-11-26")
    assert roll.covers(DAY)
    assert roll.covers(date(2026, 10, 28))
    assert not roll.covers(date(2026, 10, 27))
    assert year.covers(date(2026, 1, 1))
    assert not year.covers(date(2027, 1, 1))
    with pytest.raises(ValueError, match="unknown usage window"):
        bucket_range(ops_key("quarter:2026Q4"))


def test_day_buckets_sort_by_date() -> None:
    days = [date(2025, 12, 31), date(2026, 1, 1), date(2026, 2, 9), date(2026, 10, 1)]
    assert sorted(day_bucket(d) for d in days) == [day_bucket(d) for d in days]
    assert year_bucket(987) == "y:0987"


def test_one_increment_per_counter_at_the_largest_amount() -> None:
    charges = [
        Charge(ops_key(calendar_year_window(DAY)), 5.0, 100.0),
        Charge(ops_key(rolling_window(30, DAY)), 7.0),
        Charge(concurrent(Scope.TENANT, "acme"), 3.0),
        Charge(concurrent(Scope.TENANT, "acme"), 3.0, 10.0),
    ]
    assert increments(charges) == {
        ("tenant", "acme", "operations"): 7.0,
        ("tenant", "acme", "concurrent-tpp"): 3.0,
    }
    rows = counter_rows(increments(charges), DAY)
    assert rows == [
        ("tenant", "acme", "concurrent-tpp", "now", 3.0),
        ("tenant", "acme", "operations", "d:2026-11-26", 7.0),
        ("tenant", "acme", "operations", "total", 7.0),
        ("tenant", "acme", "operations", "y:2026", 7.0),
    ]


keys = st.builds(
    UsageKey,
    st.sampled_from(list(Scope)),
    st.sampled_from(["acme", "bolt", "JP", "tier2", "cluster"]),
    st.sampled_from(list(Metric)),
    st.sampled_from(["now", "total", "calendar-year:2026", "rolling-30d:2026-11-26", "rolling-7d:2026-11-26"]),
)


@given(st.lists(st.builds(Charge, keys, st.floats(0, 1e6)), max_size=12), st.dates())
def test_counter_rows_are_in_one_global_order(charges: list[Charge], day: date) -> None:
    rows = counter_rows(increments(charges), day)
    assert rows == sorted(rows, key=lambda r: r[:4])
    assert len({r[:4] for r in rows}) == len(rows)  # each row once: no self-deadlock, no double count
    for charge in charges:
        sid = (str(charge.key.scope), charge.key.subject, str(charge.key.metric))
        assert any(r[:3] == sid and r[4] >= charge.amount for r in rows)


@given(st.floats(0, 1e9), st.floats(0, 1e9), st.floats(0, 1e9))
def test_fits_is_used_plus_amount_within_cap(used: float, amount: float, cap: float) -> None:
    ok = fits(used, amount, cap)
    if used + amount <= cap:
        assert ok
    if used + amount > cap * (1 + 1e-9) + 1e-6:
        assert not ok


def test_fits_admits_float_sums_of_exact_fits() -> None:
    assert fits(0.1 + 0.2, 0.7, 1.0)  # 1.0000000000000002 is a fit, not an overrun
    assert not fits(0.3, 0.7000001, 1.0)


def test_the_plan_checks_each_capped_window_once_with_what_this_request_adds() -> None:
    today = datetime(2026, 11, 26, 12, tzinfo=UTC)
    r = reservation(
        "plan",
        charges=(
            Charge(concurrent(Scope.TENANT, "acme"), 4.0, 10.0),
            Charge(ops_key(rolling_window(30, DAY)), 5.0, 50.0),
            Charge(ops_key(calendar_year_window(date(2025, 6, 1))), 2.0, 20.0),  # a window without today
            Charge(concurrent(Scope.CLUSTER, "cluster"), 4.0),  # metered only
        ),
    )
    plan = plan_reservation(r, DAY, "ts", "ts")
    assert plan.checks == (
        ("tenant", "acme", "concurrent-tpp", "now", "now", 4.0, 4.0, 10.0),
        ("tenant", "acme", "operations", "d:2026-10-28", "d:2026-11-26", 5.0, 5.0, 50.0),
        ("tenant", "acme", "operations", "y:2025", "y:2025", 0.0, 5.0, 20.0),  # nothing of ours to deduct
    )
    assert plan.counters == tuple(sorted(plan.counters, key=lambda row: row[:4]))
    assert ("tenant", "acme", "operations", 5.0) in plan.increments
    assert today.date() == DAY


def test_actual_operations() -> None:
    t0 = datetime(2026, 11, 26, tzinfo=UTC)
    end = t0 + timedelta(seconds=100)
    kw = {"ops_per_second": 2.0, "reserved_at": t0, "ended": end}
    assert actual_operations(ReservationState.SETTLED, started_at=t0 + timedelta(seconds=40), **kw) == 120.0  # type: ignore[arg-type]
    assert actual_operations(ReservationState.RELEASED, started_at=None, **kw) == 200.0  # type: ignore[arg-type]
    assert actual_operations(ReservationState.EXPIRED, started_at=None, **kw) == 0.0  # type: ignore[arg-type]
    assert actual_operations(ReservationState.SETTLED, started_at=end + timedelta(1), **kw) == 0.0  # type: ignore[arg-type]
    assert actual_operations(ReservationState.SETTLED, started_at=t0, **kw) == 200.0  # type: ignore[arg-type]


class LedgerModel(RuleBasedStateMachine):
    """Random admissions and releases under a concurrent cap, against a dictionary of what is held."""

    CAP = 10.0

    def __init__(self) -> None:
        super().__init__()
        self.ledger: SqlLedger = open_ledger("sqlite:///:memory:")
        self.held: dict[str, float] = {}
        self.seen_uids: set[str] = set()
        self.now = datetime(2026, 11, 26, tzinfo=UTC)
        self.n = 0

    @initialize()
    def start(self) -> None:
        self.ledger.reserve(reservation("seed", charges=()), self.now)  # a reservation with no charges at all
        self.seen_uids.add("seed")
        self.held["seed"] = 0.0

    @rule(tpp=st.sampled_from([0.5, 1.0, 2.5, 4.0]))
    def admit(self, tpp: float) -> None:
        self.n += 1
        uid = f"r{self.n}"
        charge = Charge(concurrent(Scope.TENANT, "acme"), tpp, self.CAP)
        result = self.ledger.reserve(reservation(uid, charges=(charge,)), self.now)
        expected = sum(self.held.values()) + tpp <= self.CAP
        assert (result.status is ReserveStatus.RESERVED) == expected
        if expected:
            self.held[uid] = tpp
        self.seen_uids.add(uid)

    @precondition(lambda self: bool(self.seen_uids))
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        uid = data.draw(st.sampled_from(sorted(self.seen_uids)))
        before = sum(self.held.values())
        result = self.ledger.reserve(
            reservation(uid, charges=(Charge(concurrent(Scope.TENANT, "acme"), 1.0, self.CAP),)), self.now
        )
        if uid in self.held:
            assert result.status is ReserveStatus.DUPLICATE
        elif result.status is ReserveStatus.RESERVED:
            self.held[uid] = 1.0
        assert sum(self.held.values()) >= before

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        uid = data.draw(st.sampled_from(sorted(self.held)))
        self.now += timedelta(minutes=1)
        assert self.ledger.release(WorkloadRef("acme-train", "Job", uid, "batch"), self.now, "deleted") == 1
        del self.held[uid]

    @invariant()
    def usage_matches(self) -> None:
        key = concurrent(Scope.TENANT, "acme")
        assert self.ledger.usage([key], self.now)[key] == pytest.approx(sum(self.held.values()), abs=1e-9)
        assert {r.request_uid for r in self.ledger.active_reservations()} == set(self.held)

    def teardown(self) -> None:
        self.ledger.close()


TestLedgerModel = LedgerModel.TestCase
