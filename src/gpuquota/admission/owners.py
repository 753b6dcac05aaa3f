"""Which already-admitted workload an object (a pod, a JobSet's Job) belongs to.

Workload controllers create pods (and child Jobs) that come back through the webhook. Their GPUs were reserved when
the workload itself was admitted, so they must pass without a second reservation — but a tenant writes its own
pods and can forge an owner reference or a label. A candidate owner is therefore only a hint, read only for a
controller's request (``Admission.controller_made``), and the ledger must hold an active reservation for it
(checked by the caller); otherwise the object is judged on its own.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """A workload an object claims to belong to, in the object's own namespace. ``uid`` is empty when the claim
    comes from a label (labels carry names, not uids)."""

    group: str
    kind: str
    name: str
    uid: str = ""


# Labels that workload controllers put on the pods (and child objects) they create: label → (group, kind).
_NAME_LABELS: Final[tuple[tuple[str, str, str], ...]] = (
    ("batch.kubernetes.io/job-name", "batch", "Job"),
    ("job-name", "batch", "Job"),
    ("jobset.sigs.k8s.io/jobset-name", "jobset.x-k8s.io", "JobSet"),
    ("ray.io/cluster", "ray.io", "RayCluster"),
    ("leaderworkerset.sigs.k8s.io/name", "leaderworkerset.x-k8s.io", "LeaderWorkerSet"),
    ("trainer.kubeflow.org/trainjob-ancestor-step", "trainer.kubeflow.org", "TrainJob"),
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


# The CronJob controller names each Job "<cronjob>-<scheduled time in minutes since the epoch>", so the pods of a
# scheduled run can be traced to the CronJob that was admitted (their Job was passed without a reservation of its own).
_CRONJOB_JOB_NAME: Final = re.compile(r"^(.+)-(\d{8,10})$")


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def candidate_owners(obj: Mapping[str, Any]) -> tuple[OwnerRef, ...]:
    """Owner references first (they carry a uid), then controller labels; duplicates dropped, order kept."""
    metadata = obj.get("metadata") or {}
    found: list[OwnerRef] = []
    for ref in metadata.get("ownerReferences") or ():
        if isinstance(ref, dict) and ref.get("kind") and ref.get("name"):
            found.append(OwnerRef(_group(str(ref.get("apiVersion", ""))), str(ref["kind"]), str(ref["name"]),
                                  str(ref.get("uid") or "")))
    labels = metadata.get("labels") or {}
    if isinstance(labels, dict):
        for label, group, kind in _NAME_LABELS:
            value = labels.get(label)
            if isinstance(value, str) and value:
                found.append(OwnerRef(group, kind, value))
                if kind == "JobSet":  # a TrainJob runs as a JobSet of the same name
                    found.append(OwnerRef("trainer.kubeflow.org", "TrainJob", value))
                if kind == "Job" and (cron := _CRONJOB_JOB_NAME.match(value)):
                    found.append(OwnerRef("batch", "CronJob", cron.group(1)))
        kubeflow_kind = _KUBEFLOW_OPERATORS.get(str(labels.get("training.kubeflow.org/operator-name", "")))
        job_name = labels.get("training.kubeflow.org/job-name")
        if kubeflow_kind and isinstance(job_name, str) and job_name:
            found.append(OwnerRef("kubeflow.org", kubeflow_kind, job_name))
        if labels.get("ray.io/originated-from-crd") == "RayJob":
            ray_job = labels.get("ray.io/originated-from-cr-name")
            if isinstance(ray_job, str) and ray_job:
                found.append(OwnerRef("ray.io", "RayJob", ray_job))
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
