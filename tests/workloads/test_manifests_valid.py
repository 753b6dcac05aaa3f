"""The manifest fixtures are real Kubernetes: built-in kinds and every pod template inside a custom resource
validate against the Kubernetes 1.30 OpenAPI schema (strict: unknown fields are errors)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from gpuquota.workloads.registry import ADAPTERS, api_group
from tests.workloads.conftest import MANIFESTS, manifest

BUILT_IN = {"v1", "batch/v1", "apps/v1"}
NAMES = sorted(p.stem for p in MANIFESTS.glob("*.yaml"))


def validate(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, "1.30", strict=True)


@pytest.mark.parametrize("name", NAMES)
def test_fixture_is_valid_kubernetes(name: str) -> None:
    obj = manifest(name)
    if obj["apiVersion"] in BUILT_IN:
        validate(obj)
    adapter = ADAPTERS.get((api_group(obj["apiVersion"]), obj["kind"]))
    if adapter is None:
        return
    for template in adapter(obj).templates:
        if template.resources is not None:
            continue  # TrainJob: the pod comes from the runtime, only placement overrides are in the object
        validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t"}, "spec": dict(template.spec)})


def test_validation_catches_a_misspelt_field() -> None:
    obj = manifest("pod-h100-single")
    obj["spec"]["containers"][0]["resourcez"] = obj["spec"]["containers"][0].pop("resources")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(obj)
