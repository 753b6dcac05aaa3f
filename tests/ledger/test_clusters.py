"""Many clusters, one ledger (both backends): each process claims its cluster's name and identity, writes and
settles its own cluster's records only, while tenant caps count the whole fleet — even under a race of admissions
split across clusters (hypothesis, threads per cluster, real PostgreSQL and SQLite)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuquota.clusters import ClusterIdentity, claim_problem
from gpuquota.domain import Charge, Scope
from gpuquota.ledger import ClusterConflict, ReservationState, ReserveStatus, WorkloadRef, open_ledger
from gpuquota.ledger.schema import LATEST, migrate
from gpuquota.ledger.store import SqlLedger
from tests.ledger.builders import H100_TPP, NOW, concurrent, reservation
from tests.pgserver import fresh_ledger_database

A = ClusterIdentity("a", explicit=True, uid="uid-a")
B = ClusterIdentity("b", explicit=True, uid="uid-b")


@contextmanager
def opened(url: str, identity: ClusterIdentity | None) -> Iterator[SqlLedger]:
    ledger = open_ledger(url, identity=identity)
    try:
        yield ledger
    finally:
        ledger.close()


# --- the claim, pure ------------------------------------------------------------------------------------------


def test_a_fresh_ledger_takes_any_claim() -> None:
    assert claim_problem(ClusterIdentity(), {}) is None
    assert claim_problem(A, {}) is None


def test_an_unnamed_process_is_refused_once_another_cluster_shares_the_ledger() -> None:
    problem = claim_problem(ClusterIdentity(uid="uid-x"), {"default": "uid-x", "a": "uid-a"})
    assert problem is not None
    assert "--cluster-name" in problem
    assert "a" in problem
    assert claim_problem(ClusterIdentity("default", explicit=True, uid="uid-x"), {"default": "uid-x", "a": "u"}) is None


def test_the_same_name_from_another_cluster_is_refused() -> None:
    problem = claim_problem(ClusterIdentity("a", explicit=True, uid="uid-evil"), {"a": "uid-a"})
    assert problem is not None
    assert "uid-a" in problem
    assert "uid-evil" in problem


def test_a_name_without_identity_is_bound_on_first_start_and_unprovable_claims_refused() -> None:
    assert claim_problem(A, {"a": None}) is None  # a migrated 'default' or a start without cluster access
    assert claim_problem(ClusterIdentity("a", explicit=True), {"a": "uid-a"}) is not None


# --- the claim, on the ledger ---------------------------------------------------------------------------------


def test_claims_are_recorded_and_checked_on_every_start(ledger_url: str) -> None:
    with opened(ledger_url, A) as ledger:
        assert ledger.clusters() == {"a": "uid-a"}
    with opened(ledger_url, A):
        pass  # the same cluster again
    with pytest.raises(ClusterConflict, match="already belongs to another cluster"):
        open_ledger(ledger_url, identity=ClusterIdentity("a", explicit=True, uid="uid-other"))
    with pytest.raises(ClusterConflict, match="--cluster-name"):
        open_ledger(ledger_url, identity=ClusterIdentity(uid="uid-other"))
    with opened(ledger_url, B) as ledger:
        assert ledger.clusters() == {"a": "uid-a", "b": "uid-b"}  # the refused claims wrote nothing


def test_an_existing_single_cluster_ledger_becomes_cluster_default(ledger_url: str) -> None:
    with opened(ledger_url, None) as old:
        version = old.schema_version_found
    assert version == 0
    # Records written before names existed: simulated by a reservation under the old cluster-scope subject.
    with opened(ledger_url, None) as ledger:
        legacy = reservation("old-1", charges=(Charge(concurrent(Scope.CLUSTER, "default"), 5.0),))
        assert ledger.reserve(legacy, NOW).status is ReserveStatus.RESERVED
        assert ledger.reservations()[0].cluster == "default"
        assert ledger.decisions()[0].cluster == "default"
    with opened(ledger_url, ClusterIdentity(uid="uid-first")) as ledger:  # the first cluster, unnamed
        assert ledger.find_active(legacy.workload) is not None
    with opened(ledger_url, B):
        pass  # a second cluster names itself
    with pytest.raises(ClusterConflict):
        open_ledger(ledger_url, identity=ClusterIdentity(uid="uid-first"))  # from now on the first must name itself
    with opened(ledger_url, ClusterIdentity("default", explicit=True, uid="uid-first")) as ledger:
        assert ledger.clusters() == {"b": "uid-b", "default": "uid-first"}


def test_the_migration_moves_the_cluster_counters_and_registers_old_records(tmp_path: object) -> None:
    from gpuquota.ledger.sqlite import SqliteDatabase  # noqa: PLC0415

    db = SqliteDatabase(f"{tmp_path}/old.db")
    try:
        migrate(db, target=LATEST - 1)  # the schema before clusters had names
        with db.transaction(write=True) as tx:
            tx.execute("INSERT INTO counters (scope, subject, metric, bucket, amount) VALUES "
                       "('cluster', 'cluster', 'concurrent-tpp', 'now', 7), "
                       "('cluster', 'cluster~pool', 'concurrent-tpp', 'now', 3), "
                       "('tenant', 'cluster', 'concurrent-tpp', 'now', 1)")
            tx.execute("INSERT INTO decisions (time, request_uid, operation, user_name, namespace, kind, name, "
                       "allowed, dry_run, message, rules, gpus, tpp, profile, profile_version) VALUES "
                       "('2026-01-01T00:00:00+00:00', 'u', 'CREATE', 'x', 'ns', 'Job', 'j', 0, 0, 'm', '[]', 1, 1, "
                       "'p', 'v')")
        migrate(db)
        with db.transaction(write=False) as tx:
            rows = sorted(tx.execute("SELECT scope, subject, amount FROM counters"))
            clusters = tx.execute("SELECT name, kube_system_uid FROM clusters")
            decided = tx.execute("SELECT cluster FROM decisions")
    finally:
        db.close()
    assert rows == [("cluster", "default", 7.0), ("cluster", "default~pool", 3.0), ("tenant", "cluster", 1.0)]
    assert clusters == [("default", None)]
    assert decided == [("default",)]


# --- each cluster settles its own -----------------------------------------------------------------------------


def test_each_cluster_sees_and_settles_only_its_own_reservations(ledger_url: str) -> None:
    job = WorkloadRef("acme-train", "Job", "train", "batch")
    with opened(ledger_url, A) as a, opened(ledger_url, B) as b:
        assert a.reserve(reservation("ra", name="train"), NOW).status is ReserveStatus.RESERVED
        assert b.reserve(reservation("rb", name="train"), NOW).status is ReserveStatus.RESERVED  # same name, b
        assert [r.request_uid for r in a.active_reservations()] == ["ra"]
        assert [r.request_uid for r in b.active_reservations()] == ["rb"]
        assert a.count_active() == b.count_active() == 1
        view = a.find_active(job)
        assert view is not None
        assert len(view.reservation_ids) == 1
        assert a.release(job, NOW + timedelta(minutes=5), "deleted") == 1
        assert b.find_active(job) is not None  # a's delete freed nothing of b's
        by_uid = {r.request_uid: r for r in a.reservations()}
        assert by_uid["ra"].state is ReservationState.RELEASED
        assert by_uid["rb"].state is ReservationState.RESERVED
        assert (by_uid["ra"].cluster, by_uid["rb"].cluster) == ("a", "b")
        assert {d.cluster for d in a.decisions()} == {"a", "b"}
        assert [d.request_uid for d in a.decisions(cluster="b")] == ["rb"]
        assert [r.request_uid for r in b.reservations(cluster="a")] == ["ra"]


def test_identical_denials_fold_per_cluster(ledger_url: str) -> None:
    with opened(ledger_url, A) as a, opened(ledger_url, B) as b:
        denied = reservation("d1").audit
        for ledger, uid in ((a, "d1"), (a, "d2"), (b, "d3")):
            ledger.record_decision(replace(denied, request_uid=uid, allowed=False))
        records = a.decisions()
    assert sorted((d.cluster, d.repeats) for d in records) == [("a", 2), ("b", 1)]


# --- the fleet cap holds under a race split across clusters ---------------------------------------------------

CAP = 10 * 8 * H100_TPP  # ten 8-GPU jobs fit the tenant, fleet-wide


def _race(url: str, split: list[int]) -> dict[str, int]:
    """Threads of two cluster handles reserve at once; returns how many each cluster admitted."""
    admitted = {"a": 0, "b": 0}
    lock = threading.Lock()
    with opened(url, A) as a, opened(url, B) as b:

        def run(ledger: SqlLedger, name: str, uids: list[str]) -> None:
            barrier.wait()
            for uid in uids:
                result = ledger.reserve(reservation(uid, tenant_cap=CAP), NOW)
                if result.status is ReserveStatus.RESERVED:
                    with lock:
                        admitted[name] += 1

        jobs = []
        for i, cluster in enumerate(split):
            ledger, name = (a, "a") if cluster == 0 else (b, "b")
            jobs.append((ledger, name, f"{name}-{i}"))
        per_thread: list[tuple[SqlLedger, str, list[str]]] = []
        for t in range(4):
            mine = [j for k, j in enumerate(jobs) if k % 4 == t]
            for ledger, name in ((a, "a"), (b, "b")):
                uids = [uid for lg, _, uid in mine if lg is ledger]
                if uids:
                    per_thread.append((ledger, name, uids))
        threads = [threading.Thread(target=run, args=job) for job in per_thread]
        barrier = threading.Barrier(len(threads))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        usage = a.usage([concurrent(Scope.TENANT, "acme")], NOW)[concurrent(Scope.TENANT, "acme")]
    assert usage <= CAP * (1 + 1e-12)
    assert usage == pytest.approx((admitted["a"] + admitted["b"]) * 8 * H100_TPP)
    return admitted


@pytest.mark.postgres
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(split=st.lists(st.integers(0, 1), min_size=12, max_size=24))
def test_admissions_split_across_clusters_never_exceed_the_fleet_cap(
    postgres_server_url: str, split: list[int]
) -> None:
    with fresh_ledger_database(postgres_server_url) as url:
        admitted = _race(url, split)
    assert admitted["a"] + admitted["b"] == min(10, len(split))  # the cap is the fleet's, and it fills exactly


def test_the_fleet_cap_holds_on_sqlite_too(tmp_path: object) -> None:
    admitted = _race(f"sqlite:///{tmp_path}/fleet.db", [0, 1] * 8)
    assert admitted["a"] + admitted["b"] == 10


def test_a_report_shows_every_cluster_and_filters_one(ledger_url: str) -> None:
    from gpuquota.ledger.report import GroupBy, Period, build_report, to_csv, to_table  # noqa: PLC0415

    period = Period.from_days(NOW.date(), NOW.date())
    with opened(ledger_url, A) as a, opened(ledger_url, B) as b:
        a.reserve(reservation("ra", name="train"), NOW)
        b.reserve(reservation("rb1", name="train"), NOW)
        b.reserve(reservation("rb2", name="eval"), NOW)
        fleet = build_report(a.reservations(period.start, period.end), a.decisions(period.start, period.end), period,
                             GroupBy.CLUSTER, NOW + timedelta(hours=1))
        only_b = build_report(a.reservations(period.start, period.end, cluster="b"),
                              a.decisions(period.start, period.end, cluster="b"), period, GroupBy.TENANT,
                              NOW + timedelta(hours=1))
    assert [(r.subject, r.reservations) for r in fleet.rows] == [("a", 1), ("b", 2), ("(all)", 3)]
    assert fleet.clusters == ("a", "b")
    assert "clusters: a, b" in to_table(fleet)
    assert "cluster,a,1," in to_csv(fleet)
    assert [(r.subject, r.reservations) for r in only_b.rows] == [("acme", 2), ("(all)", 2)]
    assert only_b.clusters == ("b",)
