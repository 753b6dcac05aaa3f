"""Typed Kubernetes API errors: callers catch ``GoneError`` or ``AccessDeniedError``, never compare status numbers.

``KubeError(status, message)`` stays the one constructor every client, fake and test uses: it returns the subclass
that the status names (``KubeError(410, …)`` is a ``GoneError``), so code written against the old single class keeps
working and code that raises never has to pick the class itself. ``reason`` is a short, fixed word per class for
metric labels and readiness bodies.
"""

from __future__ import annotations

from typing import Any, ClassVar


class KubeError(Exception):
    """An API call failed. ``status`` is the HTTP status (0 when the server could not be reached)."""

    reason: ClassVar[str] = "error"

    def __new__(cls, status: int = 0, message: str = "", *args: Any) -> KubeError:
        chosen = cls
        if cls is KubeError:
            chosen = _BY_STATUS.get(status) or (ServerError if status >= 500 else KubeError)
        return super().__new__(chosen)

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (KubeError, (self.status, self.message))

    @property
    def retriable(self) -> bool:
        """Conflicts, throttling, server errors and unreachable servers are worth a retry with backoff."""
        return self.status in (0, 409, 429) or self.status >= 500


class TransportError(KubeError):
    """The server could not be reached or the connection broke (refused, reset, timed out, TLS, bad stream)."""

    reason = "transport"


class AccessDeniedError(KubeError):
    """The credential was refused (401) or lacks the permission (403): no retry helps until an admin acts or the
    credential is renewed, so a cache reports it instead of only logging it."""

    reason = "denied"


class UnauthorizedError(AccessDeniedError):
    reason = "unauthorized"


class ForbiddenError(AccessDeniedError):
    reason = "forbidden"


class NotFoundError(KubeError):
    reason = "not_found"


class ConflictError(KubeError):
    """409: the object changed since the version sent, or one of that name already exists."""

    reason = "conflict"


class GoneError(KubeError):
    """410: the watch's resourceVersion is older than the server keeps; list again."""

    reason = "gone"


class TooManyRequestsError(KubeError):
    reason = "throttled"


class ServerError(KubeError):
    reason = "server_error"


_BY_STATUS: dict[int, type[KubeError]] = {
    0: TransportError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    429: TooManyRequestsError,
}
