"""What GPUs the cluster has: NVML discovery on a node, the node agent that publishes it on the Node object,
and the webhook's cached view of all GPU nodes (``ClusterInventory``)."""

from gpuquota.inventory.cluster import CapacityRow, ClusterInventory, NodeGpus, run_node_watch
from gpuquota.inventory.discovery import NVML_UNAVAILABLE_EXIT, NvmlUnavailable, discover
from gpuquota.inventory.model import DeviceInfo, InventoryFormatError, MigInstance, NodeInventory
from gpuquota.inventory.node_keys import (
    ANNOTATION_INVENTORY,
    GFD_COUNT,
    GFD_PRODUCT,
    LABEL_CLASS,
    LABEL_COUNT,
    LABEL_MODEL,
    node_patch,
)

__all__ = [
    "ANNOTATION_INVENTORY",
    "GFD_COUNT",
    "GFD_PRODUCT",
    "LABEL_CLASS",
    "LABEL_COUNT",
    "LABEL_MODEL",
    "NVML_UNAVAILABLE_EXIT",
    "CapacityRow",
    "ClusterInventory",
    "DeviceInfo",
    "InventoryFormatError",
    "MigInstance",
    "NodeGpus",
    "NodeInventory",
    "NvmlUnavailable",
    "discover",
    "node_patch",
    "run_node_watch",
]
