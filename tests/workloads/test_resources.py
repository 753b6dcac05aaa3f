"""The effective pod request (init containers, sidecars, overhead) and the limits/requests rules for devices."""

from __future__ import annotations

from typing import Any

import pytest

from gpuquota.workloads import WorkloadError
from gpuquota.workloads.gpu_names import Unit, default_gpu_resources, units_of
from gpuquota.workloads.resources import container_gpus, pod_gpus

GPU = "nvidia.com/gpu"
WHOLE = Unit("whole", "nvidia")


def container(gpus: int, *, sidecar: bool = False) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "c", "resources": {"limits": {GPU: gpus, "cpu": "1"}}}
    if sidecar:
        c["restartPolicy"] = "Always"
    return c


def effective(spec: dict[str, Any]) -> int:
    return pod_gpus(spec, "spec").get(WHOLE, 0)


def test_app_containers_add_up() -> None:
    assert effective({"containers": [container(2), container(3)]}) == 5


def test_a_large_init_container_dominates() -> None:
    assert effective({"initContainers": [container(6)], "containers": [container(2)]}) == 6


def test_init_containers_run_one_at_a_time() -> None:
    assert effective({"initContainers": [container(3), container(4)], "containers": [container(1)]}) == 4


def test_sidecars_add_to_the_app_containers() -> None:
    assert effective({"initContainers": [container(1, sidecar=True)], "containers": [container(2)]}) == 3


def test_an_init_container_after_a_sidecar_runs_beside_it() -> None:
    spec = {"initContainers": [container(2, sidecar=True), container(3)], "containers": [container(1)]}
    assert effective(spec) == 5  # max(1 + 2, 2 + 3)


def test_an_init_container_before_a_sidecar_does_not_run_beside_it() -> None:
    spec = {"initContainers": [container(3), container(2, sidecar=True)], "containers": [container(0)]}
    assert effective(spec) == 3  # max(0 + 2, 3, 2)


def test_overhead_is_added() -> None:
    spec = {"containers": [container(1)], "overhead": {GPU: 1, "cpu": "250m"}}
    assert effective(spec) == 2


def test_resources_are_computed_per_name() -> None:
    spec = {
        "initContainers": [{"name": "i", "resources": {"limits": {"nvidia.com/mig-1g.10gb": 4}}}],
        "containers": [container(1)],
    }
    assert pod_gpus(spec, "spec") == {WHOLE: 1, Unit("mig", "nvidia", "1g.10gb"): 4}


def test_limits_imply_requests_and_equal_requests_are_fine() -> None:
    assert container_gpus({"limits": {GPU: "2"}}, "r") == {GPU: 2}
    assert container_gpus({"limits": {GPU: 2}, "requests": {GPU: "2"}}, "r") == {GPU: 2}


def test_zero_units_are_not_a_request() -> None:
    assert container_gpus({"limits": {GPU: 0}}, "r") == {}


def test_requests_without_limits_are_refused() -> None:
    with pytest.raises(WorkloadError, match=r"nvidia.com/gpu is requested \(2\) without a limit"):
        container_gpus({"requests": {GPU: 2}}, "spec.containers[0].resources")


def test_requests_differing_from_limits_are_refused() -> None:
    with pytest.raises(WorkloadError, match="request 1 differs from its limit 2") as info:
        container_gpus({"limits": {GPU: 2}, "requests": {GPU: 1}}, "spec.containers[0].resources")
    assert info.value.path == "spec.containers[0].resources"


@pytest.mark.parametrize(
    ("value", "units"), [(4, 4), ("4", 4), (4.0, 4), ("4.0", 4), ("0", 0), ("4000m", 4), ("1e1", 10), ("+2", 2)]
)
def test_quantity_forms(value: object, units: int) -> None:
    assert container_gpus({"limits": {GPU: value}}, "r").get(GPU, 0) == units


@pytest.mark.parametrize("value", ["\uff18", "\u00b2", "\u0663", "8 ", "0x8", "8Gi", "NaN", "inf", ""])
def test_non_ascii_and_odd_quantities_are_refused(value: str) -> None:
    with pytest.raises(WorkloadError):
        container_gpus({"limits": {GPU: value}}, "r")


def test_cpu_and_memory_are_ignored_even_if_odd() -> None:
    assert container_gpus({"limits": {"cpu": "1.5", "memory": "64Gi", "example.com/fpga": 1}}, "r") == {}


@pytest.mark.parametrize(
    ("name", "profile"),
    [("nvidia.com/mig-3g.40gb", "3g.40gb"), ("nvidia.com/mig-1g.10gb+me", "1g.10gb"), ("nvidia.com/gpu", None)],
)
def test_mig_profile_names(name: str, profile: str | None) -> None:
    (unit,) = units_of({name: 1}, default_gpu_resources(), "r")
    assert unit == (WHOLE if profile is None else Unit("mig", "nvidia", profile))
