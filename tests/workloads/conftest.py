"""Fixtures for the workload tests: the bundled catalog, extraction contexts, and the manifest fixtures."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpuquota.catalog import Catalog, GpuSpec, load_catalog
from gpuquota.workloads import ExtractContext

MANIFESTS = Path(__file__).parent / "manifests"


def manifest(name: str) -> dict[str, Any]:
    """A fresh copy of ``tests/workloads/manifests/<name>.yaml`` (tests may mutate it)."""
    document = yaml.safe_load((MANIFESTS / f"{name}.yaml").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return copy.deepcopy(document)


def spec(key: str) -> GpuSpec:
    found = load_catalog().get(key)
    assert found is not None, key
    return found


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def ctx(catalog: Catalog) -> ExtractContext:
    """A cluster holding H100 SXM, A100 80GB and L4 nodes (what most tests run against)."""
    return ExtractContext(catalog, inventory_models=("H100-SXM5-80GB", "A100-SXM4-80GB", "L4"))


@pytest.fixture(scope="session")
def bare_ctx(catalog: Catalog) -> ExtractContext:
    """No inventory and no policy default: the strongest catalog GPU is the last resort."""
    return ExtractContext(catalog)
