"""The labels and the annotation the node agent writes on its Node, and how they are read back.

These keys are an interface: the Helm chart selects GPU nodes by them, the webhook's cluster view reads them,
and operators query them (``kubectl get nodes -L gpuquota.io/gpu-model``). docs/agent.md lists them.
"""

from __future__ import annotations

import re
from typing import Any

from gpuquota.domain import GpuClass
from gpuquota.inventory.model import DeviceInfo, NodeInventory

LABEL_MODEL = "gpuquota.io/gpu-model"
"""Catalog key of the node's GPUs (the most powerful one if they differ); ``unknown`` for an uncatalogued part."""
LABEL_COUNT = "gpuquota.io/gpu-count"
"""Physical GPUs the agent could identify (a lost GPU is not counted)."""
LABEL_CLASS = "gpuquota.io/gpu-class"
"""Highest ECCN 3A090 class among the node's GPUs: ``3A090.a``, ``3A090.b`` or ``uncontrolled``."""
ANNOTATION_INVENTORY = "gpuquota.io/inventory"
"""The full inventory as compact JSON (schema 1): devices, MIG instances, TPP per device and in total."""

OWN_LABELS = (LABEL_MODEL, LABEL_COUNT, LABEL_CLASS)
OWN_ANNOTATIONS = (ANNOTATION_INVENTORY,)

GFD_PRODUCT = "nvidia.com/gpu.product"
GFD_COUNT = "nvidia.com/gpu.count"

UNKNOWN_MODEL = "unknown"

_CLASS_RANK = {GpuClass.UNCONTROLLED: 0, GpuClass.A090_B: 1, GpuClass.A090_A: 2}
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def label_value(text: str) -> str:
    """A Kubernetes-valid label value (≤ 63 characters of [A-Za-z0-9._-], alphanumeric at both ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63].strip("-_.")
    return cleaned if cleaned and _LABEL_VALUE.match(cleaned) else UNKNOWN_MODEL


def headline_device(inventory: NodeInventory) -> DeviceInfo | None:
    """The device that names the node: the most powerful identified one (never under-count a mixed node)."""
    identified = [d for d in inventory.devices if d.identified]
    return max(identified, key=lambda d: (d.tpp, not d.estimated)) if identified else None


def node_labels(inventory: NodeInventory) -> dict[str, str | None]:
    """The agent's labels; ``None`` removes a label (a node whose GPUs all vanished keeps no stale model)."""
    top = headline_device(inventory)
    if top is None:
        return {LABEL_MODEL: None, LABEL_CLASS: None, LABEL_COUNT: "0"}
    highest = max((d.gpu_class for d in inventory.devices if d.identified), key=_CLASS_RANK.__getitem__)
    return {
        LABEL_MODEL: label_value(top.catalog_key) if top.catalog_key else UNKNOWN_MODEL,
        LABEL_COUNT: str(inventory.gpu_count),
        LABEL_CLASS: label_value(highest.value),
    }


def node_patch(inventory: NodeInventory) -> dict[str, Any]:
    """A JSON merge patch that sets the agent's own keys and leaves every other label and annotation alone."""
    return {
        "metadata": {
            "labels": node_labels(inventory),
            "annotations": {ANNOTATION_INVENTORY: inventory.to_json()},
        }
    }


def published(node: dict[str, Any]) -> dict[str, str | None]:
    """The agent's keys as they stand on a Node object (to tell whether a publish would change anything)."""
    metadata = node.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    return {**{k: labels.get(k) for k in OWN_LABELS}, **{k: annotations.get(k) for k in OWN_ANNOTATIONS}}


def expected(inventory: NodeInventory) -> dict[str, str | None]:
    """What ``published`` returns once ``node_patch(inventory)`` is applied."""
    return {**node_labels(inventory), ANNOTATION_INVENTORY: inventory.to_json()}
