"""The real Kubernetes client behind ``KubeApi``: plain HTTPS calls to the API server with httpx.

No kubernetes SDK: gpuquota needs six verbs by REST path, and a small client keeps the image lean and the
error mapping in one place. Credentials come from the pod's service account (in a cluster) or, for
development, from ``--api-server URL --token-file F`` (no kubeconfig parsing). The token file is re-read when
it changes, because projected service-account tokens rotate (about hourly) under a long-running process.
"""

from __future__ import annotations

import json
import os
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Literal, cast

import httpx

from gpuquota.errors import UserError
from gpuquota.kube.api import JsonObject, KubeError, ObjectList, WatchEvent

SERVICE_ACCOUNT_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_PATCH_CONTENT_TYPES: Final = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}
_WATCH_TYPES: Final = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK"})
_LIST_PAGE: Final = 500


class KubeConfigError(UserError):
    """No usable credentials (not in a cluster, unreadable token or CA): the message says which and where."""


def _status_message(response: httpx.Response) -> str:
    """The ``message`` of a Kubernetes ``Status`` body when there is one, else the start of the raw body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    text = response.text.strip()
    return text[:300] if text else response.reason_phrase


class _TokenSource:
    """A bearer token read from a file, re-read when the file's mtime changes (projected tokens rotate)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._token = ""
        self.current()  # fail at start-up, not at the first call

    def current(self) -> str:
        try:
            mtime = self._path.stat().st_mtime
            with self._lock:
                if mtime != self._mtime:
                    self._token = self._path.read_text(encoding="utf-8").strip()
                    self._mtime = mtime
                return self._token
        except OSError as exc:
            raise KubeConfigError(f"cannot read the API token {self._path}: {exc.strerror or exc}") from None


class KubeClient:
    """``KubeApi`` over HTTP(S). Thread-safe: httpx's client pools connections across threads.

    Every failure surfaces as ``KubeError``: HTTP errors with their status and the API server's message,
    transport failures (refused, reset, timed out, TLS) with status 0 so callers retry them.
    """

    def __init__(
        self,
        api_server: str,
        *,
        token: str | None = None,
        token_file: Path | None = None,
        ca_file: Path | None = None,
        insecure: bool = False,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_server = api_server.rstrip("/")
        self._static_token = token
        self._token_source = _TokenSource(token_file) if token_file is not None else None
        self._timeout = timeout_s
        verify: ssl.SSLContext | bool
        if insecure:
            verify = False
        elif ca_file is not None:
            try:
                verify = ssl.create_default_context(cafile=str(ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise KubeConfigError(f"cannot load the API server CA {ca_file}: {exc}") from None
        else:
            verify = True
        self._http = httpx.Client(
            base_url=self.api_server,
            verify=verify,
            timeout=httpx.Timeout(timeout_s),
            headers={"Accept": "application/json", "User-Agent": "gpuquota"},
            transport=transport,
        )

    # -- construction -------------------------------------------------------------------------------------

    @classmethod
    def in_cluster(cls, sa_dir: Path = SERVICE_ACCOUNT_DIR, environ: dict[str, str] | None = None) -> KubeClient:
        """The pod's own service account: ``KUBERNETES_SERVICE_HOST``/``_PORT``, its token and CA."""
        env = os.environ if environ is None else environ
        host = env.get("KUBERNETES_SERVICE_HOST")
        port = env.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise KubeConfigError(
                "not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST is unset); "
                "pass --api-server URL --token-file FILE to reach an API server from outside"
            )
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # IPv6 service address
        ca = sa_dir / "ca.crt"
        return cls(f"https://{host}:{port}", token_file=sa_dir / "token", ca_file=ca if ca.exists() else None)

    @classmethod
    def connect(
        cls,
        api_server: str | None = None,
        token_file: Path | None = None,
        ca_file: Path | None = None,
        insecure: bool = False,
    ) -> KubeClient:
        """What the commands call: explicit ``--api-server``/``--token-file`` when given, else in-cluster."""
        if api_server is None:
            if token_file is not None:
                raise KubeConfigError("--token-file needs --api-server")
            return cls.in_cluster()
        if not api_server.startswith(("http://", "https://")):
            raise KubeConfigError(f"--api-server must be an http(s) URL, not {api_server!r}")
        return cls(api_server, token_file=token_file, ca_file=ca_file, insecure=insecure)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------------------

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        token = self._token_source.current() if self._token_source is not None else self._static_token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> httpx.Response:
        content = json.dumps(body).encode() if body is not None else None
        headers = self._headers({"Content-Type": content_type} if content_type else None)
        try:
            return self._http.request(method, path, params=params, content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise KubeError(0, f"{method} {path}: {type(exc).__name__}: {exc}") from None

    @staticmethod
    def _json(response: httpx.Response, what: str) -> JsonObject:
        try:
            body = response.json()
        except ValueError:
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
        response = self._request("GET", path)
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
            response = self._request("GET", path, params=params)
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
        try:
            with self._http.stream("GET", path, params=params, headers=self._headers(), timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise_for(response, f"WATCH {path}")
                for line in response.iter_lines():
                    if line.strip():
                        yield self._watch_event(line, path)
        except httpx.HTTPError as exc:
            raise KubeError(0, f"WATCH {path}: {type(exc).__name__}: {exc}") from None

    @staticmethod
    def _watch_event(line: str, path: str) -> WatchEvent:
        try:
            event = json.loads(line)
        except ValueError:
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
        response = self._request("PATCH", path, body=payload, content_type=content_type)
        self._raise_for(response, f"PATCH {path}")
        return self._json(response, f"PATCH {path}")

    def create(self, path: str, body: JsonObject) -> JsonObject:
        response = self._request("POST", path, body=body, content_type="application/json")
        self._raise_for(response, f"POST {path}")
        return self._json(response, f"POST {path}")

    def replace(self, path: str, body: JsonObject) -> JsonObject:
        response = self._request("PUT", path, body=body, content_type="application/json")
        self._raise_for(response, f"PUT {path}")
        return self._json(response, f"PUT {path}")
