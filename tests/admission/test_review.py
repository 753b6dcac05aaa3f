"""The AdmissionReview envelope: decoding, the errors for bad bodies, and the response the API server reads."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuquota.admission.review import (
    MAX_WARNING_CHARS,
    ReviewError,
    build_response,
    clip_warning,
    decode_object,
    parse_review,
)
from tests.admission.reviews import gpu_pod, review


def _body(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def test_parses_a_real_review_and_keeps_the_object_raw_until_asked() -> None:
    doc = review(gpu_pod("p", "ns", 2), uid="abc", dry_run=True)
    request = parse_review(_body(doc))
    assert (request.uid, request.operation, request.namespace, request.name) == ("abc", "CREATE", "ns", "p")
    assert (request.kind.group, request.kind.kind) == ("", "Pod")
    assert request.dry_run is True
    assert request.user_info.username == "alice@example.com"
    assert isinstance(request.object, msgspec.Raw)
    assert decode_object(request.object, "object", "abc") == doc["request"]["object"]
    assert decode_object(request.old_object, "oldObject", "abc") is None


@pytest.mark.parametrize(
    ("body", "needle", "uid"),
    [
        (b"", "empty", None),
        (b"{", "malformed JSON", None),
        (b'"text"', "AdmissionReview", None),
        (_body({"apiVersion": "admission.k8s.io/v1", "kind": "Pod", "request": {"uid": "u"}}), "kind", "u"),
        (_body({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "u"}}),
         "v1beta1", "u"),
        (_body({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}), "no request", None),
        (_body({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"operation": "CREATE"}}),
         "uid", None),
        (_body({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {"uid": "u", "operation": "PATCH"}}), "operation", "u"),
        (_body({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {"uid": "u", "operation": "CREATE", "dryRun": "yes"}}), "dryRun", "u"),
    ],
)
def test_bad_bodies_raise_a_review_error_with_the_uid_when_readable(body: bytes, needle: str, uid: str | None) -> None:
    with pytest.raises(ReviewError) as caught:
        parse_review(body)
    assert needle in caught.value.message
    assert caught.value.uid == uid


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_parser(data: bytes) -> None:
    message = "parsed"
    try:
        parse_review(data)
    except ReviewError as exc:
        message = exc.message
    assert message  # a ReviewError with a message, or a parsed review: never another exception


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=12))
def test_arbitrary_json_in_the_request_never_crashes_the_parser(value: object) -> None:
    doc = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": value}
    message = "parsed"
    try:
        parse_review(_body(doc))
    except ReviewError as exc:
        message = exc.message
    assert message


def test_allowed_response_echoes_the_uid_and_nothing_else_by_default() -> None:
    out = json.loads(build_response("u-1", True))
    assert out == {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                   "response": {"uid": "u-1", "allowed": True}}


def test_denial_carries_code_message_warnings_and_annotations() -> None:
    out = json.loads(build_response("u-2", False, "no room", ["w" * 300], {"tier": "tier-2"}))
    response = out["response"]
    assert response["status"] == {"code": 403, "message": "no room", "reason": "Forbidden"}
    assert response["auditAnnotations"] == {"tier": "tier-2"}
    assert len(response["warnings"][0]) == MAX_WARNING_CHARS


@given(st.text(max_size=400))
def test_clipped_warnings_are_within_the_kubernetes_limit(text: str) -> None:
    clipped = clip_warning(text)
    assert len(clipped) <= MAX_WARNING_CHARS
    if len(" ".join(text.split())) <= MAX_WARNING_CHARS:
        assert clipped == " ".join(text.split())
