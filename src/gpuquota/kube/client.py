"""The real Kubernetes client behind ``KubeApi``: the official ``kubernetes`` package end to end — its loaders find
and renew the credentials (``gpuquota.kube.config``), its ``ApiClient`` (urllib3) carries the requests — with raw
JSON: bodies are parsed by orjson straight into dicts, never into the package's generated models.

Why this transport: measured in bench/bench_kube_client.py against a lean httpx transport fed by the same
configuration (figures in docs/benchmarks.md, "Kubernetes client"): listing 10,000 nodes costs the same CPU either
way (parsing the JSON dominates), a watch event about half as much through urllib3 (httpx pays its per-chunk
machinery once per event, and the API server flushes one chunk per event), and the process is ~20 MiB smaller
without httpx. Six verbs by REST path need none of the package's models, whose deserialisation would cost more than
the transport itself.

Every failure surfaces as a typed ``KubeError`` (``gpuquota.kube.errors``): HTTP errors with their status and the
API server's message, transport failures (refused, reset, timed out, TLS) as ``TransportError`` (status 0).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Literal, cast
from urllib.parse import urlencode

import orjson

from gpuquota.kube.api import JsonObject, KubeError, ObjectList, WatchEvent
from gpuquota.kube.config import (
    SERVICE_ACCOUNT_DIR,
    Credentials,
    Endpoint,
    KubeConfigError,
    KubeSource,
    load_credentials,
)

__all__ = ["SERVICE_ACCOUNT_DIR", "KubeClient", "KubeConfigError"]

log = logging.getLogger(__name__)

_PATCH_CONTENT_TYPES: Final = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}
_WATCH_TYPES: Final = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK"})
_LIST_PAGE: Final = 500


def _status_message(status: int, reason: str, data: bytes) -> str:
    """The ``message`` of a Kubernetes ``Status`` body when there is one, else the start of the raw body."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    text = data.decode("utf-8", "replace").strip()
    return text[:300] if text else reason or str(status)


def _api_client(credentials: Credentials) -> Any:
    """An ``ApiClient`` for the credentials' configuration; its TLS files are checked now, not at the first call."""
    from kubernetes.client import ApiClient  # noqa: PLC0415 - a heavy import, done when a client is made

    endpoint = credentials.endpoint
    for path in (endpoint.ca_file, endpoint.cert_file, endpoint.key_file):
        if path is not None and endpoint.host.startswith("https://"):
            _check_pem(path, endpoint)
    if not endpoint.verify:  # asked for (insecure-skip-tls-verify): said once here, not on every request
        import urllib3  # noqa: PLC0415

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        log.warning("not verifying the certificate of %s (insecure-skip-tls-verify)", endpoint.host)
    return ApiClient(credentials.configuration)


def _check_pem(path: str, endpoint: Endpoint) -> None:
    import ssl  # noqa: PLC0415

    try:
        if path == endpoint.ca_file:
            ssl.create_default_context(cafile=path)
        elif endpoint.cert_file and endpoint.key_file and path == endpoint.cert_file:
            ssl.create_default_context().load_cert_chain(endpoint.cert_file, endpoint.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise KubeConfigError(f"cannot load the TLS file {path} for {endpoint.host}: {exc}") from None


class KubeClient:
    """``KubeApi`` over HTTP(S). Thread-safe: urllib3's pool manager shares connections across threads."""

    def __init__(self, credentials: Credentials, *, timeout_s: float = 30.0) -> None:
        self.credentials = credentials
        self._timeout = timeout_s
        self._lock = threading.Lock()
        self._endpoint = credentials.endpoint
        self._api = _api_client(credentials)

    @property
    def api_server(self) -> str:
        return self._endpoint.host

    # -- construction -------------------------------------------------------------------------------------

    @classmethod
    def from_source(cls, source: KubeSource, **kwargs: Any) -> KubeClient:
        return cls(load_credentials(source, **kwargs))

    @classmethod
    def in_cluster(cls, sa_dir: Path = SERVICE_ACCOUNT_DIR, environ: dict[str, str] | None = None) -> KubeClient:
        """The pod's own service account: ``KUBERNETES_SERVICE_HOST``/``_PORT``, its token and CA."""
        env = dict(os.environ if environ is None else environ)
        if not env.get("KUBERNETES_SERVICE_HOST"):
            raise KubeConfigError(
                "not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST is unset); "
                "pass --kubeconfig FILE or --api-server URL to reach an API server from outside"
            )
        env.pop("KUBECONFIG", None)
        return cls.from_source(KubeSource(), environ=env, sa_dir=sa_dir)

    @classmethod
    def connect(
        cls,
        api_server: str | None = None,
        token_file: Path | None = None,
        ca_file: Path | None = None,
        insecure: bool = False,
        *,
        kubeconfig: Path | None = None,
        context: str | None = None,
    ) -> KubeClient:
        """What the commands call: explicit flags when given, else ``$KUBECONFIG``, the pod, ``~/.kube/config``."""
        return cls.from_source(KubeSource(kubeconfig, context, api_server, token_file, ca_file, insecure))

    def close(self) -> None:
        self._api.close()

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------------------

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Content-Type": content_type} if content_type else {}
        token = self.credentials.authorization()
        if token:
            headers["Authorization"] = token
        return headers

    def _renewed(self) -> bool:
        """After a 401: renew the credential; a new ``ApiClient`` when its TLS material or proxy changed (an exec
        plugin may hand out client certificates). ``True`` when the request is worth one more try."""
        if not self.credentials.renew_after_401():
            return False
        endpoint = self.credentials.endpoint
        with self._lock:
            if endpoint != self._endpoint:
                self._api, self._endpoint = _api_client(self.credentials), endpoint  # the old one ends with its streams
        return True

    def _send(self, method: str, path: str, *, params: dict[str, str] | None = None, body: Any = None,
              content_type: str | None = None, read_timeout_s: float | None = None) -> Any:
        """The response (urllib3's, body not read yet). One retry after a 401 that renewed the credential."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415
        from urllib3.exceptions import HTTPError  # noqa: PLC0415

        url = f"{self._endpoint.host}{path}" + (f"?{urlencode(params)}" if params else "")
        timeout = (self._timeout, read_timeout_s if read_timeout_s is not None else self._timeout)
        for attempt in (1, 2):
            headers = {"Accept": "application/json", "User-Agent": "gpuquota"}
            if content_type:
                headers["Content-Type"] = content_type
            token = self.credentials.authorization()
            if token:
                headers["Authorization"] = token
            try:
                response = self._api.call_api(method, url, header_params=headers, body=body, _request_timeout=timeout)
            except (HTTPError, ApiException, OSError) as exc:
                raise KubeError(0, f"{method} {path}: {type(exc).__name__}: {exc}") from None
            raw = response.response
            if raw.status == 401 and attempt == 1 and self._renewed():
                raw.drain_conn()
                raw.release_conn()
                continue
            return raw
        raise AssertionError("unreachable")  # pragma: no cover

    def _body(self, method: str, path: str, **kwargs: Any) -> tuple[int, str, bytes]:
        from urllib3.exceptions import HTTPError  # noqa: PLC0415

        raw = self._send(method, path, **kwargs)
        try:
            return raw.status, raw.reason or "", raw.data
        except HTTPError as exc:
            raise KubeError(0, f"{method} {path}: {type(exc).__name__}: {exc}") from None
        finally:
            raw.release_conn()

    @staticmethod
    def _json(status: int, data: bytes, what: str) -> JsonObject:
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise KubeError(status, f"{what}: the API server sent a body that is not JSON") from None
        if not isinstance(body, dict):
            raise KubeError(status, f"{what}: expected a JSON object")
        return body

    @staticmethod
    def _raise_for(status: int, reason: str, data: bytes, what: str) -> None:
        if status >= 400:
            raise KubeError(status, f"{what}: {_status_message(status, reason, data)}")

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> JsonObject:
        status, reason, data = self._body(method, path, **kwargs)
        self._raise_for(status, reason, data, what)
        return self._json(status, data, what)

    # -- KubeApi ------------------------------------------------------------------------------------------

    def get(self, path: str) -> JsonObject | None:
        status, reason, data = self._body("GET", path)
        if status == 404:
            return None
        self._raise_for(status, reason, data, f"GET {path}")
        return self._json(status, data, f"GET {path}")

    def list(self, path: str, label_selector: str | None = None) -> ObjectList:
        """All items, following ``continue`` tokens page by page; the resource version is the last page's."""
        items: list[JsonObject] = []
        params: dict[str, str] = {"limit": str(_LIST_PAGE)}
        if label_selector:
            params["labelSelector"] = label_selector
        while True:
            body = self._call("GET", path, f"LIST {path}", params=params)
            page = body.get("items") or []
            if not isinstance(page, list):
                raise KubeError(200, f"LIST {path}: 'items' is not a list")
            items.extend(page)
            metadata = body.get("metadata") or {}
            token = metadata.get("continue")
            if not token:
                return ObjectList(items, str(metadata.get("resourceVersion", "")))
            params["continue"] = str(token)

    def watch(self, path: str, resource_version: str, timeout_s: float = 300.0) -> Iterator[WatchEvent]:
        """Streams one JSON event per line. The server ends the stream at ``timeoutSeconds``; the read timeout
        allows a margin beyond it so a quiet watch is not mistaken for a dead connection."""
        from urllib3.exceptions import HTTPError  # noqa: PLC0415

        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(max(1, int(timeout_s))),
            "allowWatchBookmarks": "true",
        }
        raw = self._send("GET", path, params=params, read_timeout_s=timeout_s + 30.0)
        try:
            if raw.status >= 400:
                self._raise_for(raw.status, raw.reason, raw.data, f"WATCH {path}")
            pending = b""
            for chunk in raw.stream(None, decode_content=True):
                pending += chunk
                if b"\n" not in pending:
                    continue
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield self._watch_event(line, path)
            if pending.strip():
                yield self._watch_event(pending, path)
        except (HTTPError, OSError) as exc:
            raise KubeError(0, f"WATCH {path}: {type(exc).__name__}: {exc}") from None
        finally:
            raw.release_conn()

    @staticmethod
    def _watch_event(line: bytes, path: str) -> WatchEvent:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise KubeError(0, f"WATCH {path}: a line of the stream is not JSON: {line[:120]!r}") from None
        kind = event.get("type") if isinstance(event, dict) else None
        obj = event.get("object") if isinstance(event, dict) else None
        if kind == "ERROR":
            # The server reports an expired resourceVersion in-stream as a Status with code 410.
            status = obj if isinstance(obj, dict) else {}
            code = status.get("code")
            raise KubeError(int(code) if isinstance(code, int) else 500, f"WATCH {path}: {status.get('message', '')}")
        if kind not in _WATCH_TYPES or not isinstance(obj, dict):
            raise KubeError(0, f"WATCH {path}: unexpected event {line[:120]!r}")
        return WatchEvent(cast(Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"], kind), obj)

    def patch(self, path: str, body: JsonObject, patch_type: str = "merge") -> JsonObject:
        content_type = _PATCH_CONTENT_TYPES.get(patch_type)
        if content_type is None:
            raise KubeError(415, f"unknown patch type {patch_type!r}; use one of {sorted(_PATCH_CONTENT_TYPES)}")
        payload: Any = body["ops"] if patch_type == "json" else body
        return self._call("PATCH", path, f"PATCH {path}", body=payload, content_type=content_type)

    def create(self, path: str, body: JsonObject) -> JsonObject:
        return self._call("POST", path, f"POST {path}", body=body, content_type="application/json")

    def replace(self, path: str, body: JsonObject) -> JsonObject:
        return self._call("PUT", path, f"PUT {path}", body=body, content_type="application/json")

    def delete(self, path: str) -> None:
        status, reason, data = self._body("DELETE", path, params={"propagationPolicy": "Background"})
        if status != 404:
            self._raise_for(status, reason, data, f"DELETE {path}")
