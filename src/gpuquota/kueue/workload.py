"""Kueue's objects as gpuquota reads them: a Workload (kueue.x-k8s.io/v1beta2, the version v0.17 stores) with its
PodSets, the flavours Kueue assigned, its conditions and admission-check states; and the demand of its pods.

Pure: JSON in, values out. The demand is that of the pods Kueue will start: each PodSet's template with the node
labels of the ResourceFlavor Kueue assigned to it merged into its nodeSelector — exactly what Kueue injects when
it un-suspends the owner — so the GPU model comes from the flavour the same way it comes from any pod's selector.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from gpuquota.domain import Demand
from gpuquota.workloads import ExtractContext, WorkloadError
from gpuquota.workloads.extract import shape_demand
from gpuquota.workloads.fields import integer, mapping, optional_int, sequence, type_name
from gpuquota.workloads.kinds.common import pod_template
from gpuquota.workloads.shape import Shape, Template

GROUP: Final = "kueue.x-k8s.io"
VERSION: Final = "v1beta2"
API_VERSION: Final = f"{GROUP}/{VERSION}"


@dataclass(frozen=True, slots=True)
class Owner:
    """The object a Workload stands for (a batch/v1 Job, a JobSet, …): reservations are held under it, so that
    when Kueue un-suspends it the webhook finds them (one ledger, two entrances)."""

    api_version: str
    kind: str
    name: str
    uid: str

    @property
    def group(self) -> str:
        group, slash, _ = self.api_version.rpartition("/")
        return group if slash else ""


@dataclass(frozen=True, slots=True)
class CheckStatus:
    name: str
    state: str
    message: str


@dataclass(frozen=True, slots=True)
class Workload:
    """What the check controller needs of one Workload. ``flavors``: PodSet name → resource → ResourceFlavor name,
    from ``status.admission`` (empty until Kueue reserved quota)."""

    namespace: str
    name: str
    uid: str
    owner: Owner | None
    obj: Mapping[str, Any] = field(repr=False)
    checks: tuple[CheckStatus, ...] = ()
    flavors: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    counts: Mapping[str, int] = field(default_factory=dict)  # PodSet name → count Kueue admitted (partial admission)
    quota_reserved_at: str | None = None  # lastTransitionTime of QuotaReserved=True; None without a reservation
    finished: bool = False
    evicted: bool = False
    active: bool = True

    def check(self, name: str) -> CheckStatus | None:
        return next((c for c in self.checks if c.name == name), None)

    def __str__(self) -> str:
        return f"Workload {self.namespace}/{self.name}"


def _condition(conditions: object, kind: str) -> Mapping[str, Any] | None:
    if not isinstance(conditions, list):
        return None
    return next((c for c in conditions if isinstance(c, Mapping) and c.get("type") == kind), None)


def _true(conditions: object, kind: str) -> bool:
    cond = _condition(conditions, kind)
    return cond is not None and cond.get("status") == "True"


def _owner(meta: Mapping[str, Any]) -> Owner | None:
    refs = [r for r in meta.get("ownerReferences") or [] if isinstance(r, Mapping)]
    ref = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    if ref is None or not all(isinstance(ref.get(k), str) and ref.get(k) for k in ("apiVersion", "kind", "name")):
        return None
    return Owner(str(ref["apiVersion"]), str(ref["kind"]), str(ref["name"]), str(ref.get("uid") or ""))


def read_workload(obj: Mapping[str, Any]) -> Workload:
    """A Workload object as listed or watched. Raises ``WorkloadError`` when it is not one."""
    meta = mapping(obj, "metadata", "metadata", required=True)
    namespace, name, uid = (meta.get(k) for k in ("namespace", "name", "uid"))
    if not (isinstance(namespace, str) and isinstance(name, str) and isinstance(uid, str) and name):
        raise WorkloadError("a Workload needs metadata.namespace, .name and .uid", path="metadata")
    status = mapping(obj, "status", "status")
    conditions = status.get("conditions")
    checks = tuple(
        CheckStatus(str(c.get("name") or ""), str(c.get("state") or ""), str(c.get("message") or ""))
        for c in status.get("admissionChecks") or [] if isinstance(c, Mapping)
    )
    flavors: dict[str, Mapping[str, str]] = {}
    counts: dict[str, int] = {}
    admission = mapping(status, "admission", "status.admission")
    for index, assignment in enumerate(sequence(admission, "podSetAssignments", "status.admission.podSetAssignments")):
        path = f"status.admission.podSetAssignments[{index}]"
        if not isinstance(assignment, Mapping):
            raise WorkloadError(f"must be a mapping, got {type_name(assignment)}", path=path)
        podset = str(assignment.get("name") or "")
        flavors[podset] = {str(k): str(v) for k, v in mapping(assignment, "flavors", f"{path}.flavors").items()}
        admitted = optional_int(assignment, "count", f"{path}.count")
        if admitted is not None:
            counts[podset] = admitted
    reserved = _condition(conditions, "QuotaReserved")
    reserved_at = None
    if reserved is not None and reserved.get("status") == "True":
        reserved_at = str(reserved.get("lastTransitionTime") or "")
    spec = mapping(obj, "spec", "spec")
    return Workload(
        namespace=namespace,
        name=name,
        uid=uid,
        owner=_owner(meta),
        obj=obj,
        checks=checks,
        flavors=flavors,
        counts=counts,
        quota_reserved_at=reserved_at,
        finished=_true(conditions, "Finished"),
        evicted=_true(conditions, "Evicted"),
        active=spec.get("active") is not False,
    )


def with_node_labels(template: Template, labels: Mapping[str, str]) -> Template:
    """``template`` as Kueue starts it: the flavour's node labels added to its nodeSelector (Kueue refuses a
    flavour whose labels contradict the template's selector, so adding is all it does)."""
    if not labels:
        return template
    selector = dict(mapping(template.spec, "nodeSelector", f"{template.path}.nodeSelector"))
    selector.update(labels)
    spec = {**template.spec, "nodeSelector": selector}
    return Template(template.role, template.pods, spec, template.path, template.resources, template.annotations)


def podset_shape(workload: Workload, node_labels: Mapping[str, Mapping[str, str]]) -> Shape:
    """The Workload's pods: every PodSet × the count Kueue admitted (its own count without partial admission),
    each with the node labels of its assigned flavours (``node_labels``: flavour name → nodeLabels; a flavour
    that is not found adds nothing, and the model is then whatever the template alone allows — never less)."""
    spec = mapping(workload.obj, "spec", "spec", required=True)
    templates: list[Template] = []
    for index, podset in enumerate(sequence(spec, "podSets", "spec.podSets")):
        path = f"spec.podSets[{index}]"
        if not isinstance(podset, Mapping):
            raise WorkloadError(f"must be a mapping, got {type_name(podset)}", path=path)
        role = str(podset.get("name") or f"podSets[{index}]")
        pods = integer(podset.get("count", 1), f"{path}.count")
        pods = workload.counts.get(role, pods)
        labels: dict[str, str] = {}
        for flavor in sorted(set(workload.flavors.get(role, {}).values())):
            labels.update(node_labels.get(flavor, {}))
        templates.append(with_node_labels(pod_template(podset, role, pods, path), labels))
    seconds = optional_int(spec, "maximumExecutionTimeSeconds", "spec.maximumExecutionTimeSeconds", minimum=1,
                           maximum=2**31 - 1)
    return Shape(tuple(templates), float(seconds) if seconds else None)


def owner_demand(workload: Workload, node_labels: Mapping[str, Mapping[str, str]],
                 ctx: ExtractContext) -> Demand | None:
    """The GPU demand of the Workload's pods, named after its owner (messages and the ledger speak of the Job)."""
    owner = workload.owner
    named = {
        "apiVersion": owner.api_version if owner else API_VERSION,
        "kind": owner.kind if owner else "Workload",
        "metadata": {"namespace": workload.namespace, "name": owner.name if owner else workload.name},
    }
    return shape_demand(podset_shape(workload, node_labels), named, ctx)
