"""The compliance report: per tenant, jurisdiction, tier or cluster, what was admitted, refused and used in a period.

Computed from the reservation history and the decision audit (a report reads history; admission never does).
Pure: rows in, rows out, so the figures are tested without a database.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Final

from gpuquota.ledger.timeutil import utc
from gpuquota.ledger.types import AuditRecord, ReservationRecord, ReservationState

TOTAL = "(all)"
UNKNOWN = "(none)"


class GroupBy(StrEnum):
    TENANT = "tenant"
    JURISDICTION = "jurisdiction"
    TIER = "tier"
    CLUSTER = "cluster"  # one row per cluster sharing the ledger


@dataclass(frozen=True, slots=True)
class Period:
    """[start, end) in UTC; built from inclusive calendar days."""

    start: datetime
    end: datetime

    @classmethod
    def from_days(cls, first: date, last: date) -> Period:
        if last < first:
            raise ValueError(f"the period ends ({last}) before it starts ({first})")
        start = utc(datetime(first.year, first.month, first.day))
        return cls(start, utc(datetime(last.year, last.month, last.day)) + timedelta(days=1))


@dataclass(slots=True)
class ReportRow:
    scope: str
    subject: str
    admissions: int = 0  # allowed, non-dry-run decisions
    denials: int = 0
    dry_runs: int = 0
    warnings: int = 0  # allowed decisions that carried a warning
    reservations: int = 0  # reservations that held capacity during the period
    gpu_hours: float = 0.0  # GPUs × time running inside the period
    peak_concurrent_tpp: float = 0.0  # most TPP held (reserved or running) at one moment of the period
    operations: float = 0.0  # charged in the period: actual where settled, reserved where still active
    operations_active: float = 0.0  # the part of ``operations`` still reserved (not yet settled)
    expired: int = 0


@dataclass(frozen=True, slots=True)
class Report:
    period: Period
    by: GroupBy
    generated: datetime
    rows: tuple[ReportRow, ...]
    profiles: tuple[str, ...] = field(default_factory=tuple)  # profile@version of the period's decisions
    clusters: tuple[str, ...] = field(default_factory=tuple)  # the clusters whose records it covers

    def to_json(self) -> dict[str, object]:
        return {
            "period": {"from": self.period.start.isoformat(), "to": self.period.end.isoformat()},
            "by": str(self.by),
            "generated": self.generated.isoformat(),
            "profiles": list(self.profiles),
            "clusters": list(self.clusters),
            "rows": [asdict(r) for r in self.rows],
        }


def _subject(by: GroupBy, row: AuditRecord | ReservationRecord) -> str:
    if by is GroupBy.CLUSTER:
        return row.cluster
    value = {GroupBy.TENANT: row.tenant, GroupBy.JURISDICTION: row.jurisdiction, GroupBy.TIER: row.tier}[by]
    return value or UNKNOWN


def _overlap(a0: datetime, a1: datetime, b0: datetime, b1: datetime) -> float:
    return max(0.0, (min(a1, b1) - max(a0, b0)).total_seconds())


def peak(intervals: Iterable[tuple[datetime, datetime, float]]) -> float:
    """The largest sum of amounts held at one instant; an interval is [start, end), so a release and an
    admission at the same instant do not overlap."""
    events: list[tuple[datetime, int, float]] = []
    for start, end, amount in intervals:
        if end > start:
            events.append((start, 1, amount))
            events.append((end, 0, -amount))  # 0 sorts releases before admissions at the same instant
    held = best = 0.0
    for _, _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        held += delta
        best = max(best, held)
    return best

_ADMISSIONS: Final = frozenset({"CREATE", "UPDATE"})


def _count_decision(r: ReportRow, d: AuditRecord) -> None:
    if d.operation not in _ADMISSIONS:
        return  # the reconciler's record of a stop (SUSPEND, DELETE): not a decision on a request
    if d.dry_run:
        r.dry_runs += 1
    elif d.allowed:
        r.admissions += 1
        r.warnings += 1 if d.warnings else 0
    else:
        r.denials += d.repeats  # identical denials are folded into one record (ledger aggregation)


def _operations(res: ReservationRecord, period: Period) -> tuple[float, float]:
    """(operations charged in the period, the part of it still only reserved)."""
    if not period.start <= res.reserved_at < period.end:
        return 0.0, 0.0
    if res.state.active:
        return res.operations or 0.0, res.operations or 0.0
    return res.actual_operations or 0.0, 0.0


def build_report(
    reservations: Sequence[ReservationRecord],
    decisions: Sequence[AuditRecord],
    period: Period,
    by: GroupBy,
    now: datetime,
) -> Report:
    rows: dict[str, ReportRow] = {}
    total = ReportRow("cluster", TOTAL)
    horizon = min(period.end, now)
    held: dict[str, list[tuple[datetime, datetime, float]]] = {}

    def row(subject: str) -> ReportRow:
        return rows.setdefault(subject, ReportRow(str(by), subject))

    for d in decisions:
        if period.start <= d.time < period.end:
            for r in (row(_subject(by, d)), total):
                _count_decision(r, d)

    for res in reservations:
        end = res.ended_at or now
        if not (res.reserved_at < period.end and end >= period.start):
            continue
        subject = _subject(by, res)
        interval = (max(res.reserved_at, period.start), min(end, period.end, horizon), res.tpp)
        held.setdefault(subject, []).append(interval)
        held.setdefault(TOTAL, []).append(interval)
        running_from = res.started_at
        gpu_seconds = 0.0
        if running_from is not None and res.state is not ReservationState.EXPIRED:
            gpu_seconds = res.gpus * _overlap(running_from, end, period.start, min(period.end, horizon))
        ops, active_ops = _operations(res, period)
        for r in (row(subject), total):
            r.reservations += 1
            r.gpu_hours += gpu_seconds / 3600.0
            r.operations += ops
            r.operations_active += active_ops
            r.expired += 1 if res.state is ReservationState.EXPIRED else 0

    for subject, intervals in held.items():
        (total if subject == TOTAL else row(subject)).peak_concurrent_tpp = peak(intervals)
    profiles = sorted({f"{d.profile}@{d.profile_version}" for d in decisions if period.start <= d.time < period.end})
    clusters = sorted({d.cluster for d in decisions} | {r.cluster for r in reservations})
    ordered = (*sorted(rows.values(), key=lambda r: r.subject), total)
    return Report(period, by, now, ordered, tuple(profiles), tuple(clusters))


COLUMNS = (
    "scope",
    "subject",
    "admissions",
    "denials",
    "dry_runs",
    "warnings",
    "reservations",
    "expired",
    "gpu_hours",
    "peak_concurrent_tpp",
    "operations",
    "operations_active",
)


def to_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in report.rows:
        data = asdict(r)
        writer.writerow([data[c] for c in COLUMNS])
    return out.getvalue()


def to_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2)


def to_table(report: Report) -> str:
    """Plain text, aligned: readable in a terminal and in an e-mail."""
    header = ("subject", "admitted", "denied", "dry-run", "reservations", "expired", "GPU-hours", "peak TPP",
              "operations", "of which active")  # fmt: skip
    lines = [
        [
            r.subject, str(r.admissions), str(r.denials), str(r.dry_runs), str(r.reservations), str(r.expired),
            f"{r.gpu_hours:,.1f}", f"{r.peak_concurrent_tpp:,.0f}", f"{r.operations:.3e}",
            f"{r.operations_active:.3e}",
        ]
        for r in report.rows
    ]  # fmt: skip
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    title = (
        f"gpuquota usage by {report.by}, {report.period.start:%Y-%m-%d} to "
        f"{report.period.end - timedelta(days=1):%Y-%m-%d} (UTC), generated {report.generated:%Y-%m-%d %H:%M} UTC"
    )
    body = [
        "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(line, widths, strict=True)))
        for line in [list(header), *lines]
    ]
    rule = "-" * len(body[0])
    profiles = "profiles: " + (", ".join(report.profiles) or "none")
    clusters = "clusters: " + (", ".join(report.clusters) or "none")
    return "\n".join([title, profiles, clusters, rule, body[0], rule, *body[1:-1], rule, body[-1]]) + "\n"
