"""Which aggregate counter rows a reservation touches, and which rows a usage window sums — pure functions.

Usage is never summed from the reservation history: each (scope, subject) keeps a ``now`` row for concurrent TPP
and, for operations, one row per day it was charged on, one per calendar year and one ``total``. A calendar year
or the total is one row; a rolling window of N days sums at most N rows through the primary key. So reserving
costs the same with ten reservations or ten million behind it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from gpuquota.domain import Charge, Metric, UsageKey, parse_window

NOW_BUCKET = "now"
TOTAL_BUCKET = "total"

CounterId = tuple[str, str, str]  # scope, subject, metric
CounterRow = tuple[str, str, str, str, float]  # scope, subject, metric, bucket, amount


def day_bucket(day: date) -> str:
    return f"d:{day.isoformat()}"


def year_bucket(year: int) -> str:
    return f"y:{year:04d}"


def counter_id(key: UsageKey) -> CounterId:
    return (str(key.scope), key.subject, str(key.metric))


@dataclass(frozen=True, slots=True)
class BucketRange:
    """The counter rows (inclusive, in key order) whose sum is a usage key's value."""

    low: str
    high: str
    first_day: date | None = None  # for day ranges: which charge days fall inside
    last_day: date | None = None

    def covers(self, charge_day: date) -> bool:
        """Whether an increment charged on ``charge_day`` is part of this window's sum."""
        if self.low == self.high and not self.low.startswith("d:"):
            if self.low.startswith("y:"):
                return int(self.low[2:]) == charge_day.year
            return True  # now, total
        assert self.first_day is not None
        assert self.last_day is not None
        return self.first_day <= charge_day <= self.last_day


def bucket_range(key: UsageKey) -> BucketRange:
    """Raises ``ValueError`` for a window ``parse_window`` does not know."""
    window = parse_window(key.window)
    if key.metric is Metric.CONCURRENT_TPP or window.kind == "now":
        return BucketRange(NOW_BUCKET, NOW_BUCKET)
    if window.kind == "total":
        return BucketRange(TOTAL_BUCKET, TOTAL_BUCKET)
    assert window.first is not None
    assert window.last is not None
    if window.kind == "calendar-year":
        return BucketRange(year_bucket(window.first.year), year_bucket(window.first.year))
    return BucketRange(day_bucket(window.first), day_bucket(window.last), window.first, window.last)


def increments(charges: Iterable[Charge]) -> dict[CounterId, float]:
    """One increment per physical counter. Charges on the same counter under different windows (a yearly and a
    rolling cap on one tenant's operations) or from several rules are the same spending: counted once, at the
    largest amount."""
    out: dict[CounterId, float] = {}
    for charge in charges:
        cid = counter_id(charge.key)
        out[cid] = max(out.get(cid, 0.0), charge.amount)
    return out


def counter_rows(incs: dict[CounterId, float], charge_day: date) -> list[CounterRow]:
    """The rows to add to, in the one global order every writer locks them in (no deadlocks)."""
    rows: list[CounterRow] = []
    for (scope, subject, metric), amount in incs.items():
        if metric == Metric.OPERATIONS:
            for bucket in (day_bucket(charge_day), year_bucket(charge_day.year), TOTAL_BUCKET):
                rows.append((scope, subject, metric, bucket, amount))
        else:
            rows.append((scope, subject, metric, NOW_BUCKET, amount))
    rows.sort(key=lambda r: r[:4])
    return rows


def fits(used: float, amount: float, cap: float) -> bool:
    """``used + amount <= cap`` with a tolerance of a few ulps, so that float sums of exact fits are admitted."""
    total = used + amount
    return total <= cap or math.isclose(total, cap, rel_tol=1e-12, abs_tol=1e-9)
