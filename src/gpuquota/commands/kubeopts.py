"""The command-line options every Kubernetes-facing command shares (API server access and log level), in one place.

``--kubeconfig`` and ``--context`` work as in kubectl (``$KUBECONFIG`` honoured; in a pod neither is needed);
``--api-server`` with ``--token-file``/``--ca-file`` names a server directly. The official ``kubernetes`` package
reads whichever applies (``gpuquota.kube.config``). A command declares its parameters with these ``Annotated``
types, so the flags, their help and their defaults are the same in ``agent``, ``reconcile`` and whatever adopts
them next; ``KubeOptions.connect`` builds the client and ``setup_logging`` checks ``--log-level``. The pod's own
namespace and name (for Leases, events) live here too.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer

from gpuquota.errors import UserError

if TYPE_CHECKING:
    from gpuquota.kube.client import KubeClient
    from gpuquota.kube.config import KubeSource

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
SERVICE_ACCOUNT_NAMESPACE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

KubeconfigOption = Annotated[
    Path | None,
    typer.Option(help="kubeconfig file (default: $KUBECONFIG, else in-cluster in a pod, else ~/.kube/config)."),
]
ContextOption = Annotated[str | None, typer.Option(help="Context of the kubeconfig to use (default: its current).")]
ApiServerOption = Annotated[
    str | None, typer.Option(help="API server URL, instead of a kubeconfig (with --token-file, --ca-file).")
]
TokenFileOption = Annotated[Path | None, typer.Option(help="Bearer token file, with --api-server.")]
CaFileOption = Annotated[Path | None, typer.Option(help="CA bundle of the API server, with --api-server.")]
InsecureOption = Annotated[
    bool, typer.Option("--insecure-skip-tls-verify", help="Do not verify the API server's certificate (dev only).")
]
LogLevelOption = Annotated[str, typer.Option(help="debug, info, warning or error.")]


@dataclass(frozen=True, slots=True)
class KubeOptions:
    """Where the API server is and how to trust it: explicit flags, a kubeconfig, or the pod's service account."""

    api_server: str | None = None
    token_file: Path | None = None
    ca_file: Path | None = None
    insecure: bool = False
    kubeconfig: Path | None = None
    context: str | None = None

    @property
    def source(self) -> KubeSource:
        from gpuquota.kube.config import KubeSource  # noqa: PLC0415 - keep `gpuquota --help` fast

        return KubeSource(self.kubeconfig, self.context, self.api_server, self.token_file, self.ca_file, self.insecure)

    @property
    def in_cluster(self) -> bool:
        """No flag and no ``$KUBECONFIG`` names a cluster: the pod's own (or ``~/.kube/config`` outside one)."""
        return not self.source.explicit()

    def connect(self) -> KubeClient:
        from gpuquota.kube.client import KubeClient  # noqa: PLC0415 - keep `gpuquota --help` fast

        return KubeClient.from_source(self.source)


def log_level_name(log_level: str) -> str:
    """``--log-level`` in lower case; a level outside ``LOG_LEVELS`` is a ``UserError``."""
    name = log_level.lower()
    if name not in LOG_LEVELS:
        raise UserError(f"--log-level must be debug, info, warning or error, not {log_level!r}")
    return name


def setup_logging(log_level: str) -> None:
    """Log to stderr at ``log_level``; a level outside ``LOG_LEVELS`` is a ``UserError``."""
    level = getattr(logging, log_level_name(log_level).upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def pod_namespace(environ: dict[str, str] | None = None, sa_file: Path = SERVICE_ACCOUNT_NAMESPACE) -> str | None:
    """The namespace this pod runs in: ``$POD_NAMESPACE`` (downward API), else the service account's namespace
    file, else ``None`` (not in a pod)."""
    env = os.environ if environ is None else environ
    if env.get("POD_NAMESPACE"):
        return env["POD_NAMESPACE"]
    try:
        return sa_file.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def pod_identity(environ: dict[str, str] | None = None) -> str:
    """A name unique among the candidates for a Lease: ``$POD_NAME`` (downward API), else the host name (which
    is the pod name in Kubernetes unless the pod sets ``hostname``)."""
    env = os.environ if environ is None else environ
    return env.get("POD_NAME") or socket.gethostname()
