"""The compliance report: figures from known histories, and the ``gpuquota report`` command end to end."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from gpuquota.cli import app
from gpuquota.errors import UserError
from gpuquota.ledger import ReservationState, WorkloadRef, open_ledger
from gpuquota.ledger.report import TOTAL, GroupBy, Period, build_report, peak, to_csv, to_table
from tests.ledger.builders import H100_TPP, audit, reservation

D1 = datetime(2026, 3, 1, tzinfo=UTC)
PERIOD = Period.from_days(date(2026, 3, 1), date(2026, 3, 31))


def test_period_is_inclusive_of_the_last_day() -> None:
    assert PERIOD.start == D1
    assert PERIOD.end == datetime(2026, 4, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="before it starts"):
        Period.from_days(date(2026, 3, 2), date(2026, 3, 1))


def test_peak_of_intervals() -> None:
    t = [D1 + timedelta(hours=h) for h in range(6)]
    assert peak([(t[0], t[2], 5), (t[1], t[3], 7), (t[3], t[4], 20)]) == 20
    assert peak([(t[0], t[2], 5), (t[1], t[3], 7)]) == 12
    assert peak([(t[0], t[1], 5), (t[1], t[2], 7)]) == 7  # back to back: a release then an admission
    assert peak([]) == 0


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(1, 20), st.integers(1, 9)), max_size=25))
def test_peak_matches_a_brute_force_sweep(spans: list[tuple[int, int, int]]) -> None:
    intervals = [(D1 + timedelta(minutes=s), D1 + timedelta(minutes=s + n), float(a)) for s, n, a in spans]
    brute = max(
        (sum(a for s, n, a in spans if s <= m < s + n) for m in range(0, 75)),
        default=0,
    )
    assert peak(intervals) == brute


def _history(url: str) -> None:
    """March 2026: acme (JP, tier2) runs two jobs, one overlapping the other, and is refused once; bolt (US, tier1)
    admits a job that never gets created; a job admitted in February still runs into March."""
    ledger = open_ledger(url)
    try:
        feb = datetime(2026, 2, 27, tzinfo=UTC)
        ledger.reserve(reservation("old", when=feb), feb)  # 8 GPUs, reserved 3.6e18
        ledger.mark_running([1], feb)
        t0 = D1 + timedelta(days=2)
        ledger.reserve(reservation("a", when=t0), t0)
        ledger.reserve(reservation("b", gpus=4, when=t0 + timedelta(minutes=30)), t0 + timedelta(minutes=30))
        ledger.record_decision(audit("c", WorkloadRef("acme-train", "Job", "c"), "acme", allowed=False, when=t0))
        ledger.record_decision(
            audit("d", WorkloadRef("acme-train", "Job", "d"), "acme", dry_run=True, when=t0 + timedelta(hours=2))
        )
        ledger.reserve(reservation("g", tenant="bolt", jurisdiction="US", tier="tier1", when=t0), t0)
        ids = {r.request_uid: r.id for r in ledger.reservations()}
        ledger.mark_running([ids["a"]], t0)
        ledger.mark_running([ids["b"]], t0 + timedelta(minutes=30))
        ledger.finish([ids["a"]], ReservationState.SETTLED, t0 + timedelta(hours=1), "Complete")
        ledger.finish([ids["b"]], ReservationState.SETTLED, t0 + timedelta(hours=1), "Complete")
        ledger.finish([ids["g"]], ReservationState.EXPIRED, t0 + timedelta(minutes=5), "never created")
        ledger.finish([ids["old"]], ReservationState.SETTLED, D1 + timedelta(hours=12), "Complete")
    finally:
        ledger.close()


def test_report_figures(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    _history(url)
    ledger = open_ledger(url)
    try:
        now = datetime(2026, 4, 2, tzinfo=UTC)
        report = build_report(
            ledger.reservations(PERIOD.start, PERIOD.end), ledger.decisions(PERIOD.start, PERIOD.end), PERIOD,
            GroupBy.TENANT, now,
        )  # fmt: skip
    finally:
        ledger.close()
    rows = {r.subject: r for r in report.rows}
    assert list(rows) == ["acme", "bolt", TOTAL]
    acme, bolt, total = rows["acme"], rows["bolt"], rows[TOTAL]
    assert (acme.admissions, acme.denials, acme.dry_runs) == (2, 1, 1)  # "old" was admitted in February
    assert acme.reservations == 3
    # old: 8 GPUs × 12 h in March; a: 8 × 1 h; b: 4 × 0.5 h.
    assert acme.gpu_hours == pytest.approx(96 + 8 + 2)
    assert acme.peak_concurrent_tpp == pytest.approx(12 * H100_TPP)  # a and b overlap; old ended on the 1st
    assert acme.operations == pytest.approx(1e15 * (3600 + 1800))  # old's operations were charged in February
    assert (bolt.reservations, bolt.expired, bolt.gpu_hours, bolt.operations) == (1, 1, 0.0, 0.0)
    assert bolt.peak_concurrent_tpp == pytest.approx(8 * H100_TPP)  # it held the cap for 5 minutes
    assert total.peak_concurrent_tpp == pytest.approx(16 * H100_TPP)  # a and g at t0; b came after g expired
    assert total.admissions == 3
    assert report.profiles == ("ai-diffusion-2025@2025-01-15",)
    parsed = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert [p["subject"] for p in parsed] == ["acme", "bolt", TOTAL]
    assert float(parsed[0]["gpu_hours"]) == pytest.approx(106)
    table = to_table(report)
    assert "2026-03-01 to 2026-03-31" in table
    assert "acme" in table


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["report", *args])
    return result.exit_code, result.stdout, result.stderr


def test_report_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    _history(url)
    code, out, _ = run("--from", "2026-03-01", "--to", "2026-03-31", "--by", "jurisdiction", "--format", "json",
                       "--ledger", url)  # fmt: skip
    assert code == 0
    doc = json.loads(out)
    assert doc["by"] == "jurisdiction"
    assert [r["subject"] for r in doc["rows"]] == ["JP", "US", TOTAL]
    assert doc["rows"][0]["denials"] == 1
    code, out, _ = run("--from", "2026-03-01", "--to", "2026-03-31", "--by", "tier", "--ledger", url)
    assert code == 0
    assert "tier2" in out
    assert "tier1" in out
    target = tmp_path / "march.csv"
    code, _, _ = run(
        "--from", "2026-03-01", "--to", "2026-03-31", "--format", "csv", "--ledger", url, "-o", str(target)
    )
    assert code == 0
    assert target.read_text().startswith("scope,subject,admissions")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-13-01", "--to", "2026-12-31"], "--from must be a date"),
        (["--from", "2026-03-02", "--to", "2026-03-01"], "before it starts"),
        (["--from", "2026-03-01", "--to", "2026-03-31", "--by", "country"], "--by must be"),
        (["--from", "2026-03-01", "--to", "2026-03-31", "--format", "xml"], "--format must be"),
        (["--from", "2026-03-01", "--to", "2026-03-31", "--ledger", "sqlite:///nowhere/x.db"], "no ledger at"),
        (["--from", "2026-03-01", "--to", "2026-03-31", "--ledger", "oracle://x"], "unsupported ledger URL"),
    ],
)
def test_report_bad_input_is_a_user_error(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["report", *args])
    assert isinstance(result.exception, UserError), result.output  # main() prints it and exits 2
    assert message in str(result.exception)


def test_report_bad_input_exits_2_without_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from gpuquota.cli import main; main()", "report", "--from", "2026-03-01", "--to",
         "2026-03-31", "--ledger", "sqlite:///nowhere/ledger.db"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "no ledger at nowhere/ledger.db" in proc.stderr
    assert "Traceback" not in proc.stderr
