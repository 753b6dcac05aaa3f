"""Bad input gets a clear 400 (or, when the review's uid is readable, a denial that says what is wrong), writes
nothing, and leaves the server serving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from gpuquota.ledger import open_ledger
from tests.admission.conftest import active_in
from tests.admission.reviews import gpu_pod, pytorch_job, review
from tests.admission.serverproc import Server


def _decision_count(server: Server) -> int:
    ledger = open_ledger(server.ledger_url)
    try:
        return len(ledger.decisions())
    finally:
        ledger.close()


@pytest.fixture
def untouched(webhook: Server) -> Iterator[Server]:
    """Asserts after the test that nothing was written and the server still admits a good request."""
    before = _decision_count(webhook)
    yield webhook
    assert _decision_count(webhook) == before
    # the server still judges good requests (a dry run, which writes nothing)
    assert active_in(webhook.ledger_url, "bad") == []
    assert webhook.alive()
    assert webhook.review(review(gpu_pod("still-serving", "acme", 1), dry_run=True))["allowed"] is True


def _error(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "bad_request"
    return str(body["message"])


def test_malformed_json(untouched: Server) -> None:
    assert "malformed JSON" in _error(untouched.post(b'{"apiVersion": "admission.k8s.io/v1", "kind": '))


def test_empty_body(untouched: Server) -> None:
    assert "empty" in _error(untouched.post(b""))


def test_not_an_admission_review(untouched: Server) -> None:
    pod = gpu_pod("raw", "bad", 1)
    assert "AdmissionReview" in _error(untouched.post(pod))
    assert "AdmissionReview" in _error(untouched.post(b"[1, 2, 3]"))


def test_wrong_api_version_without_a_uid_is_a_400(untouched: Server) -> None:
    body = review(gpu_pod("old", "bad", 1))
    body["apiVersion"] = "admission.k8s.io/v1beta1"
    del body["request"]["uid"]
    assert "v1beta1" in _error(untouched.post(body))


def test_wrong_api_version_with_a_uid_is_a_denial_naming_the_version(untouched: Server) -> None:
    body = review(gpu_pod("old", "bad", 1))
    body["apiVersion"] = "admission.k8s.io/v1beta1"
    answer = untouched.review(body)
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 400
    assert "admissionReviewVersions" in answer["status"]["message"]


def test_missing_uid(untouched: Server) -> None:
    body = review(gpu_pod("nouid", "bad", 1))
    body["request"]["uid"] = ""
    assert "uid" in _error(untouched.post(body))
    del body["request"]["uid"]
    assert "uid" in _error(untouched.post(body))


def test_missing_request(untouched: Server) -> None:
    assert "no request" in _error(untouched.post({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}))


def test_wrongly_typed_envelope_field_is_a_denial_when_the_uid_is_readable(untouched: Server) -> None:
    body = review(gpu_pod("typed", "bad", 1))
    body["request"]["dryRun"] = "maybe"
    answer = untouched.review(body)
    assert answer["allowed"] is False
    assert "dryRun" in answer["status"]["message"]


def test_object_not_matching_its_schema_is_denied_with_the_field_path(untouched: Server) -> None:
    job = pytorch_job("broken", "bad", workers=1)
    job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = "lots"
    answer = untouched.review(review(job))
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 400
    message = answer["status"]["message"]
    assert "PyTorchJob" in message
    assert "replicas" in message


def test_object_that_is_not_a_mapping(untouched: Server) -> None:
    body = review(gpu_pod("scalar", "bad", 1))
    body["request"]["object"] = ["not", "an", "object"]
    answer = untouched.review(body)
    assert answer["allowed"] is False
    assert "JSON object" in answer["status"]["message"]


def test_create_without_an_object(untouched: Server) -> None:
    body = review(gpu_pod("none", "bad", 1))
    body["request"]["object"] = None
    answer = untouched.review(body)
    assert answer["allowed"] is False
    assert "no object" in answer["status"]["message"]


@pytest.mark.parametrize("count", [10**12, -4, "1e9", "7.5"])
def test_absurd_gpu_counts_are_denied(untouched: Server, count: object) -> None:
    pod = gpu_pod("absurd", "bad", 1)
    pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = count
    answer = untouched.review(review(pod))
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 400
    assert "nvidia.com/gpu" in answer["status"]["message"]


def test_absurd_replica_count_is_denied(untouched: Server) -> None:
    job = pytorch_job("huge", "bad", workers=1)
    job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = 10**15
    answer = untouched.review(review(job))
    assert answer["allowed"] is False
    assert "replicas" in answer["status"]["message"]


def test_body_over_3_mib_with_content_length(untouched: Server) -> None:
    body = review(gpu_pod("fat", "bad", 1))
    body["request"]["object"]["metadata"]["annotations"]["padding"] = "x" * (3 * 1024 * 1024)
    assert "3 MiB" in _error(untouched.post(body))


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


def test_body_over_3_mib_streamed_without_length_is_refused_without_buffering(untouched: Server) -> None:
    """A chunked upload of 64 MiB: the answer is the 400, and the server's peak memory does not grow by the body
    (over TLS the server still drains what the client pushes, but never holds more than the limit)."""
    peak_before = _peak_rss_kib(untouched.proc.pid)

    def chunks() -> Iterator[bytes]:
        yield b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"big","x":"'
        for _ in range(64):
            yield b"x" * (1024 * 1024)
        yield b'"}}'

    try:
        response: httpx.Response | None = untouched.client().post("/validate", content=chunks())
    except httpx.TransportError:
        response = None  # the server answered and closed mid-upload: also a refusal
    if response is not None:
        assert "3 MiB" in _error(response)
    assert _peak_rss_kib(untouched.proc.pid) - peak_before < 16 * 1024


def test_get_on_validate_is_refused(untouched: Server) -> None:
    response = untouched.client().get("/validate")
    assert response.status_code == 405


@pytest.mark.parametrize("where", ["envelope", "object", "labels"])
@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_json_nested_too_deep_is_a_400(untouched: Server, where: str, depth: int) -> None:
    """Nesting beyond what the decoder recurses into was an uncaught RecursionError (HTTP 500)."""
    nested = "[" * depth + "]" * depth
    text = orjson.dumps(review(gpu_pod("deep", "bad", 1))).decode()
    if where == "envelope":
        text = text.replace('"apiVersion":"admission', f'"x":{nested},"apiVersion":"admission', 1)
    elif where == "object":
        text = text.replace('"restartPolicy":"Never"', f'"restartPolicy":"Never","x":{nested}', 1)
    else:
        text = text.replace('"labels":{}', f'"labels":{{"a":{nested}}}', 1)
    assert nested in text
    assert "nested too deeply" in _error(untouched.post(text.encode()))
