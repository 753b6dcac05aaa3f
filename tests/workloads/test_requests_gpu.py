"""requests_gpu: the cheap pre-check that decides whether an object deserves extraction."""

from __future__ import annotations

import pytest

from gpuquota.workloads import ExtractContext, extract, requests_gpu
from tests.workloads.conftest import MANIFESTS, manifest

ALL = sorted(p.stem for p in MANIFESTS.glob("*.yaml"))


@pytest.mark.parametrize("name", ALL)
def test_agrees_with_extraction(ctx: ExtractContext, name: str) -> None:
    obj = manifest(name)
    if obj["kind"] == "Deployment":
        assert requests_gpu(obj)  # unsupported kinds that ask for GPUs are still flagged
        return
    assert requests_gpu(obj) == (extract(obj, ctx) is not None)


def test_labels_and_selectors_naming_gpus_are_not_requests() -> None:
    obj = manifest("pod-cpu-only")
    obj["metadata"]["labels"] = {"nvidia.com/gpu": "1"}
    obj["spec"]["nodeSelector"] = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu": "8"}
    assert not requests_gpu(obj)


def test_zero_gpus_are_not_a_request() -> None:
    obj = manifest("pod-h100-single")
    obj["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "0"
    assert not requests_gpu(obj)


def test_malformed_values_count_as_requests() -> None:
    obj = manifest("pod-h100-single")
    obj["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "lots"
    assert requests_gpu(obj)


def test_mig_shared_and_other_vendors_are_requests() -> None:
    for name in ("nvidia.com/mig-1g.10gb", "nvidia.com/gpu.shared", "amd.com/gpu", "habana.ai/gaudi"):
        obj = manifest("pod-cpu-only")
        obj["spec"]["containers"][0]["resources"]["limits"][name] = 1
        assert requests_gpu(obj), name


def test_trainjob_resources_per_node_are_seen() -> None:
    obj = manifest("trainjob-torch-distributed")
    assert requests_gpu(obj)
    del obj["spec"]["trainer"]["resourcesPerNode"]
    assert not requests_gpu(obj)
