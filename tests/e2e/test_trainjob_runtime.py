"""A TrainJob that sets no numNodes, through the real API server with Trainer v2.2's CRDs: the webhook reads the
ClusterTrainingRuntime it names (with the chart's RBAC, as the webhook's service account), counts the nodes the
runtime says, and refuses it at the cap; a TrainJob naming a runtime that does not exist is refused saying so."""

from __future__ import annotations

from typing import Any

from tests.e2e.install import Gpuquota

# TEST_POLICY: a tier-2 tenant holds at most 16 H100 SXM (the profile's default model).
TRAINER = "trainer.kubeflow.org/v1alpha1"


def cluster_runtime(name: str, num_nodes: int) -> dict[str, Any]:
    """Trainer's torch-distributed runtime (manifests/base/runtimes/torch_distributed.yaml), with 8 GPUs per node."""
    node = {"name": "node", "image": "pytorch/pytorch:2.10.0-cuda12.8-cudnn9-runtime",
            "resources": {"limits": {"nvidia.com/gpu": "8"}}}
    return {
        "apiVersion": TRAINER, "kind": "ClusterTrainingRuntime",
        "metadata": {"name": name, "labels": {"trainer.kubeflow.org/framework": "torch"}},
        "spec": {"mlPolicy": {"numNodes": num_nodes, "torch": {}}, "template": {"spec": {"replicatedJobs": [{
            "name": "node",
            "template": {"metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}},
                         "spec": {"template": {"spec": {"containers": [node]}}}},
        }]}}},
    }


def train_job(name: str, runtime: str) -> dict[str, Any]:
    """No numNodes and no resourcesPerNode: everything it runs comes from the runtime."""
    return {
        "apiVersion": TRAINER, "kind": "TrainJob",
        "metadata": {"name": name, "annotations": {"gpuquota.io/max-runtime": "2h"}},
        "spec": {"runtimeRef": {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime", "name": runtime},
                 "trainer": {"image": "example.com/sft:1", "command": ["torchrun", "sft.py"]}},
    }


def test_trainjob_without_num_nodes_is_judged_on_its_runtime(gpuquota: Gpuquota) -> None:
    tenant = gpuquota.tenant("e2e-trainjob", "trainjob", "BR")
    ns = tenant.namespace
    many, one = gpuquota.name("e2e-torch-4-nodes"), gpuquota.name("e2e-torch-1-node")
    gpuquota.cluster.apply([cluster_runtime(many, 4), cluster_runtime(one, 1)])

    refused = tenant.apply(train_job("sft-many", many))  # 4 nodes × 8 = 32 H100 > 16
    assert not refused.ok, refused.output
    assert f"TrainJob {ns}/sft-many denied for tenant trainjob" in refused.stderr, refused.output
    assert "32 × H100" in refused.stderr, refused.output
    assert tenant.kubectl("get", "trainjob", "sft-many").returncode != 0

    admitted = tenant.apply(train_job("sft-one", one))  # 1 node × 8 = 8 H100
    assert admitted.ok, admitted.output
    assert [(r.workload.name, r.gpus) for r in gpuquota.reservations(ns)] == [("sft-one", 8)]

    missing = tenant.apply(train_job("sft-nowhere", gpuquota.name("e2e-no-such-runtime")))
    assert not missing.ok, missing.output
    assert (f"ClusterTrainingRuntime {gpuquota.name('e2e-no-such-runtime')} (named by spec.runtimeRef) does not "
            "exist; create the ClusterTrainingRuntime first") in " ".join(missing.stderr.split()), missing.output
    assert [r.workload.name for r in gpuquota.reservations(ns)] == ["sft-one"]
