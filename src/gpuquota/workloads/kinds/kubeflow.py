"""Kubeflow Training Operator v1 jobs (kubeflow.org/v1): PyTorchJob, TFJob, XGBoostJob, PaddleJob, JAXJob.

They share one shape: ``spec.<x>ReplicaSpecs.<Role>`` with ``replicas`` (default 1) and a pod ``template``, and
``spec.runPolicy`` (``activeDeadlineSeconds`` for the whole job, ``suspend``). Elastic jobs can grow their workers to
``spec.elasticPolicy.maxReplicas``, which is what they are counted at. The operator owns the pods itself and labels
them with the job's name and its own (``<kind>-controller``). MPIJob, served by two operators, has its own module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuquota.workloads.claims import LabelClaim, controlled_by
from gpuquota.workloads.errors import WorkloadError
from gpuquota.workloads.fields import count, deadline, mapping, optional_int, type_name
from gpuquota.workloads.kind import PodSpecAt, WorkloadKind
from gpuquota.workloads.kinds.common import metadata_annotations, pod_template
from gpuquota.workloads.shape import Adapter, Shape, Template

GROUP = "kubeflow.org"
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
OPERATOR_LABEL = "training.kubeflow.org/operator-name"
RUN_POLICY_SUSPEND = ("spec", "runPolicy", "suspend")


def replica_specs_reader(kind: str, field: str) -> Adapter:
    """The demand reader of a job keeping its roles in ``spec.<field>``."""

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


def replica_pod_specs(field: str) -> tuple[PodSpecAt, ...]:
    return (PodSpecAt(("template", "spec"), ("spec", field), "map"),)


def training_operator_claim(kind: str) -> LabelClaim:
    """The training operator's labels on the pods it makes for ``kind`` (it is their controller)."""
    operator = (OPERATOR_LABEL, f"{kind.lower()}-controller")
    return LabelClaim(JOB_NAME_LABEL, controlled_by(GROUP, kind), requires=operator)


def _training_job(kind: str, field: str, plural: str, *, scalable: bool = False) -> WorkloadKind:
    return WorkloadKind(
        group=GROUP,
        kind=kind,
        plural=plural,
        versions=("v1",),
        read=replica_specs_reader(kind, field),
        pod_specs=replica_pod_specs(field),
        # The CRDs' specReplicasPath (docs/workloads.md, "Scale subresources").
        scale=("spec", field, "Worker", "replicas") if scalable else None,
        claims=(training_operator_claim(kind),),
        suspend=RUN_POLICY_SUSPEND,
    )


KINDS = (
    _training_job("PyTorchJob", "pytorchReplicaSpecs", "pytorchjobs", scalable=True),
    _training_job("TFJob", "tfReplicaSpecs", "tfjobs"),
    _training_job("XGBoostJob", "xgbReplicaSpecs", "xgboostjobs"),
    _training_job("PaddleJob", "paddleReplicaSpecs", "paddlejobs", scalable=True),
    _training_job("JAXJob", "jaxReplicaSpecs", "jaxjobs", scalable=True),
)
