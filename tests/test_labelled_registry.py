"""Every series of a process given --cluster-name carries cluster="<name>"; without it the series are unchanged."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gpuquota.admission.metrics import WebhookMetrics
from gpuquota.inventory.agent_metrics import AgentMetrics
from gpuquota.reconcile.metrics import ReconcilerMetrics


def _labels(text: str) -> list[dict[str, str]]:
    return [sample.labels for family in text_string_to_metric_families(text) for sample in family.samples]


def test_every_sample_of_a_named_cluster_carries_its_label() -> None:
    webhook = WebhookMetrics(frozenset, cluster="eu-1")
    webhook.set_policy("ai-diffusion-2025", "2025.1")
    webhook.observe_request("CREATE", "Job", "allowed", "", 0.001)
    for registry in (webhook.registry, ReconcilerMetrics(cluster="eu-1").registry,
                     AgentMetrics("node-1", "eu-1").registry):
        samples = _labels(generate_latest(registry).decode())
        assert samples
        assert all(labels.get("cluster") == "eu-1" for labels in samples)


def test_without_a_name_nothing_changes() -> None:
    samples = _labels(generate_latest(ReconcilerMetrics().registry).decode())
    assert samples
    assert all("cluster" not in labels for labels in samples)
