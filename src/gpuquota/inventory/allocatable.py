"""GPUs a Node shows only in its allocatable resources: no agent annotation, no agent or GPU Feature Discovery
count — a node whose device plugin runs but whose model nobody labelled.

Such a node is never left out of the cluster view: its model comes from the cloud's or provisioner's labels when
they name one (``workloads.node_models``: GKE's accelerator, Karpenter's GPU name, the instance type), else it is
an unknown model — a selector-less pod that may land there counts at the policy's unknown-part figure, capacity
shows the vendor's strongest catalog part — and the view counts it, so that ``gpuquota_cluster_unlabelled_gpu_nodes``
can warn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from gpuquota.catalog import Catalog, GpuSpec
from gpuquota.inventory.rating import MAX_MIG_SLICES
from gpuquota.workloads.gpu_names import GpuResources, Share
from gpuquota.workloads.node_models import model_labels

_NOT_DEVICES = frozenset({Share.CORES, Share.MEMORY, Share.MEMORY_PERCENT, Share.DEVICE_CLASS})


def _units(value: Any) -> int:
    try:
        count = int(str(value))
    except (TypeError, ValueError):
        return 0
    return max(count, 0)


def allocatable_gpus(node: Mapping[str, Any], table: GpuResources) -> dict[str, int]:
    """Physical GPUs per vendor that the node's allocatable (else capacity) shows: whole units as they are, MIG
    slices as the GPUs that could hold them, partitions by their fraction (rounded up)."""
    status = node.get("status") or {}
    resources = (status.get("allocatable") or status.get("capacity") or {}) if isinstance(status, Mapping) else {}
    found: dict[str, int] = {}
    if not isinstance(resources, Mapping):
        return found
    for name, value in resources.items():
        row = table.get(name) if isinstance(name, str) else None
        if row is None or row.share in _NOT_DEVICES:
            continue
        units = _units(value)
        if not units:
            continue
        if row.share is Share.MIG:
            gpus = -(-units // MAX_MIG_SLICES)
        elif row.share is Share.PARTITION:
            gpus = math.ceil(units * row.fraction)
        else:
            gpus = units
        found[row.vendor] = found.get(row.vendor, 0) + gpus
    return found


def labelled_model(labels: Mapping[str, Any], vendor: str, catalog: Catalog) -> GpuSpec | None:
    """The model a node's labels name for its ``vendor`` GPUs (the first model label present decides; several
    models for one value: the strongest); ``None`` when no label names a catalog model of that vendor."""
    for row in model_labels():
        value = labels.get(row.label)
        if not isinstance(value, str):
            continue
        specs = [spec for model in row.models(value) if (spec := catalog.get(model)) is not None]
        fitting = [spec for spec in specs if spec.vendor == vendor]
        if fitting:
            return max(fitting, key=lambda spec: spec.tpp)
    return None


def strongest_of(catalog: Catalog, vendor: str) -> GpuSpec:
    """What an unidentified GPU of ``vendor`` counts as: the vendor's strongest catalog part."""
    return max((spec for spec in catalog if spec.vendor == vendor), key=lambda spec: spec.tpp,
               default=catalog.strongest)


def fingerprint_part(node: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """What this module reads of a node's status, as a cheap comparable value: its allocatable (else capacity)
    resources as they are (kubelet heartbeats change conditions, not these). The model labels it reads are in
    ``MODEL_LABEL_KEYS``."""
    status = node.get("status")
    if type(status) is not dict:
        return None
    resources = status.get("allocatable") or status.get("capacity")
    return tuple(resources.items()) if type(resources) is dict else None


MODEL_LABEL_KEYS = tuple(row.label for row in model_labels())
"""Node labels that name a model (``workloads.node_models``), read for a node that only allocates GPUs."""
