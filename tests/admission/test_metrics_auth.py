"""The metrics token check in-process: what it asks the API server, what it caches (by hash, bounded), and that
a failing API server answers 503 without caching."""

from __future__ import annotations

from typing import Any

from gpuquota.admission.metrics_auth import ACCESS_REVIEWS, TOKEN_REVIEWS, KubernetesMetricsAuth, bearer_token


class Api:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.down = False

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((path, body))
        if self.down:
            raise OSError("connection refused")
        if path == TOKEN_REVIEWS:
            token = body["spec"]["token"]
            if token.startswith("good"):
                return {**body, "status": {"authenticated": True, "user": {"username": token, "groups": ["g"]}}}
            return {**body, "status": {"authenticated": False}}
        assert path == ACCESS_REVIEWS
        return {**body, "status": {"allowed": body["spec"]["user"] == "good-reader"}}


def test_bearer_token_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None


def test_verdicts_and_caching() -> None:
    api = Api()
    now = [0.0]
    auth = KubernetesMetricsAuth(api.post, clock=lambda: now[0])
    assert auth.check(None).status == 401
    assert auth.check("Bearer bad").status == 401
    assert auth.check("Bearer good-other").status == 403
    assert auth.check("Bearer good-reader").allowed
    calls = len(api.calls)
    assert auth.check("Bearer good-reader").allowed  # cached
    assert len(api.calls) == calls
    now[0] = 61.0
    assert auth.check("Bearer good-reader").allowed  # expired: asked again
    assert len(api.calls) == calls + 2
    assert all("good-reader" not in key for key in auth.cache)  # tokens are kept only as hashes


def test_an_unreachable_api_server_is_503_and_not_cached() -> None:
    api = Api()
    auth = KubernetesMetricsAuth(api.post)
    api.down = True
    assert auth.check("Bearer good-reader").status == 503
    api.down = False
    assert auth.check("Bearer good-reader").allowed


def test_absurd_tokens_cost_no_round_trip_and_the_cache_stays_bounded() -> None:
    api = Api()
    auth = KubernetesMetricsAuth(api.post)
    assert auth.check("Bearer " + "x" * 100_000).status == 401
    assert api.calls == []
    for index in range(5000):
        auth.check(f"Bearer bad-{index}")
    assert len(auth.cache) <= auth.cache.max_entries
