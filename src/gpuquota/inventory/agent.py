"""The node agent: read NVML, publish the inventory on the agent's own Node, export metrics and health.

NVML is read every ``poll_s`` seconds (cheap, local) so a MIG reconfiguration or a lost GPU is published
within one poll; the Node is patched when the inventory changed and at least every ``interval_s`` seconds
otherwise (re-asserting labels someone removed). API failures back off exponentially, up to ``max_backoff_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from gpuquota.inventory.agent_metrics import AgentMetrics
from gpuquota.inventory.discovery import NvmlUnavailable
from gpuquota.inventory.model import NodeInventory
from gpuquota.inventory.node_keys import node_patch
from gpuquota.kube import ForbiddenError, KubeApi, KubeError
from gpuquota.probe_http import ProbeServer

log = logging.getLogger(__name__)

INITIAL_BACKOFF_S = 1.0


class NodeAgent:
    def __init__(
        self,
        kube: KubeApi,
        node: str,
        discover: Callable[[], NodeInventory],
        metrics: AgentMetrics | None = None,
        *,
        interval_s: float = 60.0,
        poll_s: float = 10.0,
        max_backoff_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.node = node
        self.path = f"/api/v1/nodes/{node}"
        self.metrics = metrics or AgentMetrics(node)
        self.interval_s = interval_s
        self.poll_s = poll_s
        self.max_backoff_s = max_backoff_s
        self._discover = discover
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self.inventory: NodeInventory | None = None  # the last good discovery
        self.nvml_error: str | None = None  # why the last discovery failed, if it did
        self.kube_failure: KubeError | None = None  # why the last publish failed, if it did
        self._published: NodeInventory | None = None
        self._published_at: float | None = None
        self._retry_at: float | None = None
        self._backoff = INITIAL_BACKOFF_S

    # -- one step -----------------------------------------------------------------------------------------

    def discover_once(self) -> NodeInventory | None:
        try:
            inventory = self._discover()
        except NvmlUnavailable as exc:
            self.metrics.error("nvml")
            if self.nvml_error != str(exc):
                log.error("%s", exc)
            with self._lock:
                self.nvml_error = str(exc)
            return None
        failures = sum(d.error is not None for d in inventory.devices) + sum(
            m.error is not None for d in inventory.devices for m in d.mig
        )
        if failures:
            self.metrics.error("nvml", failures)
            for device in inventory.devices:
                if device.error and (self.inventory is None or device not in self.inventory.devices):
                    log.warning("GPU %d: %s", device.index, device.error)
        self.metrics.observe(inventory)
        with self._lock:
            self.inventory = inventory
            self.nvml_error = None
        return inventory

    def publish_due(self, inventory: NodeInventory) -> bool:
        now = self._clock()
        if self._retry_at is not None:
            return now >= self._retry_at
        if self._published is None or self._published_at is None:
            return True
        if self._published != inventory:
            if self._published.mig_layout() != inventory.mig_layout():
                log.info("MIG layout changed on node %s: publishing now", self.node)
            return True
        return now - self._published_at >= self.interval_s

    def publish(self, inventory: NodeInventory) -> bool:
        """Merge-patch the agent's own labels and annotation onto the Node; on failure schedule a retry."""
        try:
            self.kube.patch(self.path, node_patch(inventory))
        except KubeError as exc:
            self.metrics.error("kube")
            delay = self._backoff
            self._retry_at = self._clock() + delay
            self._backoff = min(self._backoff * 2, self.max_backoff_s)
            denied = isinstance(exc, ForbiddenError)
            hint = " (the agent's ServiceAccount needs RBAC to get and patch nodes)" if denied else ""
            log.warning(
                "publishing the inventory to node %s failed: %s%s; retrying in %.0fs", self.node, exc, hint, delay
            )
            with self._lock:
                self.kube_failure = exc
            return False
        self._published, self._published_at = inventory, self._clock()
        self._retry_at, self._backoff = None, INITIAL_BACKOFF_S
        self.metrics.published(self._wall_clock())
        with self._lock:
            self.kube_failure = None
        log.info("published %d GPU(s), %.0f TPP to node %s", inventory.gpu_count, inventory.total_tpp, self.node)
        return True

    def tick(self) -> bool | None:
        """Discover, then publish if due. True/False: a publish succeeded/failed; None: nothing was published."""
        inventory = self.discover_once()
        if inventory is None or not self.publish_due(inventory):
            return None
        return self.publish(inventory)

    @property
    def kube_error(self) -> str | None:
        failure = self.kube_failure
        return None if failure is None else str(failure)

    @property
    def retry_in(self) -> float | None:
        """Seconds until a failed publish is retried; ``None`` when none is pending."""
        return None if self._retry_at is None else max(0.0, self._retry_at - self._clock())

    def next_wait(self) -> float:
        retry = self.retry_in
        return self.poll_s if retry is None else min(self.poll_s, retry)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.tick()
            stop.wait(self.next_wait())

    # -- health -------------------------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy while NVML answers: an API-server outage is reported but is no reason to restart the pod."""
        with self._lock:
            inventory, nvml_error, kube_failure = self.inventory, self.nvml_error, self.kube_failure
        published_age = None if self._published_at is None else round(self._clock() - self._published_at, 1)
        body: dict[str, Any] = {
            "node": self.node,
            "gpus": None if inventory is None else inventory.gpu_count,
            "total_tpp": None if inventory is None else round(inventory.total_tpp, 1),
            "last_publish_age_s": published_age,
            "nvml_error": nvml_error,
            "kube_error": None if kube_failure is None else str(kube_failure),
        }
        healthy = inventory is not None and nvml_error is None
        body["status"] = "ok" if healthy else ("starting" if inventory is None and nvml_error is None else "failing")
        return healthy, body


class AgentServer(ProbeServer):
    """``/metrics`` and ``/healthz`` (``NodeAgent.health``) on the shared probe server."""

    def __init__(self, agent: NodeAgent, host: str, port: int) -> None:
        self.agent = agent
        super().__init__(agent.metrics.registry, {"/healthz": agent.health}, host, port, name="agent")
