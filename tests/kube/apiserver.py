"""A tiny Kubernetes API server on 127.0.0.1 for testing the real HTTP client: it speaks the wire format of
get, paginated list, watch streams (including the in-stream 410 ERROR event), merge and JSON patches, create
(POST, 409 AlreadyExists) and replace (PUT, 409 Conflict on a stale resourceVersion), bearer tokens and ``Status``
error bodies, TokenReview / SubjectAccessReview (non-resource URLs) answered from ``ApiState.users`` and
``allowed``, and client certificates (over TLS, a verified certificate whose common name is in ``cert_users``
stands for a token). Objects are keyed by path, as in ``FakeKube``."""

from __future__ import annotations

import copy
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gpuquota.testing import merge_patch


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class ApiState:
    token: str = "t0ken"
    cert_users: set[str] = field(default_factory=set)  # common names of client certificates let in without a token
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Events served to watches: (resourceVersion, type, object). A watch from below ``oldest_version`` gets 410.
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    oldest_version: int = 0
    page_size: int | None = None  # paginate lists when set (ignores the client's limit)
    fail: dict[str, tuple[int, str]] = field(default_factory=dict)  # path → (status, raw body) to return
    requests: list[Recorded] = field(default_factory=list)
    version: int = 100
    lock: threading.Lock = field(default_factory=threading.Lock)  # create/replace check-and-write atomically
    # TokenReview: token → the user it authenticates ({"username": …, "uid": …, "groups": […]}).
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    # SubjectAccessReview: (username, verb, non-resource path) triples that are allowed (RBAC's nonResourceURLs).
    allowed: set[tuple[str, str, str]] = field(default_factory=set)

    def put(self, path: str, obj: dict[str, Any]) -> None:
        self.version += 1
        stored = copy.deepcopy(obj)
        stored.setdefault("metadata", {})["resourceVersion"] = str(self.version)
        kind = "MODIFIED" if path in self.objects else "ADDED"
        self.objects[path] = stored
        self.events.append((self.version, kind, copy.deepcopy(stored)))


def with_kube_system(state: ApiState, uid: str = "uid-of-kube-system") -> ApiState:
    """``state`` holding the kube-system namespace a webhook or reconciler identifies its cluster by."""
    state.put("/api/v1/namespaces/kube-system", {"kind": "Namespace", "metadata": {"name": "kube-system", "uid": uid}})
    return state


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _token_review(state: ApiState, body: dict[str, Any]) -> dict[str, Any]:
    user = state.users.get(str((body.get("spec") or {}).get("token") or ""))
    status: dict[str, Any] = {"authenticated": True, "user": user} if user else {"authenticated": False}
    return {**body, "status": status}


def _access_review(state: ApiState, body: dict[str, Any]) -> dict[str, Any]:
    spec = body.get("spec") or {}
    attributes = spec.get("nonResourceAttributes") or {}
    allowed = (spec.get("user"), attributes.get("verb"), attributes.get("path")) in state.allowed
    return {**body, "status": {"allowed": allowed}}


_REVIEWS = {
    "/apis/authentication.k8s.io/v1/tokenreviews": _token_review,
    "/apis/authorization.k8s.io/v1/subjectaccessreviews": _access_review,
}


def _handler(state: ApiState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # chunked watch streams and keep-alive, as a real API server

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, code: int, body: Any, raw: bytes | None = None) -> None:
            data = raw if raw is not None else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _begin(self, method: str) -> tuple[str, dict[str, str], Any] | None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            state.requests.append(Recorded(method, url.path, query, dict(self.headers.items()), body))
            if self.headers.get("Authorization") != f"Bearer {state.token}" and not self._cert_user():
                self._send(401, _status(401, "Unauthorized", "Unauthorized"))
                return None
            if url.path in state.fail:
                code, text = state.fail[url.path]
                self._send(code, None, raw=text.encode())
                return None
            return url.path, query, body

        def _cert_user(self) -> bool:
            getpeercert = getattr(self.connection, "getpeercert", None)
            cert = getpeercert() if getpeercert is not None else None
            names = [value for rdn in (cert or {}).get("subject", ()) for key, value in rdn if key == "commonName"]
            return any(name in state.cert_users for name in names)

        def _children(self, path: str) -> list[str]:
            prefix = path.rstrip("/") + "/"
            return sorted(p for p in state.objects if p.startswith(prefix) and "/" not in p[len(prefix) :])

        def do_GET(self) -> None:
            begun = self._begin("GET")
            if begun is None:
                return
            path, query, _ = begun
            if query.get("watch") in ("1", "true"):
                self._watch(path, int(query.get("resourceVersion") or 0))
            elif path in state.objects:
                self._send(200, state.objects[path])
            elif self._children(path) or path.endswith("s"):
                self._list(path, query)
            else:
                self._send(404, _status(404, "NotFound", f'nodes "{path.rsplit("/", 1)[-1]}" not found'))

        def _list(self, path: str, query: dict[str, str]) -> None:
            names = self._children(path)
            start = int(query.get("continue") or 0)
            size = state.page_size or len(names) or 1
            page = names[start : start + size]
            metadata: dict[str, Any] = {"resourceVersion": str(state.version)}
            if start + size < len(names):
                metadata["continue"] = str(start + size)
            self._send(
                200,
                {"kind": "List", "apiVersion": "v1", "metadata": metadata, "items": [state.objects[n] for n in page]},
            )

        def _watch(self, path: str, since: int) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

            def chunk(payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode() + b"\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            if since < state.oldest_version:
                chunk({"type": "ERROR", "object": _status(410, "Expired", f"too old resource version: {since}")})
            else:
                for version, kind, obj in list(state.events):
                    if version > since:
                        chunk({"type": kind, "object": obj})
                chunk(
                    {
                        "type": "BOOKMARK",
                        "object": {"kind": "Node", "metadata": {"resourceVersion": str(state.version)}},
                    }
                )
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def do_PATCH(self) -> None:
            begun = self._begin("PATCH")
            if begun is None:
                return
            path, _, body = begun
            obj = state.objects.get(path)
            if obj is None:
                self._send(404, _status(404, "NotFound", f"{path} not found"))
                return
            content_type = self.headers.get("Content-Type")
            if content_type == "application/merge-patch+json":
                merge_patch(obj, body)
            elif content_type == "application/json-patch+json":
                for op in body:
                    if op["op"] != "add" or not op["path"].startswith("/metadata/labels/"):
                        self._send(422, _status(422, "Invalid", f"unsupported op {op}"))
                        return
                    obj["metadata"].setdefault("labels", {})[op["path"].rsplit("/", 1)[-1]] = op["value"]
            else:
                self._send(
                    415,
                    _status(
                        415,
                        "UnsupportedMediaType",
                        f"the body of the request was in an unknown format - {content_type}",
                    ),
                )
                return
            state.put(path, obj)
            self._send(200, state.objects[path])

        def do_POST(self) -> None:
            begun = self._begin("POST")
            if begun is None:
                return
            path, _, body = begun
            if path in _REVIEWS:
                self._send(201, _REVIEWS[path](state, body or {}))
                return
            name = (body or {}).get("metadata", {}).get("name")
            if not name:
                self._send(422, _status(422, "Invalid", "metadata.name: Required value"))
                return
            target = f"{path.rstrip('/')}/{name}"
            with state.lock:
                if target in state.objects:
                    self._send(409, _status(409, "AlreadyExists", f'"{name}" already exists'))
                    return
                body["metadata"].pop("resourceVersion", None)
                state.put(target, body)
                self._send(201, state.objects[target])

        def do_PUT(self) -> None:
            begun = self._begin("PUT")
            if begun is None:
                return
            path, _, body = begun
            with state.lock:
                current = state.objects.get(path)
                if current is None:
                    self._send(404, _status(404, "NotFound", f"{path} not found"))
                    return
                expected = (body or {}).get("metadata", {}).get("resourceVersion")
                if expected and expected != current["metadata"]["resourceVersion"]:
                    message = "the object has been modified; please apply your changes to the latest version"
                    self._send(409, _status(409, "Conflict", f'Operation cannot be fulfilled on "{path}": {message}'))
                    return
                state.put(path, body)
                self._send(200, state.objects[path])

    return Handler


@contextmanager
def api_server(state: ApiState, tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """Serve ``state`` on an ephemeral 127.0.0.1 port (HTTPS with ``tls``); yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
