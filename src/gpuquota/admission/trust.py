"""Whose object is this: which requests may claim an admitted owner, and whether the claim holds.

Workload controllers create pods (and child Jobs) that come back through the webhook; their GPUs were reserved when
the workload was admitted, so they pass without a second reservation — but a tenant writes its own pods and can
forge an owner reference or a label. So only a trusted controller's request may claim an owner (``controller_made``),
its claims are read from what that controller sets (``owners.candidate_owners``), and a claim holds only when the
ledger holds an active reservation for the owner — for a LeaderWorkerSet claim resting on a StatefulSet, also when
that StatefulSet's owner chain, read back from the API server, leads to the LWS (``lws.LwsStatefulSets``). A GPU pod
rides only within its owner's GPU budget (``Ledger.ride``): a pod beyond it is judged and charged on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from gpuquota.admission.lws import LwsStatefulSets
from gpuquota.admission.owners import OwnerCache, OwnerRef, candidate_owners
from gpuquota.admission.review import AdmissionRequest
from gpuquota.ledger import Ledger, RideStatus, WorkloadRef
from gpuquota.workloads import SUPPORTED_KINDS
from gpuquota.workloads.registry import BY_KEY

# Who may make an object "part of an admitted workload": the controller manager, under its own identity or
# (--use-service-account-credentials) the service accounts of the built-in controllers that make the pods and Jobs
# gpuquota reviews, and the operators named with ``--trusted-controller``. Nobody else — not every kube-system
# account, not a service account because its namespace belongs to no tenant.
CONTROLLER_MANAGER: Final = "system:kube-controller-manager"
BUILTIN_CONTROLLERS: Final = frozenset({
    CONTROLLER_MANAGER,
    *(f"system:serviceaccount:kube-system:{name}" for name in (
        "job-controller", "cronjob-controller", "replicaset-controller", "statefulset-controller",
        "daemon-set-controller",
    )),
})

RIDES: Final = (RideStatus.RIDING, RideStatus.DUPLICATE)  # the pod passes on its owner's reservation


@dataclass(frozen=True, slots=True)
class Claims:
    """A controller's object's owner claims, screened without I/O. ``owned``: a claim the cache already confirmed;
    ``unchecked``: claims the ledger must still confirm; ``reads``: one of them needs the API server."""

    owned: OwnerRef | None = None
    unchecked: tuple[OwnerRef, ...] = ()
    reads: bool = False


NO_CLAIMS: Final = Claims()


class Trust:
    """Owner claims and their verification, with the caches that keep a burst of one workload's pods cheap."""

    def __init__(self, *, owners: OwnerCache, lws: LwsStatefulSets, can_read_cluster: bool,
                 trusted_controllers: Iterable[str] = ()) -> None:
        self.owners = owners
        self.lws = lws
        self.can_read_cluster = can_read_cluster
        self.trusted = BUILTIN_CONTROLLERS | frozenset(trusted_controllers)

    def controller_made(self, request: AdmissionRequest) -> bool:
        """Whether the request comes from a workload controller, whose owner claims may be believed.

        Trust is explicit: the built-in controllers (``BUILTIN_CONTROLLERS``) and the ``--trusted-controller`` names
        (the chart's ``webhook.trustedControllers``: the Kubeflow, JobSet, KubeRay, LWS operators). A service account
        is never trusted for where it lives — ``default:default`` of a namespace no tenant owns would otherwise ride
        on any tenant's reservation. Everyone else's objects are judged on their own.
        """
        return request.user_info.username in self.trusted

    def claims(self, request: AdmissionRequest, obj: Mapping[str, Any]) -> Claims:
        """The owners a controller's object may belong to, screened through the caches. Only owners of kinds gpuquota
        reserves for can hold a reservation (a ReplicaSet never does); a tenant's own request claims nothing (its
        claims are never looked up, nor their cached answers)."""
        if not self.controller_made(request):
            return NO_CLAIMS
        namespace = request.namespace
        unchecked: list[OwnerRef] = []
        reads = False
        for ref in candidate_owners(obj):
            if (ref.group, ref.kind) not in SUPPORTED_KINDS:
                continue
            if ref.via is not None and not self.lws.cached(namespace, ref):
                # An LWS claim through a StatefulSet: believed only once that StatefulSet's owner chain is read back
                # (admission.lws); without cluster access never — the pod is judged on its own.
                if self.can_read_cluster and self.owners.get(namespace, ref) is not False:
                    unchecked.append(ref)
                    reads = True
                continue
            if not BY_KEY[(ref.group, ref.kind)].reserves:
                continue  # holds no reservation (a CronJob: each run, a Job, is judged and charged on its own)
            cached = self.owners.get(namespace, ref)
            if cached and request.kind.kind != "Pod":
                return Claims(owned=ref)
            if cached is not False:
                unchecked.append(ref)  # a pod rides only within its owner's GPU budget: the ledger decides
        return Claims(unchecked=tuple(unchecked), reads=reads) if unchecked else NO_CLAIMS

    def verified_owner(self, namespace: str, refs: Iterable[OwnerRef], ledger: Ledger,
                       ride: Callable[[WorkloadRef, str], RideStatus] | None = None) -> OwnerRef | None:
        """The first claimed owner the ledger holds an active reservation for (answers cached either way) — for an LWS
        claim through a StatefulSet, also that the StatefulSet belongs to that LWS (read from the API server).

        With ``ride`` (a GPU pod, not a dry run: given the owner and its claimed uid, it records the pod on the
        owner's reservation if it fits in that owner's GPU budget beside the pods already riding there,
        ``Ledger.ride``) the claim holds only when the pod rides: beyond the budget, ``None`` — the pod is judged on
        its own."""
        for ref in refs:
            workload = WorkloadRef(namespace, ref.kind, ref.name, ref.group)
            if ride is not None and ref.via is None:  # the ride itself tells whether the owner holds a reservation
                status = ride(workload, ref.uid)
                self.owners.put(namespace, ref, status is not RideStatus.NO_OWNER)
                if status is RideStatus.NO_OWNER:
                    continue
                return ref if status in RIDES else None
            active = ledger.find_active(workload) is not None
            self.owners.put(namespace, ref, active)
            if active and (ref.via is None or self.lws.verify(namespace, ref)):
                if ride is None:
                    return ref
                return ref if ride(workload, ref.uid) in RIDES else None
        return None

    def forget(self, workload: WorkloadRef) -> None:
        """The workload is gone (this replica saw its DELETE): its pods no longer ride on it."""
        self.owners.forget(workload.namespace, workload.kind, workload.name)
