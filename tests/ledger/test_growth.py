"""Bounded ledger growth: identical denials fold into one record per UTC day, decision records older than the
retention go in batches, and a full database refuses writes with ``LedgerFull`` and recovers by itself."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from gpuquota.ledger import LedgerFull, WorkloadRef, open_ledger
from gpuquota.ledger.report import GroupBy, Period, build_report
from gpuquota.ledger.store import SqlLedger
from tests.ledger.builders import NOW, audit

JOB = WorkloadRef("acme-train", "Job", "llm", "batch")


def _rows(ledger: SqlLedger) -> int:
    with ledger.db.transaction(write=False) as tx:
        return int(tx.execute("SELECT count(*) FROM decisions")[0][0])


def test_a_loop_of_identical_denials_is_one_record_with_count_and_times(ledger: SqlLedger) -> None:
    for index in range(200):
        ledger.record_decision(audit(f"deny-{index}", JOB, "acme", allowed=False, message="over the cap",
                                     when=NOW + timedelta(seconds=index)))
    (record,) = ledger.decisions()
    assert record.repeats == 200
    assert record.request_uid == "deny-0"
    assert record.time == NOW
    assert record.last_time == NOW + timedelta(seconds=199)
    assert _rows(ledger) == 1


def test_denials_that_differ_or_fall_on_another_day_are_recorded_apart(ledger: SqlLedger) -> None:
    base = audit("a", JOB, "acme", allowed=False, message="over the cap")
    ledger.record_decision(base)
    ledger.record_decision(replace(base, request_uid="b", message="another reason"))
    ledger.record_decision(replace(base, request_uid="c", name="other-job"))
    ledger.record_decision(replace(base, request_uid="d", user="mallory"))
    ledger.record_decision(replace(base, request_uid="e", time=NOW + timedelta(days=1)))
    ledger.record_decision(replace(base, request_uid="f", time=NOW + timedelta(days=1, seconds=5)))
    assert [(d.request_uid, d.repeats) for d in ledger.decisions()] == [("a", 1), ("b", 1), ("c", 1), ("d", 1),
                                                                        ("e", 2)]


def test_admissions_are_never_folded(ledger: SqlLedger) -> None:
    for index in range(3):
        ledger.record_decision(audit(f"ok-{index}", JOB, "acme", allowed=True))
    assert [d.repeats for d in ledger.decisions()] == [1, 1, 1]


def test_the_compliance_report_counts_folded_denials(ledger: SqlLedger) -> None:
    for index in range(5):
        ledger.record_decision(audit(f"deny-{index}", JOB, "acme", allowed=False, when=NOW + timedelta(minutes=index)))
    period = Period(NOW - timedelta(days=1), NOW + timedelta(days=1))
    report = build_report(ledger.reservations(), ledger.decisions(), period, GroupBy.TENANT, NOW + timedelta(days=1))
    assert {r.subject: r.denials for r in report.rows}["acme"] == 5


def test_retention_prunes_old_decisions_in_batches(ledger: SqlLedger) -> None:
    for index in range(25):
        ledger.record_decision(audit(f"old-{index}", JOB, "acme", when=NOW - timedelta(days=400 + index)))
    ledger.record_decision(audit("recent", JOB, "acme", when=NOW))
    assert ledger.prune_decisions(NOW - timedelta(days=365), batch=10) == 25
    assert [d.request_uid for d in ledger.decisions()] == ["recent"]


def _fill(ledger: SqlLedger) -> None:
    for index in range(10_000):
        ledger.record_decision(audit(f"fill-{index}", JOB, "acme", message="x" * 2000))


def test_a_full_sqlite_file_refuses_writes_with_ledger_full_then_recovers(tmp_path: Path) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}", pool_size=1)
    try:
        conn: sqlite3.Connection = ledger.db._idle[0]  # type: ignore[attr-defined]
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        conn.execute(f"PRAGMA max_page_count = {pages}")  # the file may not grow: a full volume
        with pytest.raises(LedgerFull, match="full"):
            _fill(ledger)
        written = _rows(ledger)
        with pytest.raises(LedgerFull):
            ledger.record_decision(audit("refused", JOB, "acme", message="x" * 2000))
        assert _rows(ledger) == written  # nothing half-written
        conn.execute(f"PRAGMA max_page_count = {pages * 100}")  # space returns
        ledger.record_decision(audit("after", JOB, "acme"))
        assert ledger.decisions()[-1].request_uid == "after"
    finally:
        ledger.close()
