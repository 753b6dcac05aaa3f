"""Invariants of extraction over generated workloads (hypothesis).

- adding replicas, or units of a resource a container already asks for, never lowers GPUs or TPP;
- old + scale_delta(old, new) covers new, group by group, in GPUs and in TPP;
- a demand never holds a group without pods or without GPUs (nothing is ever counted as zero).
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gpuquota.catalog import load_catalog
from gpuquota.domain import Demand, ModelSource, PodGroup, Purpose
from gpuquota.workloads import ExtractContext, extract, scale_delta

CATALOG = load_catalog()
CONTEXTS = (
    ExtractContext(CATALOG),
    ExtractContext(CATALOG, inventory_models=("H100-SXM5-80GB", "A100-SXM4-80GB", "L4", "B200")),
    ExtractContext(CATALOG, default_model="A100-SXM4-40GB", shared_gpu_fraction=0.25),
)
RESOURCES = (
    "nvidia.com/gpu",
    "nvidia.com/gpu",  # the common case, twice as likely
    "nvidia.com/gpu.shared",
    "nvidia.com/mig-1g.10gb",
    "nvidia.com/mig-3g.40gb",
    "nvidia.com/mig-2g.10gb",
    "amd.com/gpu",
)
PRODUCTS = ("NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-SXM4-40GB", "NVIDIA-L4", "NVIDIA-Q9000")

limits = st.dictionaries(st.sampled_from(RESOURCES), st.integers(0, 8), max_size=2)
containers = st.lists(limits, min_size=1, max_size=3)
init_containers = st.lists(st.tuples(limits, st.booleans()), max_size=3)
selectors = st.one_of(st.none(), st.lists(st.sampled_from(PRODUCTS), min_size=1, max_size=3, unique=True))


@st.composite
def pod_specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": f"c{i}", "resources": {"limits": dict(lim)}} for i, lim in enumerate(draw(containers))]
    }
    inits = draw(init_containers)
    if inits:
        spec["initContainers"] = [
            {"name": f"i{i}", "resources": {"limits": dict(lim)}, **({"restartPolicy": "Always"} if side else {})}
            for i, (lim, side) in enumerate(inits)
        ]
    products = draw(selectors)
    if products is not None:
        expression = {"key": "nvidia.com/gpu.product", "operator": "In", "values": products}
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [expression]}]
                }
            }
        }
    return spec


def template(spec: dict[str, Any]) -> dict[str, Any]:
    return {"spec": spec}


@st.composite
def workloads(draw: st.DrawFn) -> tuple[dict[str, Any], list[list[Any]]]:
    """A workload of a random kind and the paths of its replica counts (to grow them)."""
    kind = draw(st.sampled_from(["PyTorchJob", "JobSet", "RayCluster", "LeaderWorkerSet", "Job"]))
    meta = {"name": "w", "namespace": "ns"}
    counts: list[list[Any]] = []
    if kind == "PyTorchJob":
        roles = {
            r: {"replicas": draw(st.integers(0, 20)), "template": template(draw(pod_specs()))}
            for r in ("Master", "Worker")
        }
        obj = {"apiVersion": "kubeflow.org/v1", "kind": kind, "metadata": meta, "spec": {"pytorchReplicaSpecs": roles}}
        counts = [["spec", "pytorchReplicaSpecs", r, "replicas"] for r in roles]
    elif kind == "JobSet":
        jobs = [
            {
                "name": f"j{i}",
                "replicas": draw(st.integers(0, 4)),
                "template": {"spec": {"parallelism": draw(st.integers(0, 4)), "template": template(draw(pod_specs()))}},
            }
            for i in range(draw(st.integers(1, 3)))
        ]
        obj = {
            "apiVersion": "jobset.x-k8s.io/v1alpha2",
            "kind": kind,
            "metadata": meta,
            "spec": {"replicatedJobs": jobs},
        }
        counts = [["spec", "replicatedJobs", i, "replicas"] for i in range(len(jobs))]
        counts += [["spec", "replicatedJobs", i, "template", "spec", "parallelism"] for i in range(len(jobs))]
    elif kind == "RayCluster":
        groups = [
            {
                "groupName": f"g{i}",
                "replicas": draw(st.integers(0, 6)),
                "numOfHosts": draw(st.integers(1, 3)),
                "template": template(draw(pod_specs())),
            }
            for i in range(draw(st.integers(1, 3)))
        ]
        obj = {
            "apiVersion": "ray.io/v1",
            "kind": kind,
            "metadata": meta,
            "spec": {"headGroupSpec": {"template": template(draw(pod_specs()))}, "workerGroupSpecs": groups},
        }
        counts = [
            ["spec", "workerGroupSpecs", i, key] for i in range(len(groups)) for key in ("replicas", "numOfHosts")
        ]
    elif kind == "LeaderWorkerSet":
        obj = {
            "apiVersion": "leaderworkerset.x-k8s.io/v1",
            "kind": kind,
            "metadata": meta,
            "spec": {
                "replicas": draw(st.integers(0, 5)),
                "leaderWorkerTemplate": {
                    "size": draw(st.integers(1, 4)),
                    "leaderTemplate": template(draw(pod_specs())),
                    "workerTemplate": template(draw(pod_specs())),
                },
            },
        }
        counts = [["spec", "replicas"], ["spec", "leaderWorkerTemplate", "size"]]
    else:
        obj = {
            "apiVersion": "batch/v1",
            "kind": kind,
            "metadata": meta,
            "spec": {"parallelism": draw(st.integers(0, 10)), "template": template(draw(pod_specs()))},
        }
        counts = [["spec", "parallelism"]]
    return obj, counts


def node(obj: Any, path: list[Any]) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def limits_blocks(obj: Any) -> list[dict[str, int]]:
    """Every ``limits`` mapping of the object (containers, init containers)."""
    found: list[dict[str, int]] = []
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key == "limits":
                    found.append(value)
                else:
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return found


def totals(demand: Demand | None) -> tuple[float, float]:
    return (0.0, 0.0) if demand is None else (demand.gpus, demand.tpp)


TOLERANCE = 1e-9


@given(workloads(), st.sampled_from(CONTEXTS), st.data())
def test_growing_replicas_never_lowers_the_demand(
    workload: tuple[dict[str, Any], list[list[Any]]], ctx: ExtractContext, data: st.DataObject
) -> None:
    obj, counts = workload
    before = totals(extract(obj, ctx))
    bigger = copy.deepcopy(obj)
    path = data.draw(st.sampled_from(counts))
    node(bigger, path[:-1])[path[-1]] += data.draw(st.integers(1, 5))
    after = totals(extract(bigger, ctx))
    assert after[0] >= before[0] - TOLERANCE
    assert after[1] >= before[1] - TOLERANCE


@given(workloads(), st.sampled_from(CONTEXTS), st.data())
def test_more_units_of_a_requested_resource_never_lower_the_demand(
    workload: tuple[dict[str, Any], list[list[Any]]], ctx: ExtractContext, data: st.DataObject
) -> None:
    obj, _ = workload
    bigger = copy.deepcopy(obj)
    candidates = [(block, name) for block in limits_blocks(bigger) for name, units in block.items() if units > 0]
    if not candidates:
        return
    block, name = data.draw(st.sampled_from(candidates))
    block[name] = min(64, block[name] + data.draw(st.integers(1, 8)))
    before, after = totals(extract(obj, ctx)), totals(extract(bigger, ctx))
    assert after[1] >= before[1] - TOLERANCE
    assert after[0] >= before[0] - TOLERANCE


@given(workloads(), st.sampled_from(CONTEXTS))
def test_no_group_is_ever_zero(workload: tuple[dict[str, Any], list[list[Any]]], ctx: ExtractContext) -> None:
    demand = extract(workload[0], ctx)
    if demand is None:
        return
    assert demand.groups
    for group in demand.groups:
        assert group.pods > 0
        assert group.gpus_per_pod > 0
        assert group.tpp_per_gpu > 0
        assert group.tpp > 0
        if group.model_source is ModelSource.UNKNOWN:
            assert demand.warnings


SPECS = [s for s in CATALOG if s.vendor == "nvidia"][:8]


@st.composite
def groups(draw: st.DrawFn, roles: tuple[str, ...]) -> tuple[PodGroup, ...]:
    chosen = draw(st.lists(st.sampled_from(roles), unique=True, min_size=1))
    out = []
    for role in chosen:
        model = draw(st.sampled_from(SPECS))
        out.append(
            PodGroup(
                role,
                draw(st.integers(1, 50)),
                draw(st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0, 8.0])),
                model.key,
                ModelSource.SELECTOR,
                model.tpp,
                model.gpu_class,
            )
        )
    return tuple(out)


@given(groups(("a", "b", "c")), groups(("a", "b", "c")), st.booleans())
def test_old_plus_delta_covers_new(
    old_groups: tuple[PodGroup, ...], new_groups: tuple[PodGroup, ...], change_purpose: bool
) -> None:
    old = Demand("PyTorchJob", "ns", "w", old_groups, max_runtime_s=3600.0)
    new = Demand(
        "PyTorchJob",
        "ns",
        "w",
        new_groups,
        max_runtime_s=3600.0,
        purpose=Purpose.INFERENCE if change_purpose else Purpose.TRAINING,
    )
    delta = scale_delta(old, new)
    before = {g.role: g for g in old.groups}
    added = {} if delta is None else {g.role: g for g in delta.groups}
    for group in new.groups:
        prior, extra = before.get(group.role), added.get(group.role)
        gpus = (prior.gpus if prior else 0) + (extra.gpus if extra else 0)
        tpp = (prior.tpp if prior else 0) + (extra.tpp if extra else 0)
        assert gpus >= group.gpus - TOLERANCE
        assert tpp >= group.tpp - TOLERANCE
    if delta is not None:
        assert all(g.pods > 0 and g.gpus > 0 for g in delta.groups)
        assert {g.role for g in delta.groups} <= {g.role for g in new.groups}
