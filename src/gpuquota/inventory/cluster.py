"""The webhook's cached view of the cluster's GPU nodes, kept current by a list+watch on ``/api/v1/nodes``.

Each node is read from the agent's annotation when present (exact: per device, MIG-aware), else from the
agent's labels, else from GPU Feature Discovery's ``nvidia.com/gpu.product``/``gpu.count``, else from the GPUs its
allocatable resources show (``inventory.allocatable``: the model from cloud or provisioner labels, or unknown). A
model the catalog does not know is never counted as nothing: workloads that may land on it count at the agent's NVML
estimate, or at the policy's unknown-part figure when there is none (``stands_for``).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gpuquota.catalog import Catalog, estimate_entry, load_catalog
from gpuquota.domain import GpuClass
from gpuquota.inventory.allocatable import (
    MODEL_LABEL_KEYS,
    allocatable_gpus,
    fingerprint_part,
    labelled_model,
    strongest_of,
)
from gpuquota.inventory.model import DeviceInfo, InventoryFormatError, NodeInventory
from gpuquota.inventory.node_keys import (
    ANNOTATION_INVENTORY,
    GFD_COUNT,
    GFD_PRODUCT,
    LABEL_COUNT,
    LABEL_MODEL,
    UNKNOWN_MODEL,
)
from gpuquota.inventory.rating import MAX_MIG_SLICES, has_estimate
from gpuquota.kube.api import KubeApi, WatchEvent
from gpuquota.kube.health import WatchHealth
from gpuquota.kube.reflector import Backoff, Reflector
from gpuquota.workloads.gpu_names import GpuResources, default_gpu_resources

log = logging.getLogger(__name__)

_MIG_SUFFIX = re.compile(r"-MIG-(\d+)g\.\d+gb", re.IGNORECASE)

NODES_PATH = "/api/v1/nodes"


@dataclass(frozen=True, slots=True)
class CapacityRow:
    """One line of cluster capacity: what ``gpuquota_cluster_capacity_tpp``/``gpuquota_cluster_gpus`` export."""

    model: str  # catalog key, or "unknown"
    gpu_class: str  # GpuClass value
    gpus: int
    tpp: float


@dataclass(frozen=True, slots=True)
class GpuGroup:
    """Identical GPUs on one node."""

    model: str  # catalog key or "unknown"
    gpu_class: GpuClass
    count: int
    tpp_each: float
    resolves_to: str  # what a workload landing here is counted at: a catalog key, an estimate entry or a name


@dataclass(frozen=True, slots=True)
class NodeGpus:
    name: str
    source: str  # "agent" (annotation), "agent-labels", "gfd", "allocatable" (device plugin only)
    groups: tuple[GpuGroup, ...]

    @property
    def unlabelled(self) -> bool:
        """GPUs shown only by the device plugin, with no label naming their model: counted as the strongest."""
        return self.source == "allocatable" and any(g.model == UNKNOWN_MODEL for g in self.groups)

    @property
    def tpp(self) -> float:
        return sum(g.tpp_each * g.count for g in self.groups)


def stands_for(device: DeviceInfo, catalog: Catalog) -> str:
    """What a workload that may land on ``device`` is counted at: its catalog key; for a part the catalog lacks,
    the agent's NVML estimate (an ``estimate_entry``) or, without one, its name (the policy's unknown-part
    figure then applies) — never a catalog part, since the strongest is no bound on a newer one."""
    known = catalog.get(device.catalog_key) if device.catalog_key else None
    if known is not None:
        return known.key
    if has_estimate(device):
        return estimate_entry(device.name, device.tpp)
    return device.name or UNKNOWN_MODEL


def _count(value: Any) -> int | None:
    try:
        count = int(str(value))
    except (TypeError, ValueError):
        return None
    return count if count >= 0 else None


def _from_annotation(name: str, text: str, catalog: Catalog) -> NodeGpus:
    inventory = NodeInventory.from_json(text)
    groups: dict[tuple[str, GpuClass, float, str], int] = {}
    for device in inventory.devices:
        if device.identified:
            key = (device.catalog_key or UNKNOWN_MODEL, device.gpu_class, device.tpp, stands_for(device, catalog))
            groups[key] = groups.get(key, 0) + 1
    result = [
        GpuGroup(model, gpu_class, count, tpp, resolves_to)
        for (model, gpu_class, tpp, resolves_to), count in sorted(groups.items())
    ]
    return NodeGpus(name, "agent", tuple(result))


def physical_gpus(product: str, count: int) -> int:
    """GFD's ``gpu.count`` counts MIG devices under the single MIG strategy (product ``…-MIG-3g.40gb``): the
    physical GPUs are estimated as the count over the instances of that profile one GPU holds (7 // slices)."""
    found = _MIG_SUFFIX.search(product)
    if found is None:
        return count
    per_gpu = max(1, MAX_MIG_SLICES // int(found.group(1)))
    return -(-count // per_gpu)


def _from_product(name: str, source: str, product: str, count: int, catalog: Catalog) -> NodeGpus:
    count = physical_gpus(product, count)
    if count == 0:
        return NodeGpus(name, source, ())
    spec = catalog.get(product) if product != UNKNOWN_MODEL else None
    if spec is None:  # capacity shows the strongest catalog part; workloads count the policy's unknown figure
        strongest = catalog.strongest
        group = GpuGroup(UNKNOWN_MODEL, strongest.gpu_class, count, strongest.tpp, product)
    else:
        group = GpuGroup(spec.key, spec.gpu_class, count, spec.tpp, spec.key)
    return NodeGpus(name, source, (group,))


_SOURCE_LABELS = tuple(dict.fromkeys((LABEL_MODEL, LABEL_COUNT, GFD_PRODUCT, GFD_COUNT, *MODEL_LABEL_KEYS)))


def gpu_fingerprint(node: dict[str, Any]) -> tuple[Any, ...]:
    """Everything ``node_gpus`` looks at: equal fingerprints read the same (kubelet status updates change none)."""
    metadata = node.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotation = (metadata.get("annotations") or {}).get(ANNOTATION_INVENTORY)
    return (annotation if isinstance(annotation, str) else None, *(labels.get(k) for k in _SOURCE_LABELS),
            fingerprint_part(node))


def _from_allocatable(name: str, labels: dict[str, Any], per_vendor: dict[str, int], catalog: Catalog) -> NodeGpus:
    groups = []
    for vendor, count in sorted(per_vendor.items()):
        spec = labelled_model(labels, vendor, catalog)
        if spec is None:  # capacity shows the vendor's strongest part; workloads count the policy's unknown figure
            strongest = strongest_of(catalog, vendor)
            groups.append(GpuGroup(UNKNOWN_MODEL, strongest.gpu_class, count, strongest.tpp, UNKNOWN_MODEL))
        else:
            groups.append(GpuGroup(spec.key, spec.gpu_class, count, spec.tpp, spec.key))
    return NodeGpus(name, "allocatable", tuple(groups))


def node_gpus(node: dict[str, Any], catalog: Catalog, table: GpuResources | None = None) -> NodeGpus | None:
    """A Node object's GPUs, or ``None`` when nothing on it says it has any."""
    metadata = node.get("metadata") or {}
    name = str(metadata.get("name", ""))
    labels = metadata.get("labels") or {}
    annotation = (metadata.get("annotations") or {}).get(ANNOTATION_INVENTORY)
    if isinstance(annotation, str):
        try:
            gpus = _from_annotation(name, annotation, catalog)
        except InventoryFormatError as exc:
            log.warning("node %s: ignoring a malformed %s annotation: %s", name, ANNOTATION_INVENTORY, exc)
        else:
            return gpus if gpus.groups else None
    for model_key, count_key, source in ((LABEL_MODEL, LABEL_COUNT, "agent-labels"), (GFD_PRODUCT, GFD_COUNT, "gfd")):
        count = _count(labels.get(count_key))
        if isinstance(labels.get(model_key), str) and count:
            return _from_product(name, source, labels[model_key], count, catalog)
    per_vendor = allocatable_gpus(node, table or default_gpu_resources())
    if per_vendor:
        return _from_allocatable(name, labels, per_vendor, catalog)
    return None


class ClusterInventory:
    """Thread-safe: the watch thread writes, request handlers read snapshots computed once per change."""

    def __init__(self, catalog: Catalog | None = None, table: GpuResources | None = None) -> None:
        self._catalog = catalog or load_catalog()
        self._table = table or default_gpu_resources()  # which allocatable resources are GPUs
        self._unlabelled = 0
        self._lock = threading.Lock()
        self._nodes: dict[str, NodeGpus] = {}
        self._fingerprints: dict[str, tuple[Any, ...]] = {}  # of every node seen, GPUs or not
        self._models: tuple[str, ...] = ()
        self._capacity: list[CapacityRow] = []
        self.synced = threading.Event()  # set once the first full list has been applied

    def _recompute(self) -> None:
        models = {g.resolves_to for n in self._nodes.values() for g in n.groups}
        self._models = tuple(sorted(models))
        rows: dict[tuple[str, str], tuple[int, float]] = {}
        for node in self._nodes.values():
            for group in node.groups:
                key = (group.model, group.gpu_class.value)
                gpus, tpp = rows.get(key, (0, 0.0))
                rows[key] = (gpus + group.count, tpp + group.count * group.tpp_each)
        self._capacity = [CapacityRow(m, c, g, round(t, 1)) for (m, c), (g, t) in sorted(rows.items())]
        unlabelled = sorted(n.name for n in self._nodes.values() if n.unlabelled)
        if len(unlabelled) > self._unlabelled:
            log.warning("%d node(s) show GPUs with no label naming their model (workloads that may land there "
                        "count at the policy's unknown-part figure): %s", len(unlabelled), ", ".join(unlabelled[:10]))
        self._unlabelled = len(unlabelled)

    def apply_node(self, node: dict[str, Any]) -> None:
        """Add, update or (when it no longer shows GPUs) drop a node from a Node object."""
        name = str((node.get("metadata") or {}).get("name", ""))
        if not name:
            return
        fingerprint = gpu_fingerprint(node)
        with self._lock:
            if self._fingerprints.get(name) == fingerprint:
                return  # nothing GPU-related changed: skip parsing the annotation again
        gpus = node_gpus(node, self._catalog, self._table)
        with self._lock:
            self._fingerprints[name] = fingerprint
            if gpus is None:
                if self._nodes.pop(name, None) is None:
                    return
            elif self._nodes.get(name) == gpus:
                return
            else:
                self._nodes[name] = gpus
            self._recompute()

    def remove_node(self, name: str) -> None:
        with self._lock:
            self._fingerprints.pop(name, None)
            if self._nodes.pop(name, None) is not None:
                self._recompute()

    def replace_all(self, nodes: Iterable[dict[str, Any]]) -> None:
        """A full list: nodes absent from it are dropped (deletions missed while the watch was down)."""
        parsed: dict[str, NodeGpus] = {}
        fingerprints: dict[str, tuple[Any, ...]] = {}
        for node in nodes:
            name = str((node.get("metadata") or {}).get("name", ""))
            if not name:
                continue
            fingerprints[name] = gpu_fingerprint(node)
            gpus = node_gpus(node, self._catalog, self._table)
            if gpus is not None:
                parsed[name] = gpus
        with self._lock:
            self._nodes, self._fingerprints = parsed, fingerprints
            self._recompute()
        self.synced.set()

    def models(self) -> tuple[str, ...]:
        """Catalog keys of the GPUs in the cluster (an uncatalogued GPU appears as the model it is counted at)."""
        with self._lock:
            return self._models

    def capacity(self) -> list[CapacityRow]:
        with self._lock:
            return list(self._capacity)

    def unlabelled_nodes(self) -> int:
        """Nodes whose GPUs show only in their allocatable resources, with no label naming the model."""
        with self._lock:
            return self._unlabelled

    def node(self, name: str) -> NodeGpus | None:
        with self._lock:
            return self._nodes.get(name)

    def node_names(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(self._nodes))


class _NodeStore:
    """``ClusterInventory`` as a reflector's ``Store``."""

    def __init__(self, inventory: ClusterInventory) -> None:
        self.inventory = inventory

    def replace(self, items: list[dict[str, Any]]) -> None:
        self.inventory.replace_all(items)

    def apply(self, event: WatchEvent) -> None:
        if event.type == "DELETED":
            self.inventory.remove_node(str((event.object.get("metadata") or {}).get("name", "")))
        elif event.type in ("ADDED", "MODIFIED"):
            self.inventory.apply_node(event.object)


def run_node_watch(
    kube: KubeApi,
    inventory: ClusterInventory,
    stop: threading.Event,
    *,
    resync_s: float = 600.0,
    watch_timeout_s: float = 300.0,
    max_backoff_s: float = 30.0,
    idle_wait_s: float = 1.0,
    health: WatchHealth | None = None,
) -> None:
    """Follow ``/api/v1/nodes`` into ``inventory`` until ``stop`` (``gpuquota.kube.reflector``: list, watch, list
    again on 410 Gone and every ``resync_s``, back off with jitter after errors)."""
    Reflector(kube, NODES_PATH, _NodeStore(inventory), name="nodes", health=health, resync_s=resync_s,
              watch_timeout_s=watch_timeout_s, idle_wait_s=idle_wait_s,
              backoff=Backoff(min(0.5, max_backoff_s), max_backoff_s)).run(stop)
