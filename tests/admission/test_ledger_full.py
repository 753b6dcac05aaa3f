"""A full ledger (disk, volume or database quota) fails GPU admissions closed with a message that says so, a
metric and an error count, and recovers by itself once a write goes through again."""

from __future__ import annotations

import json
from pathlib import Path

from gpuquota.admission.audit import AuditLog
from gpuquota.admission.handler import Admission, Pending, Reply
from gpuquota.admission.live import LiveConfig
from gpuquota.admission.metrics import WebhookMetrics
from gpuquota.ledger import LedgerFull
from gpuquota.testing import ScriptedLedger
from tests.admission.reviews import cpu_pod, gpu_pod, review
from tests.admission.serverproc import TEST_POLICY, tenants_yaml


def _answer(admission: Admission, body: dict[str, object]) -> dict[str, object]:
    result = admission.begin(json.dumps(body).encode())
    reply: Reply = result.run() if isinstance(result, Pending) else result
    answer: dict[str, object] = json.loads(reply.body)["response"]
    return answer


def test_full_storage_denies_gpu_workloads_with_a_clear_message_and_recovers(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(TEST_POLICY)
    (tmp_path / "tenants.yaml").write_text(tenants_yaml())
    live = LiveConfig(str(tmp_path / "policy.yaml"), tmp_path / "tenants.yaml")
    metrics = WebhookMetrics(lambda: live.current.known_tenants)
    ledger = ScriptedLedger(usages=[{}])
    admission = Admission(live, ledger, metrics, AuditLog(None))
    full = LedgerFull("SQLite ledger full: database or disk is full")

    def refuse(*_: object) -> None:
        raise full

    ledger.reserve = refuse  # type: ignore[method-assign,assignment]
    answer = _answer(admission, review(gpu_pod("p", "acme", 1)))
    assert answer["allowed"] is False
    status = answer["status"]
    assert isinstance(status, dict)
    assert status["code"] == 503
    assert "no space left" in status["message"]
    assert metrics.registry.get_sample_value("gpuquota_ledger_full") == 1
    assert metrics.registry.get_sample_value("gpuquota_errors_total", {"type": "ledger_full"}) == 1
    assert _answer(admission, review(cpu_pod("web", "acme")))["allowed"] is True  # no GPU: never affected
    assert metrics.registry.get_sample_value("gpuquota_ledger_full") == 1  # a pass without a write proves nothing

    del ledger.reserve  # space returns
    assert _answer(admission, review(gpu_pod("q", "acme", 1)))["allowed"] is True
    assert metrics.registry.get_sample_value("gpuquota_ledger_full") == 0
