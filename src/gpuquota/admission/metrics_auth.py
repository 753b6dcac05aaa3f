"""Who may read ``/metrics``: a bearer token the API server authenticates (TokenReview) and authorises for ``get`` on
the non-resource URL ``/metrics`` (SubjectAccessReview) — what controller-runtime's secure metrics do.

The metrics name every tenant's usage and caps, and an infinite cap gives a VEU holder away, so in a cluster they
are not for any pod that reaches the port. Prometheus sends its service account token; an admin grants that account
``get`` on ``/metrics`` (the chart's ``<release>-metrics-reader`` ClusterRole).

The API is reached through one narrow function, ``post(path, review) -> answered review``, so this module does not
care which Kubernetes client sits behind it. Answers are cached briefly per token (by its SHA-256, never the token
itself) in a bounded cache: Prometheus scrapes every 30 s with one token, an attacker sends a new token each time.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from gpuquota.boundedcache import BoundedCache

log = logging.getLogger("gpuquota.admission.metrics_auth")

ReviewPoster = Callable[[str, dict[str, Any]], Mapping[str, Any]]
"""POST a review object to an API path; the review as the API server answered it (raises on any failure)."""

TOKEN_REVIEWS: Final = "/apis/authentication.k8s.io/v1/tokenreviews"  # noqa: S105 - an API path
ACCESS_REVIEWS: Final = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
MAX_TOKEN_BYTES: Final = 16 * 1024  # a service account JWT is ~1 kB; longer is not a token worth a round trip


@dataclass(frozen=True, slots=True)
class Verdict:
    """``status`` is the HTTP status to answer with when not ``allowed`` (401, 403, or 503 when the API failed)."""

    allowed: bool
    status: int
    reason: str
    user: str = ""


def bearer_token(authorization: str | None) -> str | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


class KubernetesMetricsAuth:
    """Checks a request's ``Authorization`` header for ``verb`` on ``path``. Blocking (two API calls on a miss):
    call it off the event loop."""

    def __init__(self, post: ReviewPoster, *, path: str = "/metrics", verb: str = "get", ttl_s: float = 60.0,
                 negative_ttl_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._post = post
        self._path = path
        self._verb = verb
        self._ttl = ttl_s
        self._negative_ttl = negative_ttl_s
        self._clock = clock
        self.cache = BoundedCache[str, tuple[float, Verdict]](
            "metrics_tokens", max_entries=4096, max_bytes=4 * 1024 * 1024, size=lambda key, value: 300)

    def check(self, authorization: str | None) -> Verdict:
        token = bearer_token(authorization)
        if token is None:
            return Verdict(False, 401, "a bearer token is required (Authorization: Bearer <service account token>)")
        if len(token) > MAX_TOKEN_BYTES:
            return Verdict(False, 401, "the bearer token is not valid")
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self.cache.get(key)
        now = self._clock()
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            verdict = self._review(token)
        except Exception as exc:  # the API server is down or refused us: say so, cache nothing
            log.error("cannot review a metrics client's token with the API server: %s", exc)
            return Verdict(False, 503, "the API server could not review the token; try again")
        self.cache.put(key, (now + (self._ttl if verdict.allowed else self._negative_ttl), verdict))
        return verdict

    def _review(self, token: str) -> Verdict:
        review = self._post(TOKEN_REVIEWS, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                            "spec": {"token": token}})
        status = review.get("status") or {}
        if not status.get("authenticated"):
            return Verdict(False, 401, "the bearer token is not valid")
        user = status.get("user") or {}
        username = str(user.get("username") or "")
        spec: dict[str, Any] = {"user": username, "uid": str(user.get("uid") or ""),
                                "groups": list(user.get("groups") or []),
                                "nonResourceAttributes": {"path": self._path, "verb": self._verb}}
        if user.get("extra"):
            spec["extra"] = user["extra"]
        access = self._post(ACCESS_REVIEWS, {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                                             "spec": spec})
        if not (access.get("status") or {}).get("allowed"):
            return Verdict(False, 403, f"{username} may not {self._verb} {self._path}", username)
        return Verdict(True, 200, "", username)
