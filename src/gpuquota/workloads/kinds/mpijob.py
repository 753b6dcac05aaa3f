"""MPIJob (kubeflow.org), as two operators serve it: the MPI Operator (``v2beta1``) and the Kubeflow Training
Operator (``v1``). A cluster has one of the two CRDs; the reconciler asks which version it serves.

Both read the same: ``spec.mpiReplicaSpecs`` (``Launcher``, ``Worker``), ``spec.runPolicy``. They make pods
differently. The training operator owns every pod and labels them ``operator-name: mpijob-controller``. The MPI
Operator owns the worker pods, but runs the launcher as a Job ``<mpijob>-launcher`` it owns, so the launcher pod's
controller is that Job; its pods are labelled ``operator-name: mpi-operator``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuquota.workloads.claims import LabelClaim, OwnerRef
from gpuquota.workloads.kind import WorkloadKind
from gpuquota.workloads.kinds.kubeflow import (
    GROUP,
    JOB_NAME_LABEL,
    OPERATOR_LABEL,
    RUN_POLICY_SUSPEND,
    replica_pod_specs,
    replica_specs_reader,
    training_operator_claim,
)

FIELD = "mpiReplicaSpecs"
MPI_OPERATOR = "mpi-operator"
LAUNCHER_SUFFIX = "-launcher"


def _mpi_operator_pod(value: str, controller: OwnerRef, labels: Mapping[str, Any]) -> str | None:
    """A worker (controlled by the MPIJob) or the launcher (controlled by its Job ``<mpijob>-launcher``)."""
    del labels
    parent = (controller.group, controller.kind)
    if parent == (GROUP, "MPIJob") and controller.name == value:
        return value
    if parent == ("batch", "Job") and controller.name == value + LAUNCHER_SUFFIX:
        return value
    return None


KIND = WorkloadKind(
    group=GROUP,
    kind="MPIJob",
    plural="mpijobs",
    versions=("v2beta1", "v1"),
    read=replica_specs_reader("MPIJob", FIELD),
    pod_specs=replica_pod_specs(FIELD),
    children=(("batch", "Job"),),  # the MPI Operator's launcher Job
    claims=(
        LabelClaim(JOB_NAME_LABEL, _mpi_operator_pod, requires=(OPERATOR_LABEL, MPI_OPERATOR)),
        training_operator_claim("MPIJob"),
    ),
    suspend=RUN_POLICY_SUSPEND,
)
