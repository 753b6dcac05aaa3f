"""The check controller's shell on an in-memory API (``FakeKube``) and a real SQLite ledger: it reserves under the
owner Job, writes Pending once (not once per pass), marks the AdmissionCheck Active, releases what it reserved once
Kueue drops an evicted Workload's quota, and then admits the Workload that was waiting."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gpuquota.admission.live import LiveConfig
from gpuquota.clusters import ClusterIdentity
from gpuquota.kube.api import JsonObject
from gpuquota.kueue.controller import API, KueueCheck
from gpuquota.kueue.metrics import KueueCheckMetrics
from gpuquota.ledger import open_ledger
from gpuquota.testing.kube import FakeKube
from tests.kueue.objects import CHECK, KUEUE_POLICY, admission_check, flavor, namespace, workload
from tests.ledger.builders import reservation


def _path(obj: JsonObject) -> str:
    meta = obj["metadata"]
    return f"{API}/namespaces/{meta['namespace']}/workloads/{meta['name']}"


def _state(kube: FakeKube, obj: JsonObject) -> tuple[str, str]:
    got = kube.get(_path(obj)) or {}
    entry = next(c for c in got["status"]["admissionChecks"] if c["name"] == CHECK)
    return entry["state"], entry["message"]


def _load(check: KueueCheck, kube: FakeKube, workloads: list[JsonObject]) -> None:
    """What the watches would hold (FakeKube lists one collection level only, so the stores are fed directly)."""
    check.stores["workloads"].replace([kube.get(_path(w)) or {} for w in workloads])
    check.stores["admissionchecks"].replace([kube.get(f"{API}/admissionchecks/{CHECK}") or {}])


def test_reserve_wait_release_admit(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(KUEUE_POLICY)
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    kube = FakeKube()
    check = KueueCheck(kube, ledger, LiveConfig(str(policy), None), metrics=KueueCheckMetrics(), watch_nodes=False)
    kube.put(f"{API}/admissionchecks/{CHECK}", admission_check())
    check.stores["resourceflavors"].replace([flavor()])
    check.namespaces.replace([namespace("acme", "BR")])
    first, second = workload("first", "acme", gpus=8), workload("second", "acme", gpus=10)
    for w in (first, second):
        kube.put(_path(w), w)
    try:
        _load(check, kube, [first, second])
        result = check.pass_once()
        assert _state(kube, first)[0] == "Ready"
        state, message = _state(kube, second)
        assert state == "Pending"
        assert "up to 8 × H100-SXM5-80GB fit" in message
        assert result.pending["cap"] == 1
        active = (kube.get(f"{API}/admissionchecks/{CHECK}") or {})["status"]["conditions"][0]
        assert (active["type"], active["status"]) == ("Active", "True")
        held = ledger.active_reservations()
        assert [(r.workload.kind, r.workload.group, r.workload.name, r.object_uid) for r in held] == [
            ("Job", "batch", "first", "job-first")]

        patches = len(kube.patches)
        _load(check, kube, [first, second])
        check.pass_once()  # nothing changed: nothing written
        assert len(kube.patches) == patches

        evicted: dict[str, Any] = kube.get(_path(first)) or {}  # Kueue evicted it and, its pods gone, dropped quota
        evicted["status"]["conditions"] = [
            {"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": "",
             "lastTransitionTime": "2026-12-03T11:00:00Z"},
            {"type": "Evicted", "status": "True", "reason": "Preempted", "message": "",
             "lastTransitionTime": "2026-12-03T11:00:00Z"}]
        evicted["status"]["admissionChecks"][0]["state"] = "Pending"
        kube.put(_path(first), evicted)
        _load(check, kube, [first, second])
        assert check.pass_once().released == 1
        _load(check, kube, [first, second])
        check.pass_once()
        assert _state(kube, second)[0] == "Ready"
        assert [r.workload.name for r in ledger.active_reservations()] == ["second"]
    finally:
        ledger.close()


PER_CLUSTER_POLICY = KUEUE_POLICY.replace(
    "rules:\n",
    "rules:\n"
    "  - id: tenant-per-cluster\n"
    "    description: tier-2 tenants hold at most 8 H100 SXM at once in one cluster\n"
    "    match:\n      tiers: [tier-2]\n"
    "    cap:\n      kind: concurrent-tpp\n      amount: 126656\n"
    "    scope: tenant\n    perCluster: true\n    action: deny\n",
)


def test_each_clusters_check_counts_its_cluster_and_the_fleet(tmp_path: Path) -> None:
    """Two clusters' checks on one ledger: a perCluster cap counts the judging cluster's usage only, the fleet cap
    everyone's, and each check's reservation is its own cluster's (the other cluster's reconciler leaves it)."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(PER_CLUSTER_POLICY)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    sides = []
    for name in ("a", "b"):
        ledger = open_ledger(url, identity=ClusterIdentity(name, explicit=True, uid=f"kube-system-{name}"))
        kube = FakeKube()
        check = KueueCheck(kube, ledger, LiveConfig(str(policy), None), metrics=KueueCheckMetrics(),
                           watch_nodes=False, cluster=name)
        kube.put(f"{API}/admissionchecks/{CHECK}", admission_check())
        check.stores["resourceflavors"].replace([flavor()])
        check.namespaces.replace([namespace("acme", "BR")])
        sides.append((check, kube, ledger))
    (check_a, kube_a, ledger_a), (check_b, kube_b, ledger_b) = sides
    try:
        first, second = workload("first", "acme"), workload("second", "acme")  # 8 GPUs each, in cluster a
        for w in (first, second):
            kube_a.put(_path(w), w)
        _load(check_a, kube_a, [first, second])
        check_a.pass_once()
        assert _state(kube_a, first)[0] == "Ready"
        state, message = _state(kube_a, second)
        assert state == "Pending"  # the per-cluster cap: 8 of 8 in cluster a, though the fleet has room
        assert "cluster a" in message, message

        third, fourth = workload("third", "acme"), workload("fourth", "acme")  # in cluster b
        kube_b.put(_path(third), third)
        _load(check_b, kube_b, [third])
        check_b.pass_once()
        assert _state(kube_b, third)[0] == "Ready"  # cluster b's own 8: the fleet holds 16 of 16 now
        assert [(r.workload.name, r.cluster) for r in ledger_b.active_reservations()] == [("third", "b")]
        assert [(r.workload.name, r.cluster) for r in ledger_a.active_reservations()] == [("first", "a")]

        kube_b.put(_path(fourth), fourth)
        _load(check_b, kube_b, [third, fourth])
        check_b.pass_once()
        state, message = _state(kube_b, fourth)
        assert state == "Pending"  # the fleet-wide tenant cap, filled by both clusters
        assert "tenant-cap" in message or "tenant cap" in message, message
    finally:
        ledger_a.close()
        ledger_b.close()


def test_a_leftover_reservation_of_an_earlier_object_of_that_name_does_not_admit_a_new_one(tmp_path: Path) -> None:
    """A Job deleted while its pods still hold GPUs keeps its reservation (releasing when they go); a new Job of the
    same name queued meanwhile is another workload: judged and reserved under its own uid, never Ready on the old
    object's reservation (which the reconciler then frees, leaving the new Job's pods uncharged)."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(KUEUE_POLICY)
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    kube = FakeKube()
    check = KueueCheck(kube, ledger, LiveConfig(str(policy), None), metrics=KueueCheckMetrics(), watch_nodes=False)
    kube.put(f"{API}/admissionchecks/{CHECK}", admission_check())
    check.stores["resourceflavors"].replace([flavor()])
    check.namespaces.replace([namespace("acme", "BR")])
    ledger.reserve(reservation("leftover", name="first", namespace="acme", gpus=8, object_uid="job-earlier-first"),
                   datetime.now(UTC))
    again = workload("first", "acme", gpus=8)  # its owner Job's uid: job-first
    kube.put(_path(again), again)
    try:
        _load(check, kube, [again])
        check.pass_once()
        state, message = _state(kube, again)
        assert state == "Ready"
        assert "already holds" not in message, message
        assert sorted(r.object_uid for r in ledger.active_reservations()) == ["job-earlier-first", "job-first"]
    finally:
        ledger.close()
