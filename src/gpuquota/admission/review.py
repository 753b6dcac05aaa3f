"""The AdmissionReview v1 envelope as msgspec structs: decoding and encoding it is the webhook's hot path.

Only the envelope is typed. The object under review stays a ``msgspec.Raw`` until a handler needs it, and is then
decoded to a plain dict for the workload adapters, so that requests for objects without GPUs never pay for more
than one pass over the bytes. Pydantic is kept for configuration files, where speed does not matter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec

API_VERSION: Final = "admission.k8s.io/v1"
REVIEW_KIND: Final = "AdmissionReview"
MAX_WARNING_CHARS: Final = 120
OPERATIONS: Final = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})


class GroupVersionKind(msgspec.Struct, frozen=True):
    group: str = ""
    version: str = ""
    kind: str = ""


class GroupVersionResource(msgspec.Struct, frozen=True):
    group: str = ""
    version: str = ""
    resource: str = ""


class UserInfo(msgspec.Struct, frozen=True):
    username: str = ""
    uid: str = ""
    groups: list[str] = msgspec.field(default_factory=list)


class AdmissionRequest(msgspec.Struct, frozen=True, rename="camel"):
    uid: str = ""
    kind: GroupVersionKind = msgspec.field(default_factory=GroupVersionKind)
    sub_resource: str = ""  # "scale" for ``<resource>/scale``: ``kind`` is then autoscaling/v1 Scale
    resource: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)  # read by ``resource_of`` when needed
    namespace: str = ""
    name: str = ""
    operation: str = ""
    user_info: UserInfo = msgspec.field(default_factory=UserInfo)
    object: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)  # empty when absent
    old_object: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    dry_run: bool = False


class AdmissionReview(msgspec.Struct, frozen=True, rename="camel"):
    api_version: str = ""
    kind: str = ""
    request: AdmissionRequest | None = None


class _UidOnly(msgspec.Struct):
    uid: str = ""


class _UidEnvelope(msgspec.Struct):
    request: _UidOnly | None = None


class ReviewError(Exception):
    """The body is not a usable AdmissionReview. ``uid`` is set when the request's uid could still be read: the
    API server then gets a review back (a denial naming the problem) instead of a bare HTTP 400."""

    def __init__(self, message: str, uid: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.uid = uid


_review_decoder: Final = msgspec.json.Decoder(AdmissionReview)
# msgspec recurses once per nesting level (also when skipping a Raw field) and raises RecursionError near the
# interpreter's limit (~1,000 levels); no Kubernetes object comes near that, so deeper JSON is refused as bad input.
TOO_DEEP: Final = "JSON nested too deeply (about 1,000 levels is the limit; no Kubernetes object comes near it)"
_uid_decoder: Final = msgspec.json.Decoder(_UidEnvelope)


def _salvage_uid(body: bytes) -> str | None:
    """The request uid of a review whose other fields are wrong, so the denial can be addressed to it."""
    try:
        envelope = _uid_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    if envelope.request is None or not envelope.request.uid:
        return None
    return envelope.request.uid


def parse_review(body: bytes) -> AdmissionRequest:
    """The request of an ``admission.k8s.io/v1`` AdmissionReview; anything else raises ``ReviewError``."""
    if not body:
        raise ReviewError("empty request body: expected an admission.k8s.io/v1 AdmissionReview")
    try:
        review = _review_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise ReviewError(f"not an AdmissionReview: {exc}", _salvage_uid(body)) from None
    except msgspec.DecodeError as exc:
        raise ReviewError(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise ReviewError(TOO_DEEP) from None
    if review.kind != REVIEW_KIND:
        raise ReviewError(f"expected kind {REVIEW_KIND!r}, got {review.kind!r}", _salvage_uid(body))
    if review.api_version != API_VERSION:
        raise ReviewError(
            f"unsupported apiVersion {review.api_version!r}: gpuquota speaks {API_VERSION} "
            "(set admissionReviewVersions: [v1] in the webhook configuration)",
            _salvage_uid(body),
        )
    request = review.request
    if request is None:
        raise ReviewError("AdmissionReview has no request")
    if not request.uid:
        raise ReviewError("AdmissionReview request has no uid")
    if request.operation not in OPERATIONS:
        raise ReviewError(f"unknown operation {request.operation!r}", request.uid)
    return request


def decode_object(raw: msgspec.Raw, field: str, uid: str) -> dict[str, Any] | None:
    """The object (or oldObject) as a plain dict for the workload adapters; ``None`` when absent or null."""
    if not raw:
        return None
    try:
        value: Any = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:  # pragma: no cover - the envelope decode already validated the JSON
        raise ReviewError(f"request.{field} is not valid JSON: {exc}", uid) from None
    except RecursionError:  # pragma: no cover - the envelope decode already went as deep
        raise ReviewError(f"request.{field}: {TOO_DEEP}", uid) from None
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ReviewError(f"request.{field} must be a JSON object, got {type(value).__name__}", uid)
    return value


_resource_decoder: Final = msgspec.json.Decoder(GroupVersionResource)


def resource_of(request: AdmissionRequest) -> GroupVersionResource:
    """``request.resource``, decoded only for the rare requests that need it (a /scale request's parent), so the
    envelope of every other review skips it as raw bytes."""
    if not request.resource:
        return GroupVersionResource()
    try:
        return _resource_decoder.decode(request.resource)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise ReviewError(f"request.resource is not a group/version/resource: {exc}", request.uid) from None


def clip_warning(text: str) -> str:
    """Kubernetes shows warnings verbatim and recommends < 120 characters; longer ones are cut with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= MAX_WARNING_CHARS else text[: MAX_WARNING_CHARS - 1] + "…"


class _Status(msgspec.Struct, omit_defaults=True):
    code: int = 0
    message: str = ""
    reason: str = ""


class _Response(msgspec.Struct, omit_defaults=True, rename="camel"):
    uid: str
    allowed: bool
    status: _Status | None = None
    warnings: list[str] | None = None
    audit_annotations: dict[str, str] | None = None


class _ReviewOut(msgspec.Struct, rename="camel"):
    response: _Response
    api_version: str = API_VERSION
    kind: str = REVIEW_KIND


_encoder: Final = msgspec.json.Encoder()
# metav1.StatusReason per code: kubectl prints it as "Error from server (<reason>)".
_REASONS: Final = {400: "BadRequest", 403: "Forbidden", 500: "InternalError", 503: "ServiceUnavailable"}


def build_response(
    uid: str,
    allowed: bool,
    message: str = "",
    warnings: Sequence[str] = (),
    audit_annotations: Mapping[str, str] | None = None,
    *,
    code: int = 403,
) -> bytes:
    """The AdmissionReview the API server expects back: uid echoed; on denial ``status.code`` and message."""
    status = None if allowed else _Status(code=code, message=message, reason=_REASONS.get(code, ""))
    clipped = [clip_warning(w) for w in warnings] or None
    response = _Response(uid, allowed, status, clipped, dict(audit_annotations) if audit_annotations else None)
    return _encoder.encode(_ReviewOut(response))
