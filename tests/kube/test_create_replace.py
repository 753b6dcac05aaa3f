"""``create`` and ``replace`` with optimistic concurrency: the same contract from the in-memory ``FakeKube`` and from
the real client against the local API server, so code tested on the fake meets the same conflicts in a cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpuquota.kube import KubeApi, KubeClient, KubeError
from gpuquota.testing import FakeKube
from tests.kube.apiserver import ApiState, api_server

LEASES = "/apis/coordination.k8s.io/v1/namespaces/gpuquota/leases"


def _lease(name: str, holder: str) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "gpuquota"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15},
    }


@pytest.fixture(params=["fake", "client"])
def kube(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KubeApi]:
    if request.param == "fake":
        yield FakeKube()
        return
    state = ApiState()
    token = tmp_path / "token"
    token.write_text(state.token)
    with api_server(state) as url, KubeClient.connect(url, token_file=token) as client:
        yield client


def test_create_stores_the_object_with_a_version_and_refuses_a_duplicate(kube: KubeApi) -> None:
    created = kube.create(LEASES, _lease("reconciler", "pod-a"))
    assert created["spec"]["holderIdentity"] == "pod-a"
    assert created["metadata"]["resourceVersion"]
    assert kube.get(f"{LEASES}/reconciler") == created
    with pytest.raises(KubeError) as failed:
        kube.create(LEASES, _lease("reconciler", "pod-b"))
    assert failed.value.status == 409
    stored = kube.get(f"{LEASES}/reconciler")
    assert stored is not None
    assert stored["spec"]["holderIdentity"] == "pod-a"  # the loser changed nothing


def test_replace_with_the_current_version_succeeds_and_bumps_it(kube: KubeApi) -> None:
    created = kube.create(LEASES, _lease("reconciler", "pod-a"))
    created["spec"]["holderIdentity"] = "pod-b"
    replaced = kube.replace(f"{LEASES}/reconciler", created)
    assert replaced["spec"]["holderIdentity"] == "pod-b"
    assert replaced["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]


def test_replace_with_a_stale_version_is_a_conflict_and_changes_nothing(kube: KubeApi) -> None:
    created = kube.create(LEASES, _lease("reconciler", "pod-a"))
    first, second = dict(created), dict(created)
    first["spec"] = {**created["spec"], "holderIdentity": "pod-b"}
    second["spec"] = {**created["spec"], "holderIdentity": "pod-c"}
    kube.replace(f"{LEASES}/reconciler", first)
    with pytest.raises(KubeError) as failed:
        kube.replace(f"{LEASES}/reconciler", second)  # read the same version as `first`: lost the race
    assert failed.value.status == 409
    assert failed.value.retriable
    stored = kube.get(f"{LEASES}/reconciler")
    assert stored is not None
    assert stored["spec"]["holderIdentity"] == "pod-b"


def test_replace_of_a_missing_object_is_not_found(kube: KubeApi) -> None:
    with pytest.raises(KubeError) as failed:
        kube.replace(f"{LEASES}/nope", _lease("nope", "pod-a"))
    assert failed.value.status == 404


def test_create_without_a_name_is_invalid(kube: KubeApi) -> None:
    body = _lease("x", "pod-a")
    del body["metadata"]["name"]
    with pytest.raises(KubeError) as failed:
        kube.create(LEASES, body)
    assert failed.value.status == 422
