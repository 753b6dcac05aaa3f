"""What kind of request a review is — the first step, before anything is decoded beyond the envelope."""

from __future__ import annotations

from enum import Enum
from typing import Final

import msgspec

from gpuquota.admission.review import AdmissionRequest, GroupVersionKind, resource_of
from gpuquota.reconcile.resources import RESOURCES
from gpuquota.workloads import SCALE_SUBRESOURCES, SUPPORTED_KINDS
from gpuquota.workloads.kind import KindKey

SCALE_PARENTS: Final = {(RESOURCES[key].group, RESOURCES[key].plural): key for key in SCALE_SUBRESOURCES}
"""(apiGroup, plural) of a ``<resource>/scale`` request → the parent kind whose replicas it sets."""


class Route(Enum):
    SKIP = "skip"  # a kind gpuquota does not read, CONNECT, a dry-run DELETE
    RELEASE = "release"  # DELETE of a workload: release its reservations
    SCALE = "scale"  # UPDATE of <resource>/scale: judged as an UPDATE of the parent
    OBJECT = "object"  # CREATE/UPDATE of a workload kind


def route(request: AdmissionRequest) -> Route:
    key: KindKey = (request.kind.group, request.kind.kind)
    if key not in SUPPORTED_KINDS or request.operation == "CONNECT":
        if request.sub_resource == "scale" and request.operation == "UPDATE":
            return Route.SCALE
        return Route.SKIP
    if request.operation == "DELETE":
        return Route.SKIP if request.dry_run else Route.RELEASE
    return Route.OBJECT


def scale_parent(request: AdmissionRequest) -> AdmissionRequest | None:
    """A ``/scale`` request as a request on its parent (kind ``LeaderWorkerSet``, not ``Scale``: so it is judged,
    recorded and counted); ``None`` for a kind without a scale subresource gpuquota reads. Raises ``ReviewError``
    when ``request.resource`` is unreadable."""
    resource = resource_of(request)
    parent = SCALE_PARENTS.get((resource.group, resource.resource))
    if parent is None:
        return None
    return msgspec.structs.replace(request, kind=GroupVersionKind(parent[0], resource.version, parent[1]))
