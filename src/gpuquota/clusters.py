"""Which cluster a process speaks for, when several clusters share one ledger (docs/ledger.md, "Many clusters").

A cluster has a *name* (``--cluster-name``, chosen by the operator, recorded on every reservation and decision)
and an *identity* (the uid of its ``kube-system`` namespace, made by the API server when the cluster was created
and never reused). The ledger stores the identity under the name on a process's first start and checks it on
every start after, so two clusters configured with the same name are told apart instead of settling each other's
reservations. The decision is ``claim_problem``: pure, so every case is a unit test.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from gpuquota.errors import UserError

if TYPE_CHECKING:
    from gpuquota.kube.api import KubeApi

DEFAULT_CLUSTER: Final = "default"
"""The name of a cluster whose processes pass no ``--cluster-name``: every single-cluster install, and every
record a ledger held before clusters had names (the ledger migration that added them)."""

KUBE_SYSTEM: Final = "/api/v1/namespaces/kube-system"
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def check_cluster_name(name: str) -> str:
    """A DNS label (lower-case letters, digits, dashes; ≤ 63): it is a metric label value and part of ledger
    counter subjects (``acme@eu-1``), so it may hold neither ``@`` nor ``~``. Raises ``ValueError``."""
    if not _NAME.match(name):
        raise ValueError(
            f"cluster name {name!r} must be a DNS label: lower-case letters, digits and '-', starting and ending "
            "with a letter or digit, at most 63 characters (e.g. eu-west-1)"
        )
    return name


@dataclass(frozen=True, slots=True)
class ClusterIdentity:
    """What a process claims on the ledger. ``explicit``: the name was given (not the default). ``uid``: the
    cluster's kube-system namespace uid, ``None`` when the process has no access to a cluster."""

    name: str = DEFAULT_CLUSTER
    explicit: bool = False
    uid: str | None = None


def claim_problem(claim: ClusterIdentity, registered: Mapping[str, str | None]) -> str | None:
    """Why ``claim`` may not write to a ledger whose clusters are ``registered`` (name → kube-system uid, ``None``
    where not yet known), or ``None`` when it may. The ledger then records the claim's uid under its name."""
    others = sorted(name for name in registered if name != claim.name)
    if not claim.explicit and others:
        return (
            f"this ledger holds the records of other clusters ({', '.join(others)}): a process sharing it must name "
            f"its cluster with --cluster-name (chart value clusterName; an existing single cluster is "
            f"--cluster-name {DEFAULT_CLUSTER})"
        )
    if claim.name not in registered:
        return None
    known = registered[claim.name]
    if known is None:
        return None
    if claim.uid is None:
        return (
            f"cluster {claim.name!r} is registered in this ledger with kube-system namespace uid {known}, and this "
            "process has no cluster access to prove it is that cluster: give it access to the API server"
        )
    if claim.uid != known:
        return (
            f"cluster name {claim.name!r} already belongs to another cluster in this ledger (kube-system namespace "
            f"uid {known}; this cluster's is {claim.uid}): give this cluster a --cluster-name of its own"
        )
    return None


def cluster_name_of(value: str | None) -> str:
    """The checked name (``default`` when none is given); a bad one is a ``UserError``."""
    if value is None:
        return DEFAULT_CLUSTER
    try:
        return check_cluster_name(value)
    except ValueError as exc:
        raise UserError(f"--cluster-name: {exc}") from None


def kube_system_uid(kube: KubeApi) -> str:
    """The uid of the cluster's kube-system namespace: made by the API server with the cluster, never reused, and
    readable by anyone allowed to get that one namespace (the chart grants it)."""
    from gpuquota.kube.errors import KubeError  # noqa: PLC0415 - keep `gpuquota --help` fast

    try:
        namespace = kube.get(KUBE_SYSTEM)
    except KubeError as exc:
        raise UserError(f"cannot read the kube-system namespace to identify this cluster: {exc}") from None
    metadata = namespace.get("metadata") if isinstance(namespace, dict) else None
    uid = metadata.get("uid") if isinstance(metadata, dict) else None
    if not isinstance(uid, str) or not uid:
        raise UserError("the cluster has no kube-system namespace with a uid: cannot identify it on the ledger")
    return uid


def cluster_identity(value: str | None, kube: KubeApi | None) -> ClusterIdentity:
    """What this process claims on the ledger: its name, whether it was given, and (with cluster access) the
    cluster's kube-system uid."""
    name = cluster_name_of(value)
    return ClusterIdentity(name, value is not None, None if kube is None else kube_system_uid(kube))


__all__ = [
    "DEFAULT_CLUSTER",
    "ClusterIdentity",
    "check_cluster_name",
    "claim_problem",
    "cluster_identity",
    "cluster_name_of",
    "kube_system_uid",
]
