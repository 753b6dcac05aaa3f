"""What the reconciler's ``/healthz`` and ``/readyz`` answer (served by ``gpuquota.probe_http.ProbeServer``).

Liveness is a heartbeat, not "the HTTP thread answers": the probe server runs in its own thread and keeps
answering while the thread that does the work is wedged — a watch or a ledger call that never returns, a lock never
released. The loop that should be making progress beats once per turn: the reconcile loop while this replica leads
(every ``--interval``, plus the pass's own time), the campaign loop while it follows (every retry period). A dead
loop thread needs no probe — it is the process's main thread, so the process exits and the kubelet restarts it — but
a stuck one does: when no beat came for ``stuck_after_s`` (several intervals, well above the slowest honest pass),
``/healthz`` answers 503 and the kubelet restarts the container. The Lease then moves to a follower.

Readiness is "can use the ledger" and, while leading, "can follow the API": a replica that cannot reach the ledger
could not settle anything if it led, and a leader whose watches are refused (a credential or an RBAC rule missing for
one resource) settles nothing of that resource — the body names the watch and the API server's words
(``gpuquota.kube.health``). A follower that is healthy but not leading is ready — it is the standby that must be
there when the leader goes. The ledger is pinged at most once per ``ping_every_s`` however often it is probed, so
probes never load the database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Final

# The floor of the automatic stuck threshold: a full relist of a busy namespace plus a slow ledger stays below it.
MIN_STUCK_AFTER_S: Final = 120.0
STUCK_AFTER_INTERVALS: Final = 4


def stuck_after_default(interval_s: float) -> float:
    """The default heartbeat age past which the loop counts as stuck: several passes' worth, never under 2 min."""
    return max(MIN_STUCK_AFTER_S, STUCK_AFTER_INTERVALS * interval_s)


class Heartbeat:
    """Monotonic time of the work loop's last turn; ``beat`` is called from that loop and nowhere else."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._at = monotonic()  # a process that has just started is alive

    def beat(self) -> None:
        self._at = self._monotonic()

    def age(self) -> float:
        return self._monotonic() - self._at


class ReconcilerHealth:
    """``liveness`` and ``readiness`` as ``(passes, JSON body)`` pairs for the probe server."""

    def __init__(
        self,
        heartbeat: Heartbeat,
        ping: Callable[[], None],
        *,
        stuck_after_s: float,
        ping_every_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        kube_problems: Callable[[], dict[str, str]] = dict,
    ) -> None:
        if stuck_after_s <= 0:
            raise ValueError("stuck_after_s must be positive")
        self.heartbeat = heartbeat
        self.stuck_after_s = stuck_after_s
        self.leader = False
        self._ping = ping
        self._kube_problems = kube_problems
        self._ping_every_s = ping_every_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._pinged_at = float("-inf")
        self._ledger_error: str | None = None

    def set_leader(self, leader: bool) -> None:
        self.leader = leader

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        age = self.heartbeat.age()
        alive = age <= self.stuck_after_s
        body = {
            "status": "ok" if alive else "stuck",
            "leader": self.leader,
            "loop_heartbeat_age_s": round(age, 1),
            "stuck_after_s": self.stuck_after_s,
        }
        return alive, body

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        error = self._ledger_state()
        watches = self._kube_problems()
        status = "ok" if error is None else "ledger unreachable"
        if watches:
            status = "watch failing" if error is None else f"{status}, watch failing"
        body: dict[str, Any] = {"status": status, "leader": self.leader, "ledger_error": error}
        if watches:
            body["watch_errors"] = watches
        return error is None and not watches, body

    def _ledger_state(self) -> str | None:
        """The last ping's error (``None``: reachable), pinging again when the last one is old. Concurrent probes
        wait for the one ping in flight instead of starting their own."""
        with self._lock:
            now = self._monotonic()
            if now - self._pinged_at >= self._ping_every_s:
                try:
                    self._ping()
                    self._ledger_error = None
                except Exception as exc:  # any failure to use the ledger means "not ready"
                    self._ledger_error = f"{type(exc).__name__}: {exc}"
                self._pinged_at = self._monotonic()
            return self._ledger_error
