"""Fuzzing the decision path: review bytes → decoder → demand extraction → tenant → decide() → answer.

Hypothesis drives it (no native fuzzer to build): real manifests from tests/workloads/manifests with values replaced
at random places by random JSON (strings that look like quantities, huge numbers, deep or wide structures, wrong
types), and raw bytes. Whatever comes in, the webhook must answer — a 400, or a review allowing or denying with a
reason — and never hit an internal error, never raise, never write a ledger row for a review it could not judge.
The example budget (``GPUQUOTA_FUZZ_EXAMPLES``, 150 per property by default) bounds its time in ``scripts/test``;
raise it for a longer campaign. Findings are fixed and kept as explicit examples below.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gpuquota.admission.audit import AuditLog
from gpuquota.admission.handler import Admission, Pending, Reply
from gpuquota.admission.live import LiveConfig
from gpuquota.admission.metrics import WebhookMetrics
from gpuquota.domain import UsageKey
from gpuquota.ledger import (
    AuditRecord,
    Reservation,
    ReservationView,
    ReserveResult,
    ReserveStatus,
    Rider,
    RideResult,
    RideStatus,
    WorkloadRef,
)
from tests.admission.reviews import review
from tests.admission.serverproc import TEST_POLICY, tenants_yaml

EXAMPLES = int(os.environ.get("GPUQUOTA_FUZZ_EXAMPLES", "150"))
MANIFESTS = sorted((Path(__file__).parents[1] / "workloads" / "manifests").glob("*.yaml"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class CountingLedger:
    """Accepts every reservation; counts writes so a test can tell whether a review was recorded."""

    def __init__(self) -> None:
        self.writes = 0

    def usage(self, keys: Iterable[UsageKey], now: datetime) -> dict[UsageKey, float]:
        return {}

    def reserve(self, reservation: Reservation, now: datetime) -> ReserveResult:
        self.writes += 1
        return ReserveResult(ReserveStatus.RESERVED, self.writes)

    def record_decision(self, audit: AuditRecord) -> None:
        self.writes += 1

    def release(self, workload: WorkloadRef, now: datetime, reason: str) -> int:
        return 0

    def mark_releasing(self, workload: WorkloadRef, now: datetime, reason: str) -> int:
        return 0

    def find_active(self, workload: WorkloadRef) -> ReservationView | None:
        return None

    def reserved_by(self, request_uid: str) -> int | None:
        return None

    def ride(self, owner: WorkloadRef, owner_uid: str, rider: Rider, now: datetime) -> RideResult:
        return RideResult(RideStatus.NO_OWNER)

    def count_active(self) -> int:
        return 0

    def ping(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def admission(tmp_path_factory: pytest.TempPathFactory) -> tuple[Admission, WebhookMetrics, CountingLedger]:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "policy.yaml").write_text(TEST_POLICY)
    (root / "tenants.yaml").write_text(tenants_yaml())
    live = LiveConfig(str(root / "policy.yaml"), root / "tenants.yaml")
    metrics = WebhookMetrics(lambda: live.current.known_tenants)
    ledger = CountingLedger()
    return Admission(live, ledger, metrics, AuditLog(None)), metrics, ledger


def _objects() -> list[dict[str, Any]]:
    out = []
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind"):
                out.append(doc)
    return out


OBJECTS = _objects()

_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True)
            | st.sampled_from(["", "0", "1", "8", "1e9", "1e308", "-1", "7.5", "1Ki", "1e-3", "0x10", "NaN",
                               "Infinity", "999999999999999999999", "1.5Gi", "2m", "H100", "NVIDIA-H100-80GB-HBM3",
                               "nvidia.com/gpu", "nvidia.com/mig-1g.10gb", "72h", "-5h", "1000000h", "training",
                               "In", "NotIn", "nvidia.com/gpu.product", "x" * 300, "-SHARED" * 50])
            | st.text(max_size=20))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=12) | st.sampled_from(
                         ["limits", "requests", "nvidia.com/gpu", "replicas", "template", "spec", "containers",
                          "nodeSelector", "affinity", "metadata", "annotations", "resources", "overhead"]),
                         inner, max_size=4), max_leaves=12)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _replace(root: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = root
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return root


@st.composite
def mutated_reviews(draw: st.DrawFn) -> bytes:
    obj = copy.deepcopy(draw(st.sampled_from(OBJECTS)))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(obj)
        obj = _replace(obj, draw(st.sampled_from(paths)), draw(_json))
    operation = draw(st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT"]))
    source = obj if isinstance(obj, dict) else {"kind": "Pod", "apiVersion": "v1"}
    kind = source.get("kind") if isinstance(source.get("kind"), str) else "Pod"
    api = source.get("apiVersion") if isinstance(source.get("apiVersion"), str) else "v1"
    body = review({"kind": kind, "apiVersion": api, "metadata": {"name": "fuzz"}},
                  operation=operation, namespace=draw(st.sampled_from(["acme", "deny", "nobody", ""])),
                  dry_run=draw(st.booleans()))
    body["request"]["object"] = obj
    if operation == "UPDATE":
        body["request"]["oldObject"] = draw(st.sampled_from([None, copy.deepcopy(source), draw(_json)]))
    if draw(st.booleans()):
        body["request"][draw(st.sampled_from(["kind", "uid", "userInfo", "subResource", "resource", "dryRun",
                                               "name"]))] = draw(_json)
    return json.dumps(body, allow_nan=True).encode()


def _judge(admission: Admission, body: bytes) -> Reply:
    result = admission.begin(body)
    return result.run() if isinstance(result, Pending) else result


def _check(setup: tuple[Admission, WebhookMetrics, CountingLedger], body: bytes) -> None:
    admission, metrics, _ = setup
    reply = _judge(admission, body)
    assert reply.status in (200, 400)
    answer = json.loads(reply.body)
    if reply.status == 200:
        response = answer["response"]
        assert isinstance(response["allowed"], bool)
        if not response["allowed"]:
            assert response["status"]["message"]
    assert metrics.registry.get_sample_value("gpuquota_errors_total", {"type": "internal"}) == 0, body[:2000]


@FUZZ
@given(mutated_reviews())
def test_mutated_manifests_are_always_answered(admission: tuple[Admission, WebhookMetrics, CountingLedger],
                                               body: bytes) -> None:
    _check(admission, body)


@FUZZ
@given(st.binary(max_size=300) | _json.map(lambda v: json.dumps(v, allow_nan=True).encode()))
@example(b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":' + b"[" * 5000 + b"]" * 5000 + b"}")
def test_arbitrary_bodies_are_answered(admission: tuple[Admission, WebhookMetrics, CountingLedger],
                                       body: bytes) -> None:
    _check(admission, body)
