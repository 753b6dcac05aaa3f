"""The workload kinds agree with themselves: what the chart tests for GPUs covers every pod template the demand
reader counts, children and claims name kinds that are enforced, and the derived tables hold every kind."""

from __future__ import annotations

import re

import pytest

from gpuquota.reconcile.resources import RESOURCES, kinds_to_follow
from gpuquota.workloads import SCALE_SUBRESOURCES, SUPPORTED_KINDS
from gpuquota.workloads.kind import PodSpecAt, WorkloadKind
from gpuquota.workloads.registry import ADAPTERS, BY_KEY, CLAIMS_BY_LABEL, KINDS, LABEL_CLAIMS, api_group
from tests.workloads.conftest import MANIFESTS, manifest


def _pattern(spec: PodSpecAt) -> str:
    path = re.escape(".".join(spec.path))
    items = re.escape(".".join(spec.items))
    if spec.over == "list":
        return rf"{items}\[\d+\]\.{path}"
    if spec.over == "map":
        return rf"{items}\.[^.]+\.{path}"
    return path


@pytest.mark.parametrize("name", sorted(p.stem for p in MANIFESTS.glob("*.yaml")))
def test_the_charts_pod_spec_paths_cover_every_template_the_reader_counts(name: str) -> None:
    """The chart sends an object when a pod spec at one of these paths asks for GPUs; a template the reader counts
    somewhere else would be enforced in code but never reach the webhook."""
    obj = manifest(name)
    kind = BY_KEY.get((api_group(obj["apiVersion"]), obj["kind"]))
    if kind is None or kind.always_send:
        return
    patterns = [re.compile(_pattern(spec)) for spec in kind.pod_specs]
    for template in kind.read(obj).templates:
        assert any(p.fullmatch(template.path) for p in patterns), (kind.kind, template.path)


def test_every_derived_table_holds_every_kind() -> None:
    assert set(ADAPTERS) == set(BY_KEY) == SUPPORTED_KINDS == set(RESOURCES)
    assert len(KINDS) == len(SUPPORTED_KINDS)
    assert {k.key: k.scale for k in KINDS if k.scale} == dict(SCALE_SUBRESOURCES)
    assert {(kind.key, claim) for kind, claim in LABEL_CLAIMS} == {(k.key, c) for k in KINDS for c in k.claims}
    assert [entry for _, entries in CLAIMS_BY_LABEL for entry in entries] == sorted(
        LABEL_CLAIMS, key=lambda entry: [label for label, _ in CLAIMS_BY_LABEL].index(entry[1].label))


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_a_kinds_children_and_versions(kind: WorkloadKind) -> None:
    assert set(kind.children) <= SUPPORTED_KINDS - {kind.key, ("", "Pod")}
    assert kinds_to_follow(kind.key)[0] == kind.key
    assert kind.versions
    assert len(set(kind.versions)) == len(kind.versions)
    assert kind.plural == kind.plural.lower()
    assert kind.plural.endswith("s")
    if kind.scale is not None:
        assert kind.scale[0] == "spec"
        assert kind.scale[-1] == "replicas"


def test_a_kind_without_pod_spec_paths_is_refused() -> None:
    pod = BY_KEY[("", "Pod")]
    with pytest.raises(ValueError, match="pod-spec paths"):
        WorkloadKind(group="example.com", kind="Thing", plural="things", versions=("v1",), read=pod.read)
    with pytest.raises(ValueError, match="served version"):
        WorkloadKind(group="example.com", kind="Thing", plural="things", versions=(), read=pod.read, always_send=True)
