"""``gpuquota check`` runs the webhook's own judge: for the same manifests, tenants, usage and time, each
offline row says what the webhook answers (allowed, message, warnings) — including the accumulation of admitted
workloads, which the webhook gets from its ledger and ``check`` from an in-memory one."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gpuquota.admission.audit import AuditLog
from gpuquota.admission.handler import Admission, Pending
from gpuquota.admission.live import LiveConfig
from gpuquota.admission.metrics import WebhookMetrics
from gpuquota.admission.review import clip_warning
from gpuquota.commands.check import Status, Who, evaluate
from gpuquota.ledger.memory import MemoryLedger
from gpuquota.tenancy import load_tenants
from tests.admission.reviews import gpu_pod, pytorch_job, review

TENANTS = Path(__file__).resolve().parents[2] / "examples" / "tenants.yaml"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _webhook(live: LiveConfig) -> Admission:
    metrics = WebhookMetrics(lambda: live.current.known_tenants)
    return Admission(live, MemoryLedger(), metrics, AuditLog(None), clock=lambda: NOW)


def _answer(admission: Admission, obj: dict[str, Any]) -> dict[str, Any]:
    result = admission.begin(json.dumps(review(obj)).encode())
    reply = result.run() if isinstance(result, Pending) else result
    answer: dict[str, Any] = json.loads(reply.body)["response"]
    return answer


sizes = st.lists(st.tuples(st.sampled_from(["pod", "pytorchjob"]), st.integers(1, 40)), min_size=1, max_size=5)


@settings(max_examples=25, deadline=None)
@given(workloads=sizes, namespace=st.sampled_from(["globex-ml", "acme-train", "nobody-knows"]))
def test_check_answers_what_the_webhook_answers(workloads: list[tuple[str, int]], namespace: str) -> None:
    live = LiveConfig("ai-diffusion-2025", TENANTS)
    admission = _webhook(live)
    objects = [gpu_pod(f"w{i}", namespace, n) if kind == "pod" else pytorch_job(f"w{i}", namespace, n)
               for i, (kind, n) in enumerate(workloads)]
    rows = evaluate(objects, live.current.policy, Who(None, load_tenants(TENANTS), None), {}, NOW)
    for obj, row in zip(objects, rows, strict=True):
        answer = _answer(admission, obj)
        assert answer["allowed"] is (row.status is not Status.DENIED), row.message
        assert answer.get("status", {}).get("message", "") == ("" if answer["allowed"] else row.message)
        assert answer.get("warnings", []) == [clip_warning(w) for w in (row.decision.warnings if row.decision else ())]
