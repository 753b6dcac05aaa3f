"""The check controller's shell on an in-memory API (``FakeKube``) and a real SQLite ledger: it reserves under the
owner Job, writes Pending once (not once per pass), marks the AdmissionCheck Active, releases what it reserved once
Kueue drops an evicted Workload's quota, and then admits the Workload that was waiting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpuquota.admission.live import LiveConfig
from gpuquota.kube.api import JsonObject
from gpuquota.kueue.controller import API, KueueCheck
from gpuquota.kueue.metrics import KueueCheckMetrics
from gpuquota.ledger import open_ledger
from gpuquota.testing.kube import FakeKube
from tests.kueue.objects import CHECK, KUEUE_POLICY, admission_check, flavor, namespace, workload


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
