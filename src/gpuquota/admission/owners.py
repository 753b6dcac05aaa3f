"""Which already-admitted workload an object (a pod, a JobSet's Job) belongs to.

Workload controllers create pods (and child Jobs) that come back through the webhook. Their GPUs were reserved when
the workload itself was admitted, so they must pass without a second reservation — but a tenant writes its own
pods and can forge an owner reference or a label. A candidate owner is therefore only a hint, read only for a
controller's request (``Admission.controller_made``), and the ledger must hold an active reservation for it
(checked by the caller); otherwise the object is judged on its own.

Even a controller's object carries labels the tenant wrote: a controller copies its pod template's labels onto the
pods it makes, so a tenant's Deployment whose template says ``job-name: <an admitted job>`` gets pods from the
(trusted) ReplicaSet controller with that label. The one thing a template cannot forge is the object's controller
owner reference (``controller: true``): controllers set it themselves and do not copy one from a template. So a
label claim is believed only when it agrees with that reference — the controller is the kind the label's real
controller chain makes (a kind the webhook itself reviews, so the parent was judged when it was created) and its
name follows that controller's naming convention. Claims read from owner references themselves are kept as they
are (the caller still filters them to reviewed kinds and asks the ledger).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """A workload an object claims to belong to, in the object's own namespace. ``uid`` is empty when the claim
    comes from a label (labels carry names, not uids). ``via``: for a LeaderWorkerSet label claim, the StatefulSet
    controller it rests on, whose own owner must still be checked (``admission.lws``); not part of equality."""

    group: str
    kind: str
    name: str
    uid: str = ""
    via: OwnerRef | None = field(default=None, compare=False)


# Labels that workload controllers put on the pods (and child objects) they create: label → (group, kind).
_NAME_LABELS: Final[tuple[tuple[str, str, str], ...]] = (
    ("batch.kubernetes.io/job-name", "batch", "Job"),
    ("job-name", "batch", "Job"),
    ("jobset.sigs.k8s.io/jobset-name", "jobset.x-k8s.io", "JobSet"),
    ("ray.io/cluster", "ray.io", "RayCluster"),
    ("leaderworkerset.sigs.k8s.io/name", "leaderworkerset.x-k8s.io", "LeaderWorkerSet"),
)
# Kubeflow training-operator v1 names the job in one label and the controller (hence the kind) in another.
_KUBEFLOW_OPERATORS: Final = {
    "pytorchjob-controller": "PyTorchJob",
    "tfjob-controller": "TFJob",
    "mpijob-controller": "MPIJob",
    "xgboostjob-controller": "XGBoostJob",
    "paddlejob-controller": "PaddleJob",
    "jaxjob-controller": "JAXJob",
}
_JOB: Final = ("batch", "Job")
_JOBSET: Final = ("jobset.x-k8s.io", "JobSet")
_RAYCLUSTER: Final = ("ray.io", "RayCluster")
_STATEFULSET: Final = ("apps", "StatefulSet")
# JobSet labels on its child Jobs (and, through their templates, on the pods).
_JOBSET_REPLICATED_JOB: Final = "jobset.sigs.k8s.io/replicatedjob-name"
_JOBSET_JOB_INDEX: Final = "jobset.sigs.k8s.io/job-index"
_LWS_GROUP_INDEX: Final = "leaderworkerset.sigs.k8s.io/group-index"
# The controller a label claim must come with, by the claimed kind, where it is not the claimed kind itself (Kubeflow
# jobs own their pods); JobSet and TrainJob claims are read under a JobSet (its Jobs) or a Job (their pods).
_LABEL_CLAIM_PARENT: Final = {"Job": _JOB, "RayCluster": _RAYCLUSTER, "RayJob": _RAYCLUSTER,
                              "LeaderWorkerSet": _STATEFULSET}


# The CronJob controller names each Job "<cronjob>-<scheduled time in minutes since the epoch>", so the pods of a
# scheduled run can be traced to the CronJob that was admitted (their Job was passed without a reservation of its own).
_CRONJOB_JOB_NAME: Final = re.compile(r"^(.+)-(\d{8,10})$")


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def _jobset_child(job_name: str, jobset: str, labels: Mapping[str, Any]) -> bool:
    """JobSet names its Jobs ``<jobset>-<replicatedJob>-<index>`` and labels them (and their pods) with both parts."""
    if not job_name.startswith(jobset + "-"):
        return False
    replicated, index = labels.get(_JOBSET_REPLICATED_JOB), labels.get(_JOBSET_JOB_INDEX)
    if isinstance(replicated, str) and isinstance(index, str):
        return job_name == f"{jobset}-{replicated}-{index}"
    return True


def _lws_statefulset(sts_name: str, lws: str, labels: Mapping[str, Any]) -> bool:
    """LeaderWorkerSet runs its leaders in a StatefulSet named ``<lws>`` and each group's workers in one named after
    the group's leader pod, ``<lws>-<groupIndex>``."""
    if sts_name == lws:
        return True
    if not sts_name.startswith(lws + "-"):
        return False
    index = sts_name[len(lws) + 1:]
    group_index = labels.get(_LWS_GROUP_INDEX)
    return index.isdigit() and (group_index is None or group_index == index)


def _consistent(claim: OwnerRef, controller: OwnerRef, labels: Mapping[str, Any]) -> bool:
    """Whether a label claim agrees with the object's controller reference, as the claim's real controllers set it."""
    parent, name = (controller.group, controller.kind), controller.name
    if claim.kind in ("JobSet", "TrainJob"):  # a TrainJob runs as a JobSet of its own name
        if parent == _JOBSET:  # the JobSet's Jobs
            return name == claim.name
        return parent == _JOB and _jobset_child(name, claim.name, labels)  # their pods
    # Anything else: the Job's, RayCluster's, Kubeflow job's own pods; a RayJob's cluster's; an LWS's StatefulSets'.
    if parent != _LABEL_CLAIM_PARENT.get(claim.kind, (claim.group, claim.kind)):
        return False
    if claim.kind == "RayJob":  # KubeRay names a RayJob's cluster "<rayjob>-<random suffix>"
        return name.startswith(claim.name + "-")
    if claim.kind == "LeaderWorkerSet":
        return _lws_statefulset(name, claim.name, labels)
    return name == claim.name


def _label_claims(labels: Mapping[str, Any]) -> list[OwnerRef]:
    """Every owner the controllers' labels name, believed or not."""
    claims: list[OwnerRef] = []
    for label, group, kind in _NAME_LABELS:
        value = labels.get(label)
        if isinstance(value, str) and value:
            claims.append(OwnerRef(group, kind, value))
            if kind == "JobSet":  # a TrainJob runs as a JobSet of the same name
                claims.append(OwnerRef("trainer.kubeflow.org", "TrainJob", value))
    kubeflow_kind = _KUBEFLOW_OPERATORS.get(str(labels.get("training.kubeflow.org/operator-name", "")))
    job_name = labels.get("training.kubeflow.org/job-name")
    if kubeflow_kind and isinstance(job_name, str) and job_name:
        claims.append(OwnerRef("kubeflow.org", kubeflow_kind, job_name))
    if labels.get("ray.io/originated-from-crd") == "RayJob":
        ray_job = labels.get("ray.io/originated-from-cr-name")
        if isinstance(ray_job, str) and ray_job:
            claims.append(OwnerRef("ray.io", "RayJob", ray_job))
    return claims


def _owner_refs(obj: Mapping[str, Any]) -> tuple[list[OwnerRef], OwnerRef | None]:
    """The object's owner references, and the first with ``controller: true``."""
    found: list[OwnerRef] = []
    controller: OwnerRef | None = None
    refs = (obj.get("metadata") or {}).get("ownerReferences")
    if isinstance(refs, list):
        for ref in refs:
            if isinstance(ref, dict) and ref.get("kind") and ref.get("name"):
                owner = OwnerRef(_group(str(ref.get("apiVersion", ""))), str(ref["kind"]), str(ref["name"]),
                                 str(ref.get("uid") or ""))
                found.append(owner)
                if ref.get("controller") is True and controller is None:
                    controller = owner
    return found, controller


def controller_ref(obj: Mapping[str, Any]) -> OwnerRef | None:
    """The object's controller owner reference (``controller: true``), if any."""
    return _owner_refs(obj)[1]


def candidate_owners(obj: Mapping[str, Any]) -> tuple[OwnerRef, ...]:
    """Owner references first (they carry a uid), then the controller labels that agree with the object's controller
    reference (none without one); duplicates dropped, order kept. A LeaderWorkerSet claim carries the StatefulSet it
    rests on in ``via``: it holds only once that StatefulSet's own owner is checked."""
    found, controller = _owner_refs(obj)
    labels = (obj.get("metadata") or {}).get("labels")
    if controller is not None and isinstance(labels, dict):
        for claim in _label_claims(labels):
            if _consistent(claim, controller, labels):
                found.append(replace(claim, via=controller) if claim.kind == "LeaderWorkerSet" else claim)
                if claim.kind == "Job" and (cron := _CRONJOB_JOB_NAME.match(claim.name)):
                    found.append(OwnerRef("batch", "CronJob", cron.group(1)))
    seen: set[tuple[str, str, str]] = set()
    unique: list[OwnerRef] = []
    for ref in found:
        if (ref.kind, ref.name, ref.uid) not in seen:
            seen.add((ref.kind, ref.name, ref.uid))
            unique.append(ref)
    return tuple(unique)


class OwnerCache:
    """Remembers ledger answers about owners so a burst of pods from one workload costs one ledger read.

    Positive answers live ``ttl_s``; negative ones a shorter ``negative_ttl_s`` (an owner is admitted before its
    controller creates pods, so a miss is almost always a forged or foreign owner). ``forget`` drops a workload at
    once when this replica sees it deleted; other replicas notice within the TTL.
    """

    def __init__(self, ttl_s: float = 30.0, negative_ttl_s: float = 2.0, max_entries: int = 50_000) -> None:
        self._entries: dict[tuple[str, str, str, str], tuple[float, bool]] = {}
        self._lock = threading.Lock()
        self._ttl = ttl_s
        self._negative_ttl = negative_ttl_s
        self._max = max_entries

    def get(self, namespace: str, ref: OwnerRef) -> bool | None:
        entry = self._entries.get((namespace, ref.kind, ref.name, ref.uid))
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, namespace: str, ref: OwnerRef, active: bool) -> None:
        expires = time.monotonic() + (self._ttl if active else self._negative_ttl)
        with self._lock:
            if len(self._entries) >= self._max:
                now = time.monotonic()
                self._entries = {k: v for k, v in self._entries.items() if v[0] >= now}
                if len(self._entries) >= self._max:
                    self._entries.clear()
            self._entries[(namespace, ref.kind, ref.name, ref.uid)] = (expires, active)

    def forget(self, namespace: str, kind: str, name: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == namespace and k[1] == kind and k[2] == name]:
                del self._entries[key]
