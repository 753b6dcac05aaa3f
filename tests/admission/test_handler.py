"""The decision path in-process, with a scripted ledger: the outcomes a real database produces only under races
or failures (a reservation refused by the in-transaction re-check, a database that goes away, a bug)."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import generate_latest

from gpuquota.admission.audit import AuditLog
from gpuquota.admission.handler import Admission, Pending, Reply
from gpuquota.admission.ledger_access import DeferredLedger
from gpuquota.admission.live import LiveConfig
from gpuquota.admission.metrics import WebhookMetrics
from gpuquota.admission.namespaces import NamespaceCache
from gpuquota.admission.review import parse_review
from gpuquota.domain import Metric, Scope, UsageKey
from gpuquota.ledger import (
    LedgerUnavailable,
    ReserveStatus,
)
from gpuquota.testing import ScriptedLedger
from tests.admission.reviews import H100_TPP, TRAINING_OPERATOR, gpu_pod, review

TENANT_KEY = UsageKey(Scope.TENANT, "race", Metric.CONCURRENT_TPP)
CAP = 16 * H100_TPP


def _run(admission: Admission, body: dict[str, Any]) -> dict[str, Any]:
    result = admission.begin(json.dumps(body).encode())
    reply: Reply = result.run() if isinstance(result, Pending) else result
    assert reply.status == 200
    answer: dict[str, Any] = json.loads(reply.body)["response"]
    return answer


def _admission(live: LiveConfig, ledger: ScriptedLedger) -> tuple[Admission, WebhookMetrics]:
    metrics = WebhookMetrics(lambda: live.current.known_tenants)
    return Admission(live, ledger, metrics, AuditLog(None)), metrics


def _sample(metrics: WebhookMetrics, name: str, labels: dict[str, str]) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_a_lost_race_is_judged_again_on_fresh_usage(live: LiveConfig) -> None:
    # first read: room for 4 GPUs; by the time of the reserve another admission took it; fresh read: 14 used
    ledger = ScriptedLedger(usages=[{TENANT_KEY: 0.0}, {TENANT_KEY: 14 * H100_TPP}],
                            reserves=[ReserveStatus.CAP_EXCEEDED, ReserveStatus.RESERVED])
    admission, metrics = _admission(live, ledger)
    answer = _run(admission, review(gpu_pod("late", "race", 4)))
    assert answer["allowed"] is False
    assert "tenant-cap" in answer["status"]["message"]
    assert "221.6k TPP already held" in answer["status"]["message"]  # the fresh figure: 14 GPUs, not 0
    assert ledger.reserved == []
    assert [r.allowed for r in ledger.recorded] == [False]
    assert _sample(metrics, "gpuquota_admission_requests_total",
                   {"operation": "CREATE", "kind": "Pod", "decision": "denied", "rule": "tenant-cap"}) == 1


def test_a_lost_race_that_still_fits_is_reserved_on_the_retry(live: LiveConfig) -> None:
    ledger = ScriptedLedger(usages=[{TENANT_KEY: 0.0}], reserves=[ReserveStatus.CAP_EXCEEDED, ReserveStatus.RESERVED])
    admission, _ = _admission(live, ledger)
    assert _run(admission, review(gpu_pod("retry", "race", 1)))["allowed"] is True
    assert len(ledger.reserved) == 1


def test_a_ledger_that_keeps_refusing_ends_in_a_denial_with_its_figures(live: LiveConfig) -> None:
    ledger = ScriptedLedger(usages=[{TENANT_KEY: 0.0}], reserves=[ReserveStatus.CAP_EXCEEDED])
    admission, _ = _admission(live, ledger)
    answer = _run(admission, review(gpu_pod("contended", "race", 2)))
    assert answer["allowed"] is False
    assert "filled up while it was being admitted" in answer["status"]["message"]
    assert "cap 253,312" in answer["status"]["message"]
    assert ledger.usage_calls == 4  # the first read and one per refused attempt
    assert [r.allowed for r in ledger.recorded] == [False]


def test_ledger_unavailable_fails_closed_with_503_and_counts_it(live: LiveConfig) -> None:
    ledger = ScriptedLedger(usages=[{}], fail_with=LedgerUnavailable("connection refused"))
    admission, metrics = _admission(live, ledger)
    answer = _run(admission, review(gpu_pod("down", "race", 1)))
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 503
    assert "connection refused" in answer["status"]["message"]
    assert _sample(metrics, "gpuquota_errors_total", {"type": "ledger_unavailable"}) == 1
    assert _sample(metrics, "gpuquota_ledger_up", {}) == 0


def test_a_bug_is_an_internal_error_that_denies_and_is_counted(live: LiveConfig) -> None:
    ledger = ScriptedLedger(usages=[{}], fail_with=ZeroDivisionError("a bug"))
    admission, metrics = _admission(live, ledger)
    answer = _run(admission, review(gpu_pod("bug", "race", 1)))
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 500
    assert "internal error" in answer["status"]["message"]
    assert _sample(metrics, "gpuquota_errors_total", {"type": "internal"}) == 1


def test_unsupported_kinds_and_connect_pass_untouched(live: LiveConfig) -> None:
    ledger = ScriptedLedger(usages=[{}], fail_with=AssertionError("the ledger must not be asked"))
    admission, _ = _admission(live, ledger)
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "race"},
                  "spec": {"template": gpu_pod("x", "race", 8)}}
    answer = _run(admission, review(deployment))
    assert answer["allowed"] is True
    assert "status" not in answer
    connect = review(gpu_pod("exec", "race", 8), operation="CONNECT")
    assert _run(admission, connect)["allowed"] is True


def test_active_reservations_are_exported_only_once_the_ledger_has_counted_them(live: LiveConfig) -> None:
    metrics = WebhookMetrics(frozenset)
    text = generate_latest(metrics.registry).decode()
    assert "# TYPE gpuquota_reservations_active gauge" in text
    assert "\ngpuquota_reservations_active " not in text  # unknown: no made-up zero
    scripted = ScriptedLedger(usages=[{}])
    ledger = DeferredLedger(lambda: scripted)
    assert ledger.open()
    admission = Admission(live, ledger, metrics, AuditLog(None))
    for index in range(3):
        assert _run(admission, review(gpu_pod(f"c{index}", "race", 1)))["allowed"] is True
    metrics.active_reservations = ledger.count_active()
    assert "\ngpuquota_reservations_active 3.0" in generate_latest(metrics.registry).decode()


def test_only_named_controllers_are_trusted(live: LiveConfig) -> None:
    """Trust is explicit: the built-in controllers and --trusted-controller names. A service account of a namespace
    that belongs to no tenant (``default:default`` included) is not a controller because of where it lives."""
    namespaces = NamespaceCache()
    namespaces.replace([
        {"kind": "Namespace", "metadata": {"name": "kubeflow"}},
        {"kind": "Namespace", "metadata": {"name": "default"}},
        {"kind": "Namespace", "metadata": {"name": "team-a", "labels": {"gpuquota.io/tenant": "acme"}}},
    ])
    admission = Admission(live, ScriptedLedger(usages=[{}]), WebhookMetrics(frozenset), AuditLog(None),
                          namespaces=namespaces, trusted_controllers=("ops-bot", TRAINING_OPERATOR))

    def trusted(user: str, namespace: str = "team-a") -> bool:
        request = parse_review(json.dumps(review(gpu_pod("p", namespace, 1), user=user)).encode())
        return admission.trust.controller_made(request)

    assert trusted("system:kube-controller-manager")
    for controller in ("job-controller", "cronjob-controller", "replicaset-controller", "statefulset-controller"):
        assert trusted(f"system:serviceaccount:kube-system:{controller}")
    assert trusted(TRAINING_OPERATOR)  # named
    assert trusted("ops-bot")
    assert not trusted("alice@example.com")
    assert not trusted("system:serviceaccount:team-a:default")
    assert not trusted("system:serviceaccount:default:default")  # no tenant's namespace: still nobody's controller
    assert not trusted("system:serviceaccount:kubeflow:default")  # the operator's namespace, another account
    assert not trusted("system:serviceaccount:kube-system:default")  # kube-system, but no controller
    assert not trusted("system:serviceaccount:kube-system:generic-garbage-collector")
    assert not trusted("system:serviceaccounts:kube-system")  # a group name, not a service account
    bare = Admission(live, ScriptedLedger(usages=[{}]), WebhookMetrics(frozenset), AuditLog(None))
    request = parse_review(json.dumps(review(gpu_pod("p", "team-a", 1), user=TRAINING_OPERATOR)).encode())
    assert not bare.trust.controller_made(request)  # an operator not named is not trusted


def test_an_unknown_gpu_product_is_counted_high_warned_and_metered(live: LiveConfig) -> None:
    """A product the catalog lacks is not the strongest catalog part: it counts at the profile's unknownModelTpp,
    the tenant is told, and the admin's counter (alert GpuQuotaUnknownGpuModel) moves; a known one leaves it."""
    ledger = ScriptedLedger(usages=[{TENANT_KEY: 0.0}] * 2, reserves=[ReserveStatus.RESERVED] * 2)
    admission, metrics = _admission(live, ledger)
    _run(admission, review(gpu_pod("known", "race", 1)))
    assert _sample(metrics, "gpuquota_unknown_gpu_models_total", {}) == 0
    answer = _run(admission, review(gpu_pod("future", "race", 1, product="NVIDIA-Z900-SXM9")))
    assert any("NVIDIA-Z900-SXM9" in w and "catalog" in w for w in answer.get("warnings", []))
    assert ledger.reserved[-1].model == "unknown"
    assert ledger.reserved[-1].tpp == live.current.policy.unknown_model_tpp
    assert _sample(metrics, "gpuquota_unknown_gpu_models_total", {}) == 1
