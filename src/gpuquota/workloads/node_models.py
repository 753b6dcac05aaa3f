"""Which node labels name a GPU model, and the catalog models their values stand for (``node_models.yaml``).

GPU Feature Discovery's ``nvidia.com/gpu.product`` comes from the device itself and is read first. Clusters
without it still pin models with their cloud's or provisioner's labels (GKE's accelerator label, Karpenter's GPU
name, the instance type); a pod that selects ``cloud.google.com/gke-accelerator: nvidia-tesla-t4`` can only land on
T4s and is counted so. A value the table does not know stands for an unknown model, never for nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache
from importlib import resources
from typing import Any

import yaml


@dataclass(frozen=True, slots=True)
class ModelLabel:
    """One label; ``values``: (fnmatch pattern, catalog models), first match wins; ``catalog``: values are model
    names the catalog resolves itself."""

    label: str
    values: tuple[tuple[str, tuple[str, ...]], ...] = ()
    catalog: bool = False

    def models(self, value: str) -> tuple[str, ...]:
        """The catalog models a label value stands for; an unknown value gives ``label=value``, which no catalog
        name matches, so it is counted as an unknown model (with a warning naming it)."""
        if self.catalog:
            return (value,)
        for pattern, models in self.values:
            if fnmatchcase(value, pattern):
                return models
        return (f"{self.label}={value}",)


def parse_model_labels(document: Any, origin: str) -> tuple[ModelLabel, ...]:
    if not isinstance(document, dict) or not isinstance(document.get("labels"), list):
        raise ValueError(f"{origin}: expected a mapping with a 'labels' list")
    found = []
    for index, entry in enumerate(document["labels"]):
        where = f"{origin}: labels[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("label"), str):
            raise ValueError(f"{where}: expected a mapping with a label")
        values = entry.get("values") or {}
        if not isinstance(values, Mapping) or not all(
            isinstance(v, list) and v and all(isinstance(m, str) for m in v) for v in values.values()
        ):
            raise ValueError(f"{where}: values must map patterns to non-empty lists of models")
        pairs = tuple((str(pattern), tuple(models)) for pattern, models in values.items())
        found.append(ModelLabel(entry["label"], pairs, bool(entry.get("catalog", False))))
    return tuple(found)


@cache
def model_labels() -> tuple[ModelLabel, ...]:
    """The bundled table, in the order labels are consulted."""
    text = resources.files("gpuquota.workloads").joinpath("node_models.yaml").read_text(encoding="utf-8")
    return parse_model_labels(yaml.safe_load(text), "gpuquota/workloads/node_models.yaml")


@cache
def label_index() -> Mapping[str, tuple[int, ModelLabel]]:
    """Label key → (its rank, its row)."""
    return {row.label: (rank, row) for rank, row in enumerate(model_labels())}
