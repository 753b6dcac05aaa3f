"""The node agent's Prometheus metrics, named exactly as the node-agent section of ``docs/metrics.md``.

Per-device series are replaced wholesale on every discovery, so a GPU that disappears (or a MIG profile that is
reconfigured away) stops being exported instead of lingering at its last value.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, disable_created_metrics

from gpuquota.inventory.model import NodeInventory
from gpuquota.inventory.node_keys import UNKNOWN_MODEL
from gpuquota.labelled_registry import cluster_registry

ERROR_TYPES = ("nvml", "kube")


class AgentMetrics:
    """One registry per agent (tests run several in one process)."""

    def __init__(self, node: str, cluster: str | None = None) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series are unused
        self.node = node
        self.registry = cluster_registry(cluster, auto_describe=True)  # cluster: --cluster-name, when given
        r = self.registry
        self.gpu_tpp = Gauge(
            "gpuquota_node_gpu_tpp",
            "TPP of one device",
            ["node", "index", "uuid", "model", "class", "estimated"],
            registry=r,
        )
        self.gpu_memory = Gauge(
            "gpuquota_node_gpu_memory_bytes", "Device memory", ["node", "index", "model"], registry=r
        )
        self.mig_slices = Gauge(
            "gpuquota_node_mig_slices", "MIG instances per profile", ["node", "index", "profile"], registry=r
        )
        self.tpp_total = Gauge("gpuquota_node_tpp_total", "TPP of the whole node", ["node"], registry=r)
        self.last_publish = Gauge(
            "gpuquota_agent_last_publish_timestamp_seconds",
            "When the node's inventory was last written to its Node object",
            ["node"],
            registry=r,
        )
        self.errors = Counter("gpuquota_agent_errors", "Discovery and publishing errors", ["type"], registry=r)
        for error_type in ERROR_TYPES:
            self.errors.labels(error_type)  # exported at 0 so rate() and increase() work from the start

    def observe(self, inventory: NodeInventory) -> None:
        for gauge in (self.gpu_tpp, self.gpu_memory, self.mig_slices):
            gauge.clear()
        node = self.node
        for device in inventory.devices:
            model = device.catalog_key or UNKNOWN_MODEL
            index = str(device.index)
            self.gpu_tpp.labels(
                node, index, device.uuid or "", model, device.gpu_class.value, "true" if device.estimated else "false"
            ).set(device.tpp)
            if device.memory_bytes is not None:
                self.gpu_memory.labels(node, index, model).set(device.memory_bytes)
            for profile, count in device.mig_profiles.items():
                self.mig_slices.labels(node, index, profile).set(count)
        self.tpp_total.labels(node).set(inventory.total_tpp)

    def published(self, timestamp: float) -> None:
        self.last_publish.labels(self.node).set(timestamp)

    def error(self, error_type: str, count: int = 1) -> None:
        self.errors.labels(error_type).inc(count)
