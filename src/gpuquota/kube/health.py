"""How the list-and-watch loops are doing, for ``/readyz`` and for Prometheus, so that a cache which cannot follow
the API server is seen rather than silently going stale.

Each watch reports every outcome here (``ok`` / ``failed``). A refused credential or a missing permission
(``AccessDeniedError``) counts against readiness at once — no retry fixes it until an admin or the credential does,
and the readiness body names the watch and the server's words. A 404 (a CRD not installed) never does: that
is the cluster's shape, not a fault. Anything else (the API server restarting, a network
blip) counts only once it has lasted ``grace_s``: the loop is retrying with backoff and usually recovers first.
Metrics: ``gpuquota_kube_watch_up{watch}`` (0 while failing) and ``gpuquota_kube_watch_failures_total{watch, reason}``,
``watch`` being a resource (``namespaces``, ``nodes``, ``jobs.batch``), never a namespace: the series stay few.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gpuquota.kube.errors import AccessDeniedError, KubeError, NotFoundError

DEFAULT_GRACE_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class Failure:
    reason: str  # KubeError.reason, or "error" for anything else
    message: str
    since: float  # monotonic time the watch started failing
    denied: bool


def describe(exc: BaseException) -> tuple[str, str]:
    """(reason, message) for metrics and readiness: a ``KubeError``'s own, else the exception's type."""
    if isinstance(exc, KubeError):
        return exc.reason, str(exc)
    return "error", f"{type(exc).__name__}: {exc}"


class WatchHealth:
    """The state of every watch by name (``name`` may carry a namespace; ``label`` is what metrics show)."""

    def __init__(self, grace_s: float = DEFAULT_GRACE_S, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.grace_s = grace_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._labels: dict[str, str] = {}
        self._failing: dict[str, Failure] = {}
        self._failures: Counter[tuple[str, str]] = Counter()

    def ok(self, name: str, label: str | None = None) -> None:
        with self._lock:
            self._labels[name] = label or name
            self._failing.pop(name, None)

    def failed(self, name: str, exc: BaseException, label: str | None = None) -> None:
        reason, message = describe(exc)
        with self._lock:
            self._labels[name] = label = label or name
            previous = self._failing.get(name)
            since = previous.since if previous is not None else self._monotonic()
            self._failing[name] = Failure(reason, message, since, isinstance(exc, AccessDeniedError))
            self._failures[(label, reason)] += 1

    def forget(self, name: str) -> None:
        """A watch that is no longer wanted (the reconciler stopped following a namespace)."""
        with self._lock:
            self._labels.pop(name, None)
            self._failing.pop(name, None)

    def failing(self) -> dict[str, Failure]:
        with self._lock:
            return dict(self._failing)

    def problems(self) -> dict[str, str]:
        """Watch name → why it counts against readiness: denied now, or failing for longer than the grace."""
        now = self._monotonic()
        return {
            name: f"{f.reason}: {f.message}"
            for name, f in sorted(self.failing().items())
            if f.denied or (f.reason != NotFoundError.reason and now - f.since >= self.grace_s)
        }

    def collector(self) -> Collector:
        return _WatchCollector(self)

    def _samples(self) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
        with self._lock:
            up = dict.fromkeys(self._labels.values(), 1)
            for name in self._failing:
                up[self._labels[name]] = 0
            return up, dict(self._failures)


class _WatchCollector(Collector):
    def __init__(self, health: WatchHealth) -> None:
        self._health = health

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        up, failures = self._health._samples()
        gauge = GaugeMetricFamily("gpuquota_kube_watch_up",
                                  "1 while every list-and-watch of this resource succeeds, 0 while one is failing",
                                  labels=["watch"])
        for label, value in sorted(up.items()):
            gauge.add_metric([label], value)
        counter = CounterMetricFamily("gpuquota_kube_watch_failures",
                                      "Failed lists and watches of the Kubernetes API, by resource and reason",
                                      labels=["watch", "reason"])
        for (label, reason), count in sorted(failures.items()):
            counter.add_metric([label, reason], count)
        yield gauge
        yield counter

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())
