"""Every workload kind, from the realistic manifests the workloads suite keeps, through the real server: the
webhook counts what the adapters count, reserves each admitted workload under its own kind and API group, and
releases it on delete. Objects of kinds gpuquota does not read, or without GPUs, pass untouched."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gpuquota.catalog import load_catalog
from gpuquota.workloads import SUPPORTED_KINDS, ExtractContext, extract, requests_gpu, resolves
from tests.admission.conftest import active_in
from tests.admission.reviews import group_of, load_manifests, review
from tests.admission.serverproc import Server

MANIFESTS = load_manifests()
# The test profile's model fallback and shared-GPU fraction (tests/admission/serverproc.py).
CONTEXT = ExtractContext(load_catalog(), (), "H100-SXM5-80GB", 0.5)


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return group_of(str(obj.get("apiVersion", ""))), str(obj["kind"])


def test_the_manifests_cover_every_supported_kind() -> None:
    assert {_key(obj) for _, obj in MANIFESTS} >= SUPPORTED_KINDS


@pytest.mark.parametrize(("name", "manifest"), MANIFESTS, ids=[n for n, _ in MANIFESTS])
def test_manifest_is_counted_reserved_then_releasing(webhook: Server, name: str, manifest: dict[str, Any]) -> None:
    obj = copy.deepcopy(manifest)
    supported = _key(obj) in SUPPORTED_KINDS
    demand = extract(obj, CONTEXT) if supported and requests_gpu(obj) else None
    namespace = "acme"  # tier-1 in the test profile: warned above 8 GPUs, never denied, so everything reserves
    answer = webhook.review(review(obj, namespace=namespace))
    mine = [r for r in active_in(webhook.ledger_url, namespace) if r.workload.name == obj["metadata"]["name"]
            and r.workload.kind == obj["kind"]]
    if resolves(obj):  # a TrainJob's pods come from its runtime, which this webhook (--kube none) cannot read
        assert answer["allowed"] is False
        assert "without cluster access (--kube none)" in answer["status"]["message"]
        assert mine == []
        return
    assert answer["allowed"] is True
    if demand is None:
        assert "auditAnnotations" not in answer  # passed without a decision
        assert mine == []
        return
    assert answer["auditAnnotations"]["tpp"] == f"{demand.tpp:.0f}"
    if obj["kind"] == "CronJob":  # judged as one run, reserves nothing: each run's Job is charged (test_webhook)
        assert mine == []
        return
    assert [(r.workload.group, r.gpus, r.tpp) for r in mine] == [(_key(obj)[0], demand.gpus, demand.tpp)]
    gone = webhook.review(review(None, operation="DELETE", old=copy.deepcopy(obj)))
    assert gone["allowed"] is True
    # a DELETE frees nothing by itself: releasing until the reconciler sees the GPUs gone (tests/reconcile)
    [held] = [r for r in active_in(webhook.ledger_url, namespace) if r.id == mine[0].id]
    assert held.releasing
