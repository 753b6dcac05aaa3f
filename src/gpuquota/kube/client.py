"""The real Kubernetes client behind ``KubeApi``: a lean HTTP transport (httpx, orjson) fed by the configuration the
official ``kubernetes`` package loads (``gpuquota.kube.config``).

Why not the package's ``ApiClient`` for the calls themselves: measured in bench/bench_kube_client.py (figures in
docs/benchmarks.md, "Kubernetes client"), the same list of 10,000 nodes and the same watch streams cost less time and
memory on this transport, and six verbs by REST path need none of the package's generated models. What the package
is good at — finding and renewing credentials — it still does.

Every failure surfaces as a typed ``KubeError`` (``gpuquota.kube.errors``): HTTP errors with their status and the
API server's message, transport failures (refused, reset, timed out, TLS) as ``TransportError`` (status 0).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Literal, cast

import httpx
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

_PATCH_CONTENT_TYPES: Final = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}
_WATCH_TYPES: Final = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK"})
_LIST_PAGE: Final = 500


def _status_message(response: httpx.Response) -> str:
    """The ``message`` of a Kubernetes ``Status`` body when there is one, else the start of the raw body."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    text = response.text.strip()
    return text[:300] if text else response.reason_phrase


def _verify(endpoint: Endpoint) -> ssl.SSLContext | bool:
    if not endpoint.host.startswith("https://"):
        return True
    try:
        context = ssl.create_default_context(cafile=endpoint.ca_file)
        if not endpoint.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if endpoint.cert_file and endpoint.key_file:
            context.load_cert_chain(endpoint.cert_file, endpoint.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise KubeConfigError(f"cannot load the TLS files of {endpoint.host} ({endpoint.ca_file}, "
                              f"{endpoint.cert_file}): {exc}") from None
    return context


class KubeClient:
    """``KubeApi`` over HTTP(S). Thread-safe: httpx's client pools connections across threads."""

    def __init__(self, credentials: Credentials, *, timeout_s: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.credentials = credentials
        self._timeout = timeout_s
        self._transport = transport
        self._lock = threading.Lock()
        self._endpoint = credentials.endpoint
        self._http = self._new_http(self._endpoint)

    @property
    def api_server(self) -> str:
        return self._endpoint.host

    def _new_http(self, endpoint: Endpoint) -> httpx.Client:
        return httpx.Client(
            base_url=endpoint.host,
            verify=_verify(endpoint),
            timeout=httpx.Timeout(self._timeout),
            headers={"Accept": "application/json", "User-Agent": "gpuquota"},
            proxy=endpoint.proxy,
            transport=self._transport,
            trust_env=False,  # the kubeconfig's proxy-url decides, as in kubectl; not HTTPS_PROXY meant for others
        )

    # -- construction -------------------------------------------------------------------------------------

    @classmethod
    def from_source(cls, source: KubeSource, **kwargs: Any) -> KubeClient:
        return cls(load_credentials(source, **kwargs))

    @classmethod
    def in_cluster(cls, sa_dir: Path = SERVICE_ACCOUNT_DIR, environ: dict[str, str] | None = None) -> KubeClient:
        """The pod's own service account: ``KUBERNETES_SERVICE_HOST``/``_PORT``, its token and CA."""
        import os  # noqa: PLC0415

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
        self._http.close()

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
        """After a 401: renew the credential; rebuild the transport when its TLS material or proxy changed (an
        exec plugin may hand out client certificates). ``True`` when the request is worth one more try."""
        if not self.credentials.renew_after_401():
            return False
        endpoint = self.credentials.endpoint
        with self._lock:
            if endpoint != self._endpoint:
                self._http, self._endpoint = self._new_http(endpoint), endpoint  # the old one ends with its streams
        return True

    def _send(self, method: str, path: str, *, params: dict[str, str] | None = None, body: Any = None,
              content_type: str | None = None, stream: bool = False,
              timeout: httpx.Timeout | None = None) -> httpx.Response:
        content = orjson.dumps(body) if body is not None else None
        extensions = {"sni_hostname": self._endpoint.tls_server_name} if self._endpoint.tls_server_name else None
        for attempt in (1, 2):
            http = self._http
            try:
                request = http.build_request(method, path, params=params, content=content,
                                             headers=self._headers(content_type), extensions=extensions,
                                             timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT)
                response = http.send(request, stream=stream)
            except httpx.HTTPError as exc:
                raise KubeError(0, f"{method} {path}: {type(exc).__name__}: {exc}") from None
            if response.status_code == 401 and attempt == 1 and self._renewed():
                response.close()
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _json(response: httpx.Response, what: str) -> JsonObject:
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise KubeError(response.status_code, f"{what}: the API server sent a body that is not JSON") from None
        if not isinstance(body, dict):
            raise KubeError(response.status_code, f"{what}: expected a JSON object")
        return body

    @staticmethod
    def _raise_for(response: httpx.Response, what: str) -> None:
        if response.status_code >= 400:
            raise KubeError(response.status_code, f"{what}: {_status_message(response)}")

    # -- KubeApi ------------------------------------------------------------------------------------------

    def get(self, path: str) -> JsonObject | None:
        response = self._send("GET", path)
        if response.status_code == 404:
            return None
        self._raise_for(response, f"GET {path}")
        return self._json(response, f"GET {path}")

    def list(self, path: str, label_selector: str | None = None) -> ObjectList:
        """All items, following ``continue`` tokens page by page; the resource version is the last page's."""
        items: list[JsonObject] = []
        params: dict[str, str] = {"limit": str(_LIST_PAGE)}
        if label_selector:
            params["labelSelector"] = label_selector
        while True:
            response = self._send("GET", path, params=params)
            self._raise_for(response, f"LIST {path}")
            body = self._json(response, f"LIST {path}")
            page = body.get("items") or []
            if not isinstance(page, list):
                raise KubeError(response.status_code, f"LIST {path}: 'items' is not a list")
            items.extend(page)
            metadata = body.get("metadata") or {}
            token = metadata.get("continue")
            if not token:
                return ObjectList(items, str(metadata.get("resourceVersion", "")))
            params["continue"] = str(token)

    def watch(self, path: str, resource_version: str, timeout_s: float = 300.0) -> Iterator[WatchEvent]:
        """Streams one JSON event per line. The server ends the stream at ``timeoutSeconds``; the read timeout
        allows a margin beyond it so a quiet watch is not mistaken for a dead connection."""
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(max(1, int(timeout_s))),
            "allowWatchBookmarks": "true",
        }
        timeout = httpx.Timeout(self._timeout, read=timeout_s + 30.0)
        response = self._send("GET", path, params=params, stream=True, timeout=timeout)
        try:
            if response.status_code >= 400:
                response.read()
                self._raise_for(response, f"WATCH {path}")
            pending = b""
            for chunk in response.iter_bytes():
                pending += chunk
                if b"\n" not in pending:
                    continue
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield self._watch_event(line, path)
            if pending.strip():
                yield self._watch_event(pending, path)
        except httpx.HTTPError as exc:
            raise KubeError(0, f"WATCH {path}: {type(exc).__name__}: {exc}") from None
        finally:
            response.close()

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
        response = self._send("PATCH", path, body=payload, content_type=content_type)
        self._raise_for(response, f"PATCH {path}")
        return self._json(response, f"PATCH {path}")

    def create(self, path: str, body: JsonObject) -> JsonObject:
        response = self._send("POST", path, body=body, content_type="application/json")
        self._raise_for(response, f"POST {path}")
        return self._json(response, f"POST {path}")

    def replace(self, path: str, body: JsonObject) -> JsonObject:
        response = self._send("PUT", path, body=body, content_type="application/json")
        self._raise_for(response, f"PUT {path}")
        return self._json(response, f"PUT {path}")
