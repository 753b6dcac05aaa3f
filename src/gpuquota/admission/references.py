"""The objects a workload's pods depend on (a TrainJob's training runtime), read by the webhook from the API server.

``workloads.references.ReferenceSource`` for the webhook: it must not guess, so an object it cannot read raises
``UnreadableError`` — saying whether it is missing (the tenant fixes the reference or creates the object), forbidden to
the webhook (an admin grants ``get``; the chart does) or the API server could not be reached (retry) — and the
workload is refused (fail closed). Reads run off the event loop (the judge defers such workloads to a thread).

Staleness accepted: an object read is reused for ``ttl_s`` (10 s by default) — runtimes change rarely, and a burst
of TrainJobs naming one runtime costs one read. An edit of the runtime within that window is not seen by judgements
in it; a runtime edited after its TrainJob was admitted is not re-judged here either (the pods the controller then
makes are what the reconciler and the pod backstop see). A missing object is never cached: a runtime created a
moment before its TrainJob is read afresh.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from gpuquota.boundedcache import BoundedCache, text_size
from gpuquota.errors import UserError
from gpuquota.kube import KubeApi, KubeError
from gpuquota.kube.errors import AccessDeniedError
from gpuquota.workloads.references import Reference, UnreadableError

log = logging.getLogger("gpuquota.admission")

DEFAULT_TTL_S = 10.0


def _size(path: str, entry: tuple[float, Mapping[str, Any]]) -> int:
    return text_size(path) + len(json.dumps(entry[1], separators=(",", ":"), default=str))


class ApiReferences:
    """Reads referenced objects by GET, reusing each for ``ttl_s``. ``kube`` None (``--kube none``): every read is
    ``UnreadableError``. Thread-safe."""

    def __init__(self, kube: KubeApi | None, *, ttl_s: float = DEFAULT_TTL_S, max_entries: int = 1_000,
                 max_bytes: int = 16 * 1024 * 1024, clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self._ttl = ttl_s
        self._clock = clock
        self.cache = BoundedCache[str, tuple[float, Mapping[str, Any]]](
            "references", max_entries=max_entries, max_bytes=max_bytes, size=_size)

    def referenced(self, ref: Reference) -> Mapping[str, Any]:
        resource = ref.resource
        rights = f"get on {resource.plural}.{resource.group}"
        if self.kube is None:
            raise UnreadableError(ref, "cannot be read: this webhook runs without cluster access (--kube none)",
                             f"ask your cluster admin to run the gpuquota webhook with cluster access and {rights}")
        now = self._clock()
        cached = self.cache.get(ref.path)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            obj = self.kube.get(ref.path)
        except AccessDeniedError as exc:
            log.error("cannot read %s: %s", ref, exc)
            raise UnreadableError(ref, f"cannot be read by the gpuquota webhook (denied: {exc})",
                             f"ask your cluster admin to grant the webhook's service account {rights} (the chart's "
                             "ClusterRole does), then apply again") from None
        except (KubeError, UserError) as exc:  # UserError: the client's credentials (token file) are unreadable
            log.error("cannot read %s: %s", ref, exc)
            raise UnreadableError(ref, f"could not be read from the API server ({exc})",
                             "retry in a moment; if it persists, ask your cluster admin to check the gpuquota "
                             "webhook's access to the API server") from None
        if obj is None:
            raise UnreadableError(ref, "does not exist",
                             f"create the {resource.kind} first, or name an existing one, then apply again",
                             missing=True)
        self.cache.put(ref.path, (now + self._ttl, obj))
        return obj
