"""What runs is what is charged, in the ledger: releasing holds until the GPUs are gone, riders stay within their
owner's budget, retries are known by request uid, and running work accrues operations — on both backends."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gpuquota.domain import Scope
from gpuquota.ledger import LedgerError, ReservationState, Rider, RideStatus, WorkloadRef
from gpuquota.ledger.store import SqlLedger
from tests.ledger.builders import NOW, concurrent, reservation, rolling, yearly

JOB = WorkloadRef("acme-train", "Job", "train", "batch")
TENANT_TPP = concurrent(Scope.TENANT, "acme")
YEARLY = yearly(Scope.TENANT, "acme")


def pod(name: str, gpus: float = 4, uid: str | None = None) -> Rider:
    return Rider(uid or f"uid-{name}", "acme-train", name, gpus)


def test_a_delete_marks_releasing_and_holds_until_finished(ledger: SqlLedger) -> None:
    ledger.reserve(reservation("r1", name="train"), NOW)
    held = ledger.usage([TENANT_TPP], NOW)[TENANT_TPP]
    assert held > 0
    assert ledger.mark_releasing(JOB, NOW + timedelta(minutes=1), "deleted") == 1
    assert ledger.mark_releasing(JOB, NOW + timedelta(minutes=2), "deleted again") == 0  # once
    assert ledger.usage([TENANT_TPP], NOW)[TENANT_TPP] == held  # a DELETE frees nothing by itself
    assert ledger.count_active() == 1
    assert ledger.find_active(JOB) is None  # nothing new rides on a workload being deleted
    [rec] = ledger.active_reservations()
    assert rec.releasing
    assert rec.releasing_at == NOW + timedelta(minutes=1)
    assert rec.reason == "deleted"
    assert ledger.ride(JOB, "", pod("late"), NOW).status is RideStatus.NO_OWNER
    ledger.finish([rec.id], ReservationState.RELEASED, NOW + timedelta(minutes=5), "pods gone")
    assert ledger.usage([TENANT_TPP], NOW)[TENANT_TPP] == 0


def test_retries_are_known_by_request_uid(ledger: SqlLedger) -> None:
    result = ledger.reserve(reservation("req-1", name="train", object_uid="obj-1"), NOW)
    assert ledger.reserved_by("req-1") == result.reservation_id
    assert ledger.reserved_by("req-2") is None
    view = ledger.find_active(JOB)
    assert view is not None
    assert view.object_uid == "obj-1"


def test_riders_stay_within_the_owner_budget(ledger: SqlLedger) -> None:
    ledger.reserve(reservation("r1", name="train", gpus=8, object_uid="job-uid"), NOW)
    assert ledger.ride(JOB, "job-uid", pod("a"), NOW).status is RideStatus.RIDING
    assert ledger.ride(JOB, "job-uid", pod("b"), NOW).status is RideStatus.RIDING
    again = ledger.ride(JOB, "job-uid", pod("b"), NOW)  # a retried review of the same pod
    assert again.status is RideStatus.DUPLICATE
    over = ledger.ride(JOB, "job-uid", pod("replacement"), NOW)  # a replacement while a and b still hold GPUs
    assert (over.status, over.budget, over.riding) == (RideStatus.OVER_BUDGET, 8, 8)
    [a, _] = ledger.live_riders()
    assert (a.name, a.gpus) == ("a", 4)
    assert ledger.riders_gone([(a.reservation_id, a.pod_uid)], NOW + timedelta(minutes=1)) == 1
    assert ledger.riders_gone([(a.reservation_id, a.pod_uid)], NOW + timedelta(minutes=1)) == 0
    assert ledger.ride(JOB, "job-uid", pod("replacement"), NOW).status is RideStatus.RIDING
    assert [r.name for r in ledger.live_riders()] == ["b", "replacement"]


def test_a_recreated_object_is_another_workload(ledger: SqlLedger) -> None:
    ledger.reserve(reservation("r1", name="train", object_uid="old-uid"), NOW)
    assert ledger.ride(JOB, "new-uid", pod("p"), NOW).status is RideStatus.NO_OWNER
    assert ledger.ride(JOB, "", pod("p"), NOW).status is RideStatus.RIDING  # no uid claimed: the name decides
    assert ledger.ride(JOB, "old-uid", pod("q"), NOW).status is RideStatus.RIDING


def test_a_scale_up_adds_to_the_budget_and_finishing_ends_riders(ledger: SqlLedger) -> None:
    ledger.reserve(reservation("r1", name="train", gpus=4), NOW)
    ledger.reserve(reservation("r2", name="train", gpus=4), NOW)
    for name in ("a", "b"):
        assert ledger.ride(JOB, "", pod(name), NOW).status is RideStatus.RIDING
    assert ledger.ride(JOB, "", pod("c"), NOW).status is RideStatus.OVER_BUDGET
    ledger.release(JOB, NOW + timedelta(hours=1), "test")
    assert ledger.live_riders() == []


def test_bad_riders_are_refused(ledger: SqlLedger) -> None:
    ledger.reserve(reservation("r1", name="train"), NOW)
    for bad in (Rider("", "acme-train", "p", 1), Rider("u", "acme-train", "p", float("nan")), Rider("u", "n", "p", -1)):
        with pytest.raises(LedgerError):
            ledger.ride(JOB, "", bad, NOW)
    assert ledger.live_riders() == []


def test_running_work_accrues_beyond_its_reservation(ledger: SqlLedger) -> None:
    """Declared 1 h (3.6e18 reserved at 1e15/s); it runs on: the counters follow what it measurably spent, and the
    settlement lands on exactly rate x real runtime, with nothing counted twice."""
    ledger.reserve(reservation("r1", name="train", max_runtime_s=3600), NOW)
    [rec] = ledger.active_reservations()
    ledger.mark_running([rec.id], NOW)
    assert ledger.usage([YEARLY], NOW)[YEARLY] == pytest.approx(3.6e18)
    assert ledger.accrue([(rec.id, 1.8e18)], NOW + timedelta(minutes=30)) == 1  # within the reservation
    assert ledger.usage([YEARLY], NOW)[YEARLY] == pytest.approx(3.6e18)
    ledger.accrue([(rec.id, 7.2e18)], NOW + timedelta(hours=2))  # past it: the excess is charged now
    assert ledger.usage([YEARLY], NOW)[YEARLY] == pytest.approx(7.2e18)
    assert ledger.accrue([(rec.id, 7.0e18)], NOW + timedelta(hours=2)) == 0  # measurements never go back
    later = NOW + timedelta(days=1, hours=1)  # charged on the day it ran: a rolling window sees it then
    ledger.accrue([(rec.id, 9.0e18)], later)
    assert ledger.usage([YEARLY], later)[YEARLY] == pytest.approx(9.0e18)
    assert ledger.usage([rolling(Scope.TENANT, "acme", 30, later)], later)[rolling(Scope.TENANT, "acme", 30, later)] \
        == pytest.approx(9.0e18)
    ledger.finish([rec.id], ReservationState.SETTLED, NOW + timedelta(hours=3), "Complete", started=NOW)
    assert ledger.usage([YEARLY], later)[YEARLY] == pytest.approx(1e15 * 3 * 3600)
    assert ledger.reservations()[0].actual_operations == pytest.approx(1e15 * 3 * 3600)
