"""What extraction needs to know about the cluster and the policy, passed in so that extraction stays pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from gpuquota.catalog import UNKNOWN_MODEL_TPP, Catalog
from gpuquota.workloads.gpu_names import GpuResources, default_gpu_resources

DEFAULT_ALL_DEVICES = 8
"""What a DRA request with ``allocationMode: All``, or a claim that cannot be read, counts as: a full node of GPUs."""


@dataclass(frozen=True, slots=True)
class ExtractContext:
    """Inputs of model resolution besides the manifest itself.

    ``inventory_models`` holds catalog keys (any spelling the catalog knows) of GPU models present on the
    cluster's nodes; a workload with no model selector is counted at the most powerful of them.
    ``default_model`` is the policy's fallback when there is no inventory. ``shared_gpu_fraction`` is what one
    time-sliced/shared GPU (``nvidia.com/gpu.shared``) counts as; it must be in (0, 1] — never zero.
    ``unknown_model_tpp`` is what one GPU the catalog lacks counts as when no NVML estimate is at hand (the
    policy's ``unknownModelTpp``, by default ``UNKNOWN_MODEL_TPP``); never less than the strongest catalog part.

    ``resources`` says which resource names and DRA DeviceClasses are GPUs (``gpu_names``); ``all_devices`` is what
    a DRA request for all matching devices, or a device claim that cannot be read, counts as (GPUs per pod).

    The context is hashable (the catalog hashes by identity), so resolution results are cached per context.
    """

    catalog: Catalog
    inventory_models: tuple[str, ...] = ()
    default_model: str | None = None
    shared_gpu_fraction: float = 0.5
    unknown_model_tpp: float | None = None
    resources: GpuResources = field(default_factory=default_gpu_resources)
    all_devices: int = DEFAULT_ALL_DEVICES

    def __post_init__(self) -> None:
        if not isinstance(self.inventory_models, tuple):  # a list would make the context unhashable
            object.__setattr__(self, "inventory_models", tuple(self.inventory_models))
        if not 0.0 < self.shared_gpu_fraction <= 1.0:
            raise ValueError(f"shared_gpu_fraction must be in (0, 1], got {self.shared_gpu_fraction!r}")
        if not 1 <= self.all_devices <= 64:
            raise ValueError(f"all_devices must be between 1 and 64, got {self.all_devices!r}")
        if self.default_model is not None and self.catalog.get(self.default_model) is None:
            raise ValueError(f"default_model {self.default_model!r} is not in the GPU catalog")
        given = UNKNOWN_MODEL_TPP if self.unknown_model_tpp is None else self.unknown_model_tpp
        object.__setattr__(self, "unknown_model_tpp", max(self.catalog.strongest.tpp, given))
