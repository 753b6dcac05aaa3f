"""What extraction needs to know about the cluster and the policy, passed in so that extraction stays pure."""

from __future__ import annotations

from dataclasses import dataclass

from gpuquota.catalog import Catalog


@dataclass(frozen=True, slots=True)
class ExtractContext:
    """Inputs of model resolution besides the manifest itself.

    ``inventory_models`` holds catalog keys (any spelling the catalog knows) of GPU models present on the
    cluster's nodes; a workload with no model selector is counted at the most powerful of them.
    ``default_model`` is the policy's fallback when there is no inventory. ``shared_gpu_fraction`` is what one
    time-sliced/shared GPU (``nvidia.com/gpu.shared``) counts as; it must be in (0, 1] — never zero.
    ``unknown_model_tpp`` is what one GPU the catalog lacks counts as when no NVML estimate is at hand (the
    policy's ``unknownModelTpp``); never less than the strongest catalog part, and twice it when not given.

    The context is hashable (the catalog hashes by identity), so resolution results are cached per context.
    """

    catalog: Catalog
    inventory_models: tuple[str, ...] = ()
    default_model: str | None = None
    shared_gpu_fraction: float = 0.5
    unknown_model_tpp: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.inventory_models, tuple):  # a list would make the context unhashable
            object.__setattr__(self, "inventory_models", tuple(self.inventory_models))
        if not 0.0 < self.shared_gpu_fraction <= 1.0:
            raise ValueError(f"shared_gpu_fraction must be in (0, 1], got {self.shared_gpu_fraction!r}")
        if self.default_model is not None and self.catalog.get(self.default_model) is None:
            raise ValueError(f"default_model {self.default_model!r} is not in the GPU catalog")
        strongest = self.catalog.strongest.tpp
        given = self.unknown_model_tpp
        object.__setattr__(self, "unknown_model_tpp", max(strongest, given if given is not None else 2 * strongest))
