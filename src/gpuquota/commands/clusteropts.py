"""``--cluster-name``: the option every command that writes the ledger or labels metrics shares (serve, reconcile,
agent, report, and whatever joins them), with its check and the cluster identity it turns into.

Declare a parameter ``cluster_name: ClusterNameOption = None``; ``cluster_name_of`` checks it and
``cluster_identity`` adds the cluster's kube-system namespace uid for a process that claims the name on the ledger
(both in ``gpuquota.clusters``, re-exported here). ``$GPUQUOTA_CLUSTER_NAME`` stands in for the flag.
"""

from __future__ import annotations

from typing import Annotated

import typer

from gpuquota.clusters import DEFAULT_CLUSTER, cluster_identity, cluster_name_of, kube_system_uid

ClusterNameOption = Annotated[
    str | None,
    typer.Option(
        envvar="GPUQUOTA_CLUSTER_NAME",
        show_envvar=False,
        metavar="NAME",
        help=f"This cluster's name when several clusters share one ledger (default: {DEFAULT_CLUSTER}).",
    ),
]


__all__ = ["ClusterNameOption", "cluster_identity", "cluster_name_of", "kube_system_uid"]
