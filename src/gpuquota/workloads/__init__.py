"""Workload demand: one adapter per Kubernetes workload kind, turning a manifest into a ``Demand``.

Public API (the webhook, the ``check`` CLI and the Helm chart build on it — keep it stable):

- ``extract(obj, ctx) -> Demand | None`` — ``None`` when the object asks for no GPU;
- ``ReferenceSource``/``ManifestObjects``/``UnreadableError`` (objects a kind's pods depend on: a TrainJob's runtime),
  ``resolves(obj)`` — whether counting ``obj`` reads such objects;
- ``scale_delta(old, new) -> Demand | None`` — the growth of an UPDATE;
- ``requests_gpu(obj) -> bool`` — cheap pre-check, no catalog work;
- ``SUPPORTED_KINDS`` — (apiGroup, kind) pairs with an adapter;
- ``SCALE_SUBRESOURCES`` — (apiGroup, kind) → the field a ``/scale`` write sets; ``with_replicas``, ``scale_replicas``
  rebuild the parent a Scale request leaves behind;
- ``ExtractContext``, ``WorkloadError``, ``UnsupportedKind``;
- ``GpuResources`` (``gpu_resources``: the bundled table plus ``--gpu-resource``/``--gpu-device-class`` entries),
  ``ClaimSource``/``ManifestClaims`` (where DRA claims are read), ``DEFAULT_ALL_DEVICES``.
"""

from gpuquota.workloads.context import DEFAULT_ALL_DEVICES, ExtractContext
from gpuquota.workloads.delta import scale_delta
from gpuquota.workloads.dra import ClaimSource, ManifestClaims
from gpuquota.workloads.errors import UnsupportedKind, WorkloadError
from gpuquota.workloads.extract import extract, requests_gpu
from gpuquota.workloads.gpu_names import GpuNameError, GpuResources
from gpuquota.workloads.gpu_names import configured as gpu_resources
from gpuquota.workloads.references import ManifestObjects, ReferenceSource, UnreadableError
from gpuquota.workloads.registry import SUPPORTED_KINDS, resolves
from gpuquota.workloads.scale import SCALE_SUBRESOURCES, scale_replicas, with_replicas

__all__ = [
    "DEFAULT_ALL_DEVICES",
    "SCALE_SUBRESOURCES",
    "SUPPORTED_KINDS",
    "ClaimSource",
    "ExtractContext",
    "GpuNameError",
    "GpuResources",
    "ManifestClaims",
    "ManifestObjects",
    "ReferenceSource",
    "UnreadableError",
    "UnsupportedKind",
    "WorkloadError",
    "extract",
    "gpu_resources",
    "requests_gpu",
    "resolves",
    "scale_delta",
    "scale_replicas",
    "with_replicas",
]
