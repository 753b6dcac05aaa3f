"""The one list-and-watch loop every cache of gpuquota follows the API server with (namespaces and nodes in the
webhook, the reconciler's workloads and pods), as client-go's reflector does it:

- list (every page), hand the items to the store, and remember the list's resourceVersion;
- watch from that version (with bookmarks, so a quiet watch still moves the version on) and apply each event;
- when the server ends a watch, watch again from the last version seen; list again after ``resync_s``;
- 410 Gone (the version is older than the server keeps): list again at once;
- any other failure (API server down, credential refused, permission missing): report it to ``WatchHealth``, wait
  with exponential backoff and jitter (replicas do not retry in step), then watch again from the last version
  — or list, if nothing was listed yet. The loop never dies of an exception; it ends only when ``stop`` is set.

``run`` is that loop for a thread of its own; ``poll`` is one bounded step of it for a caller that drives its own
loop (the reconciler brings all its caches up to date once per pass).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from gpuquota.kube.api import JsonObject, KubeApi, WatchEvent
from gpuquota.kube.errors import GoneError, KubeError, NotFoundError
from gpuquota.kube.health import WatchHealth

log = logging.getLogger(__name__)


class Store(Protocol):
    """What a reflector fills: the full list, then one event at a time (``BOOKMARK`` events never reach it)."""

    def replace(self, items: list[JsonObject]) -> None: ...

    def apply(self, event: WatchEvent) -> None: ...


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with jitter: the n-th wait is uniform in [c/2, c] for c = base·2ⁿ, capped — never less
    than half (no hammering), never in step with another replica."""

    initial_s: float = 0.5
    max_s: float = 30.0
    random: Callable[[], float] = field(default=random.random)
    _next: float = 0.0

    def __post_init__(self) -> None:
        self._next = self.initial_s

    def next(self) -> float:
        ceiling = self._next
        self._next = min(self._next * 2, self.max_s)
        return ceiling * (0.5 + 0.5 * self.random())

    def reset(self) -> None:
        self._next = self.initial_s


def _version(event: WatchEvent, current: str) -> str:
    return str((event.object.get("metadata") or {}).get("resourceVersion") or current)


class Reflector:
    """Keeps ``store`` equal to the collection at ``path``. ``current`` tells whether the store may be trusted now:
    it holds a full list and the last list or watch succeeded."""

    def __init__(
        self,
        kube: KubeApi,
        path: str,
        store: Store,
        *,
        name: str,
        label: str | None = None,
        health: WatchHealth | None = None,
        label_selector: str | None = None,
        resync_s: float = 600.0,
        watch_timeout_s: float = 300.0,
        idle_wait_s: float = 1.0,
        backoff: Backoff | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.path = path
        self.store = store
        self.name = name
        self.label = label or name
        self.health = health
        self.label_selector = label_selector
        self.resync_s = resync_s
        self.watch_timeout_s = watch_timeout_s
        self.idle_wait_s = idle_wait_s
        self.backoff = backoff or Backoff()
        self.monotonic = monotonic
        self.resource_version = ""
        self.listed = False
        self.healthy = False
        self.listed_at = float("-inf")
        self.relists = 0
        self.events = 0
        self.last_error: BaseException | None = None

    @property
    def current(self) -> bool:
        return self.listed and self.healthy

    # -- the steps ------------------------------------------------------------------------------------------

    def relist(self) -> None:
        listed = self.kube.list(self.path, self.label_selector) if self.label_selector else self.kube.list(self.path)
        self.store.replace(listed.items)
        self.resource_version = listed.resource_version
        self.listed, self.listed_at = True, self.monotonic()
        self.relists += 1
        self._succeeded()

    def follow(self, timeout_s: float, stop: threading.Event | None = None) -> int:
        """One watch from the last version until the server ends it (``timeout_s``) or ``stop``; the number of
        events (bookmarks included) it carried."""
        seen = 0
        for event in self.kube.watch(self.path, self.resource_version, timeout_s=timeout_s):
            seen += 1
            self.resource_version = _version(event, self.resource_version)
            if event.type != "BOOKMARK":
                self.events += 1
                self.store.apply(event)
            if not self.healthy:
                self._succeeded()
            if stop is not None and stop.is_set():
                break
        self._succeeded()
        return seen

    def _succeeded(self) -> None:
        if not self.healthy or self.last_error is not None:
            if self.last_error is not None:
                log.info("%s: list-and-watch recovered", self.name)
            self.healthy, self.last_error = True, None
            self.backoff.reset()
        if self.health is not None:
            self.health.ok(self.name, self.label)

    def retarget(self, path: str) -> None:
        """Follow another collection (the same kind served at another version): list it afresh."""
        if path != self.path:
            self.path, self.listed, self.healthy = path, False, False

    def failed(self, exc: BaseException) -> None:
        """Record a failure of this watch found outside its own calls (the caller's discovery of the path)."""
        self.healthy, self.last_error = False, exc
        if self.health is not None:
            self.health.failed(self.name, exc, self.label)

    def _due(self) -> bool:
        return not self.listed or self.monotonic() - self.listed_at >= self.resync_s

    def poll(self, timeout_s: float | None = None, stop: threading.Event | None = None) -> bool:
        """One step: list when due (first time, after 410 Gone, every ``resync_s``), else one watch of at most
        ``timeout_s``. Failures are reported, logged and swallowed; returns whether the step succeeded."""
        try:
            if self._due():
                self.relist()
                return True
            try:
                self.follow(self.watch_timeout_s if timeout_s is None else timeout_s, stop)
            except GoneError:
                log.info("%s: watch expired (410 Gone); listing again", self.name)
                self.relist()
            return True
        except Exception as exc:  # a cache must survive anything the API (or a store) throws at it
            self.failed(exc)
            if isinstance(exc, NotFoundError):  # a CRD not installed (yet): the caller decides what that means
                log.debug("%s: %s", self.name, exc)
            elif isinstance(exc, KubeError):
                log.warning("%s: list-and-watch of %s failed: %s", self.name, self.path, exc)
            else:
                log.exception("%s: list-and-watch of %s failed", self.name, self.path)
            return False

    # -- the loop -------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """List and watch until ``stop``; after a failure wait the backoff, then go on from where it was."""
        while not stop.is_set():
            started = self.monotonic()
            relists, events = self.relists, self.events
            if not self.poll(stop=stop):
                stop.wait(self.backoff.next())
            elif (self.relists, self.events) == (relists, events) and self.monotonic() - started < self.idle_wait_s:
                stop.wait(self.idle_wait_s)  # a server that ends watches at once must not make us spin
