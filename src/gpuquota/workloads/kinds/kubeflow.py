"""Kubeflow Training Operator v1 jobs: PyTorchJob, TFJob, MPIJob, XGBoostJob, PaddleJob, JAXJob.

They share one shape: ``spec.<x>ReplicaSpecs.<Role>`` with ``replicas`` (default 1) and a pod ``template``, and
``spec.runPolicy.activeDeadlineSeconds`` for the whole job. Elastic PyTorch/Paddle jobs can grow their workers to
``spec.elasticPolicy.maxReplicas``, which is what they are counted at.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuquota.workloads.errors import WorkloadError
from gpuquota.workloads.fields import count, deadline, mapping, optional_int, type_name
from gpuquota.workloads.kinds.common import metadata_annotations, pod_template
from gpuquota.workloads.shape import Adapter, Shape, Template

REPLICA_SPECS = {
    "PyTorchJob": "pytorchReplicaSpecs",
    "TFJob": "tfReplicaSpecs",
    "MPIJob": "mpiReplicaSpecs",
    "XGBoostJob": "xgbReplicaSpecs",
    "PaddleJob": "paddleReplicaSpecs",
    "JAXJob": "jaxReplicaSpecs",
}


def _adapter(kind: str) -> Adapter:
    field = REPLICA_SPECS[kind]

    def read(obj: Mapping[str, Any]) -> Shape:
        spec = mapping(obj, "spec", "spec", required=True)
        replica_specs = mapping(spec, field, f"spec.{field}", required=True)
        elastic_max = optional_int(
            mapping(spec, "elasticPolicy", "spec.elasticPolicy"), "maxReplicas", "spec.elasticPolicy.maxReplicas"
        )
        templates: list[Template] = []
        for role, replica_spec in replica_specs.items():
            path = f"spec.{field}.{role}"
            if not isinstance(replica_spec, Mapping):
                raise WorkloadError(f"must be a mapping, got {type_name(replica_spec)}", path=path)
            replicas = count(replica_spec, "replicas", f"{path}.replicas", 1)
            if elastic_max is not None and str(role).lower() == "worker":
                replicas = max(replicas, elastic_max)
            templates.append(pod_template(replica_spec, str(role), replicas, path))
        run_policy = mapping(spec, "runPolicy", "spec.runPolicy")
        bound = deadline(run_policy, "activeDeadlineSeconds", "spec.runPolicy.activeDeadlineSeconds")
        return Shape(tuple(templates), bound, metadata_annotations(obj))

    read.__name__ = read.__qualname__ = kind.lower()
    return read


ADAPTERS: dict[tuple[str, str], Adapter] = {("kubeflow.org", kind): _adapter(kind) for kind in REPLICA_SPECS}
