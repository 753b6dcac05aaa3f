"""``gpuquota reconcile``: settle reservations against what runs in the cluster (see docs/ledger.md).

In a pod it campaigns for a Lease first (``--leader-elect``, the default there), so of several replicas only one
reconciles while the others wait to take over; ``/metrics`` is served by every replica (port ``--metrics-port``).

Exit status: 0 after a clean stop (SIGTERM/SIGINT) or a successful ``--once``; 1 when ``--once`` failed;
2 on bad options, an unusable ledger URL or missing credentials.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from gpuquota.commands.kubeopts import (
    ApiServerOption,
    CaFileOption,
    InsecureOption,
    KubeOptions,
    LogLevelOption,
    TokenFileOption,
    pod_identity,
    pod_namespace,
    setup_logging,
)
from gpuquota.errors import UserError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from gpuquota.kube import ElectionTiming
    from gpuquota.reconcile import Reconciler, ReconcilerMetrics

DEFAULT_LEDGER = "sqlite:///var/ledger.sqlite3"
DEFAULT_LEASE = "gpuquota-reconciler"
DEFAULT_METRICS_PORT = 9102
log = logging.getLogger("gpuquota.reconcile")


def reconcile(  # noqa: PLR0917 - typer maps each parameter to an option
    ledger: Annotated[
        str | None,
        typer.Option(help=f"sqlite:///path or postgresql://… (default: $GPUQUOTA_LEDGER or {DEFAULT_LEDGER})."),
    ] = None,
    grace: Annotated[
        float, typer.Option(help="Seconds after admission before a workload never created is expired.")
    ] = 300.0,
    interval: Annotated[float, typer.Option(help="Seconds between passes.")] = 15.0,
    resync: Annotated[float, typer.Option(help="Seconds between full relists of each followed kind.")] = 300.0,
    once: Annotated[
        bool, typer.Option("--once", help="Run one pass, print what changed, exit (no leader election).")
    ] = False,
    leader_elect: Annotated[
        bool | None,
        typer.Option(
            "--leader-elect/--no-leader-elect",
            help="Reconcile only while holding a Lease (default: on in a pod, off with --api-server).",
        ),
    ] = None,
    lease_name: Annotated[str, typer.Option(help="Name of the Lease the replicas compete for.")] = DEFAULT_LEASE,
    lease_namespace: Annotated[
        str | None,
        typer.Option(help="Namespace of the Lease (default: $POD_NAMESPACE, else the service account's namespace)."),
    ] = None,
    lease_duration: Annotated[
        float, typer.Option(help="Seconds a leader's claim lasts without renewal (followers wait this long).")
    ] = 15.0,
    renew_deadline: Annotated[
        float, typer.Option(help="Seconds a leader keeps trying to renew before it steps down.")
    ] = 10.0,
    retry_period: Annotated[float, typer.Option(help="Seconds between tries to acquire or renew the Lease.")] = 2.0,
    metrics_port: Annotated[
        int, typer.Option(help="Port of /metrics (0: any free port; -1: no metrics endpoint).")
    ] = DEFAULT_METRICS_PORT,
    metrics_host: Annotated[str, typer.Option(help="Address of /metrics.")] = "0.0.0.0",  # noqa: S104 - pod
    api_server: ApiServerOption = None,
    token_file: TokenFileOption = None,
    ca_file: CaFileOption = None,
    insecure_skip_tls_verify: InsecureOption = False,
    log_level: LogLevelOption = "info",
) -> None:
    """Follow admitted workloads and move their reservations: running, settled, released, expired."""
    from gpuquota.kube import ElectionTiming  # noqa: PLC0415 - keep `gpuquota --help` fast
    from gpuquota.ledger import LedgerError, open_ledger  # noqa: PLC0415
    from gpuquota.reconcile import Reconciler, ReconcilerMetrics  # noqa: PLC0415

    if grace < 0 or interval <= 0 or resync <= 0:
        raise UserError("--grace must be ≥ 0, --interval and --resync positive")
    if not -1 <= metrics_port < 65536:
        raise UserError(f"--metrics-port must be between -1 and 65535, not {metrics_port}")
    setup_logging(log_level)
    kube_options = KubeOptions(api_server, token_file, ca_file, insecure_skip_tls_verify)
    election: Election | None = None
    if not once and (leader_elect if leader_elect is not None else kube_options.in_cluster):
        try:
            timing = ElectionTiming(lease_duration, renew_deadline, retry_period)
        except ValueError as exc:
            raise UserError(f"{exc} (--retry-period, --renew-deadline, --lease-duration)") from None
        namespace = lease_namespace or pod_namespace()
        if not namespace:
            raise UserError("leader election needs the Lease's namespace: pass --lease-namespace or set POD_NAMESPACE")
        election = Election(lease_name, namespace, timing)

    url = ledger or os.environ.get("GPUQUOTA_LEDGER") or DEFAULT_LEDGER
    try:
        opened = open_ledger(url, pool_size=2)
    except LedgerError as exc:
        raise UserError(str(exc)) from None
    try:
        kube = kube_options.connect()
    except UserError:
        opened.close()
        raise
    metrics = ReconcilerMetrics()
    reconciler = Reconciler(kube, opened, grace=timedelta(seconds=grace), resync_s=resync, metrics=metrics)
    try:
        if once:
            _once(reconciler)
        else:
            server = _serve_metrics(metrics, metrics_host, metrics_port)
            try:
                _run(reconciler, metrics, election, interval)
            finally:
                if server is not None:
                    server.shutdown()
                    server.server_close()
    finally:
        opened.close()
        kube.close()


@dataclass(frozen=True, slots=True)
class Election:
    lease_name: str
    namespace: str
    timing: ElectionTiming


def _run(reconciler: Reconciler, metrics: ReconcilerMetrics, election: Election | None, interval: float) -> None:
    """Until SIGTERM/SIGINT: reconcile, or — with an election — campaign and reconcile only while leading."""
    from gpuquota.kube import LeaderElector  # noqa: PLC0415

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if election is None:
        metrics.set_leader(True)
        reconciler.run(stop, interval_s=interval)
        return
    elector = LeaderElector(
        reconciler.kube,
        election.lease_name,
        election.namespace,
        pod_identity(),
        election.timing,
        on_change=metrics.set_leader,
    )
    metrics.set_leader(False)
    log.info("campaigning for lease %s/%s as %s", election.namespace, election.lease_name, elector.identity)
    elector.run(stop, lambda term: reconciler.run(term, interval_s=interval))


def _once(reconciler: Reconciler) -> None:
    from gpuquota.ledger import LedgerError  # noqa: PLC0415

    try:
        result = reconciler.reconcile_once()
    except LedgerError as exc:
        print(f"gpuquota: reconcile failed: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    for t in result.transitions:
        print(f"{t.workload}: {t.to} ({t.reason}) reservations {list(t.reservation_ids)}")
    print(f"{sum(result.applied.values())} reservation(s) changed, {result.errors} error(s)")
    if result.errors:
        raise typer.Exit(1)


def _serve_metrics(metrics: ReconcilerMetrics, host: str, port: int) -> WSGIServer | None:
    """prometheus_client's threaded exposition server on ``host:port`` (any path answers with the metrics)."""
    if port < 0:
        return None
    from prometheus_client import start_http_server  # noqa: PLC0415

    try:
        server, _ = start_http_server(port, host, registry=metrics.registry)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    log.info("serving /metrics on %s:%d", host, server.server_address[1])
    return server


def register(app: typer.Typer) -> None:
    app.command("reconcile")(reconcile)
