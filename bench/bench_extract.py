"""Demand extraction speed: the admission hot path's share of a decision.

Measures ``extract()`` and ``requests_gpu()`` on (1) a 64-replica PyTorchJob (1 master + 63 workers, 8 GPUs
each — the issue's target: ≤ 100 µs) and (2) a large multi-container JobSet (16 replicated jobs, each pod with
8 app containers, 3 init containers of which 2 are sidecars, affinity with alternatives), each warm (model
resolution cached, the steady state of a webhook) and cold (cache cleared before every call).

Run: ``.venv/bin/python bench/bench_extract.py [--repeat N] [--cpu-time]``; results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import copy
import platform
import time
from pathlib import Path
from typing import Any

import yaml

from gpuquota.catalog import load_catalog
from gpuquota.workloads import ExtractContext, extract, requests_gpu
from gpuquota.workloads.models import RESOLUTIONS
from percall import per_call_us

MANIFESTS = Path(__file__).resolve().parent.parent / "tests" / "workloads" / "manifests"


def pytorchjob_64() -> dict[str, Any]:
    obj = yaml.safe_load((MANIFESTS / "pytorchjob-llama-finetune.yaml").read_text(encoding="utf-8"))
    obj["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = 63
    return dict(obj)


def large_jobset() -> dict[str, Any]:
    """16 replicated jobs × (8 app containers + 3 init containers) with a 3-way product affinity."""

    def container(name: str, gpus: int, sidecar: bool = False) -> dict[str, Any]:
        c: dict[str, Any] = {
            "name": name,
            "image": "ghcr.io/example/trainer:1.0",
            "command": ["python", "-m", "trainer", f"--shard={name}"],
            "env": [{"name": f"VAR_{i}", "value": str(i)} for i in range(12)],
            "resources": {
                "requests": {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": gpus},
                "limits": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": gpus, "ephemeral-storage": "100Gi"},
            },
            "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "shm", "mountPath": "/dev/shm"}],
        }
        if sidecar:
            c["restartPolicy"] = "Always"
        return c

    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "nvidia.com/gpu.product",
                                "operator": "In",
                                "values": ["NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB", "NVIDIA-L40S"],
                            },
                            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a", "b"]},
                        ]
                    }
                ]
            }
        }
    }
    jobs = []
    for index in range(16):
        pod_spec = {
            "restartPolicy": "Never",
            "affinity": affinity,
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "initContainers": [
                container("prepare", 1),
                container("loader", 0, sidecar=True),
                container("profiler", 0, sidecar=True),
            ],
            "containers": [container(f"rank{r}", 1) for r in range(8)],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "shm", "emptyDir": {}},
            ],
        }
        jobs.append(
            {
                "name": f"slice-{index}",
                "replicas": 4,
                "template": {"spec": {"parallelism": 2, "completions": 2, "template": {"spec": pod_spec}}},
            }
        )
    return {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": {"name": "large", "namespace": "team-a", "annotations": {"gpuquota.io/max-runtime": "48h"}},
        "spec": {"replicatedJobs": copy.deepcopy(jobs)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5000)
    parser.add_argument("--cpu-time", action="store_true", help="time this process's CPU use, not the wall clock")
    args = parser.parse_args()
    clock = time.process_time_ns if args.cpu_time else time.perf_counter_ns
    ctx = ExtractContext(load_catalog(), inventory_models=("H100-SXM5-80GB", "A100-SXM4-80GB", "L4"))
    cases = {"PyTorchJob, 64 replicas": pytorchjob_64(), "JobSet, 16 jobs × 11 containers": large_jobset()}
    print(f"python {platform.python_version()} on {platform.machine()}, {platform.processor() or 'cpu'}")
    print("µs per call, median (best) of 7 rounds")
    print(f"{'workload':34} {'GPUs':>6} {'warm':>15} {'cold':>15} {'requests_gpu':>15}")
    for label, obj in cases.items():
        demand = extract(obj, ctx)
        assert demand is not None

        def warm_call(obj: dict[str, Any] = obj) -> None:
            extract(obj, ctx)

        def check_call(obj: dict[str, Any] = obj) -> None:
            requests_gpu(obj)

        warm = per_call_us(warm_call, args.repeat, clock=clock)

        def cold(obj: dict[str, Any] = obj) -> None:
            RESOLUTIONS.clear()
            extract(obj, ctx)

        cold_us = per_call_us(cold, max(1, args.repeat // 5), clock=clock)
        check = per_call_us(check_call, args.repeat, clock=clock)
        cells = " ".join(f"{f'{m:.1f} ({b:.1f})':>15}" for m, b in (warm, cold_us, check))
        print(f"{label:34} {demand.gpus:>6g} {cells}")


if __name__ == "__main__":
    main()
