"""The workload kinds' CustomResourceDefinitions, taken from their own projects' Go modules (never copied into this
repository): ``go mod download`` puts each module in the Go module cache, and the tests apply the CRD files it holds.

The versions are the ones Kueue v0.17.0 builds against (its go.mod), so they are a set that one real cluster runs
together. Each is downloaded once per machine (the module cache persists), then read from disk.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path


@dataclass(frozen=True)
class CrdSource:
    module: str
    version: str
    files: tuple[str, ...]  # paths inside the module


SOURCES: tuple[CrdSource, ...] = (
    CrdSource("sigs.k8s.io/jobset", "v0.11.1", ("config/components/crd/bases/jobset.x-k8s.io_jobsets.yaml",)),
    CrdSource("sigs.k8s.io/lws", "v0.8.0", ("config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml",)),
    CrdSource("github.com/kubeflow/training-operator", "v1.9.3", tuple(
        f"manifests/base/crds/kubeflow.org_{plural}.yaml"
        for plural in ("pytorchjobs", "tfjobs", "xgboostjobs", "paddlejobs", "jaxjobs"))),
    # MPIJob: the MPI Operator's kubeflow.org/v2beta1. The training operator's MPIJob v1 CRD has the same name
    # (mpijobs.kubeflow.org), so a cluster serves one or the other; Kueue v0.17 pairs with this one.
    CrdSource("github.com/kubeflow/mpi-operator", "v0.8.0", ("manifests/base/kubeflow.org_mpijobs.yaml",)),
    CrdSource("github.com/kubeflow/trainer/v2", "v2.2.0", tuple(
        f"manifests/base/crds/trainer.kubeflow.org_{plural}.yaml"
        for plural in ("trainjobs", "trainingruntimes", "clustertrainingruntimes"))),
    CrdSource("github.com/ray-project/kuberay/ray-operator", "v1.6.0",
              ("config/crd/bases/ray.io_rayclusters.yaml", "config/crd/bases/ray.io_rayjobs.yaml",
               "config/crd/bases/ray.io_rayservices.yaml")),
    CrdSource("sigs.k8s.io/kueue", "v0.17.0", tuple(
        f"config/components/crd/bases/kueue.x-k8s.io_{plural}.yaml"
        for plural in ("workloads", "localqueues", "clusterqueues", "resourceflavors", "admissionchecks",
                       "workloadpriorityclasses", "cohorts", "topologies"))),
)


@cache
def module_dir(module: str, version: str) -> Path:
    """Where the Go module cache holds ``module@version``, downloading it first if needed."""
    proc = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], capture_output=True, text=True,
                          check=False, timeout=600, env={**os.environ, "GOFLAGS": "-mod=mod"}, cwd="/")
    info = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    if proc.returncode != 0 or "Dir" not in info:
        raise RuntimeError(f"go mod download {module}@{version} failed: {info.get('Error') or proc.stderr.strip()}")
    return Path(info["Dir"])


def crd_files() -> list[Path]:
    """Every CRD file of ``SOURCES``, from the module cache."""
    return [module_dir(source.module, source.version) / name for source in SOURCES for name in source.files]
