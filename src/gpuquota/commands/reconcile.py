"""``gpuquota reconcile``: settle reservations against what runs in the cluster (see docs/ledger.md).

In a pod it campaigns for a Lease first (``--leader-elect``, the default there), so of several replicas only one
reconciles while the others wait to take over. Every replica serves, on ``--metrics-port``, ``/metrics``, ``/healthz``
(503 when its work loop is stuck) and ``/readyz`` (503 when it cannot use the ledger); see
``gpuquota.reconcile.health`` for why those are the tests.

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

from gpuquota.commands.clusteropts import ClusterNameOption, cluster_identity, cluster_name_of
from gpuquota.commands.kubeopts import (
    ApiServerOption,
    CaFileOption,
    ContextOption,
    InsecureOption,
    KubeconfigOption,
    KubeOptions,
    LogLevelOption,
    TokenFileOption,
    pod_identity,
    pod_namespace,
    setup_logging,
)
from gpuquota.errors import UserError

if TYPE_CHECKING:
    from collections.abc import Callable

    from prometheus_client import CollectorRegistry

    from gpuquota.kube import ElectionTiming, KubeApi, KubeClient
    from gpuquota.ledger.store import SqlLedger
    from gpuquota.policy import Policy
    from gpuquota.probe_http import ProbeServer
    from gpuquota.reconcile import Reconciler, ReconcilerMetrics
    from gpuquota.reconcile.health import ReconcilerHealth

DEFAULT_LEDGER = "sqlite:///var/ledger.sqlite3"
DEFAULT_LEASE = "gpuquota-reconciler"
DEFAULT_METRICS_PORT = 9102

# The probe and metrics listener of the controllers (reconcile, kueue-check): the same flags, help and check in both.
ProbePortOption = Annotated[
    int, typer.Option("--metrics-port",
                      help="Port of /metrics, /healthz and /readyz (0: any free port; -1: none of them).")
]
ProbeHostOption = Annotated[str, typer.Option("--metrics-host", help="Address of /metrics.")]


def check_probe_port(port: int) -> None:
    if not -1 <= port < 65536:
        raise UserError(f"--metrics-port must be between -1 and 65535, not {port}")
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
    policy: Annotated[
        str | None,
        typer.Option(
            help="Bundled profile name or a profile file (reloaded on change): its overrun.action says whether a "
            "workload past its declared runtime is stopped (default: none, they are reported only)."
        ),
    ] = None,
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
    metrics_port: ProbePortOption = DEFAULT_METRICS_PORT,
    metrics_host: ProbeHostOption = "0.0.0.0",  # noqa: S104 - in a pod
    stuck_after: Annotated[
        float | None,
        typer.Option(
            help="Seconds without a turn of the work loop after which /healthz fails (default: 4 intervals, ≥ 120)."
        ),
    ] = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    api_server: ApiServerOption = None,
    token_file: TokenFileOption = None,
    ca_file: CaFileOption = None,
    insecure_skip_tls_verify: InsecureOption = False,
    log_level: LogLevelOption = "info",
    cluster_name: ClusterNameOption = None,
) -> None:
    """Follow admitted workloads and move their reservations: running, settled, released, expired."""
    from gpuquota.kube.health import WatchHealth  # noqa: PLC0415
    from gpuquota.reconcile import Reconciler, ReconcilerMetrics  # noqa: PLC0415
    from gpuquota.reconcile.health import Heartbeat, ReconcilerHealth, stuck_after_default  # noqa: PLC0415

    _check_numbers(grace, interval, resync, metrics_port, stuck_after)
    cluster = cluster_name_of(cluster_name)
    setup_logging(log_level)
    kube_options = KubeOptions(api_server, token_file, ca_file, insecure_skip_tls_verify, kubeconfig, context)
    election = None if once else election_of(leader_elect, kube_options, lease_name, lease_namespace,
                                             (lease_duration, renew_deadline, retry_period))

    current_policy = _policy(policy)
    opened, kube = ledger_and_kube(ledger, kube_options, cluster_name)
    metrics = ReconcilerMetrics(cluster=cluster_name and cluster)
    watches = WatchHealth()
    metrics.registry.register(watches.collector())
    reconciler = Reconciler(kube, opened, grace=timedelta(seconds=grace), resync_s=resync, metrics=metrics,
                            health=watches, policy=current_policy)
    try:
        if once:
            _once(reconciler)
        else:
            health = ReconcilerHealth(
                Heartbeat(), opened.ping, stuck_after_s=stuck_after or stuck_after_default(interval),
                kube_problems=watches.problems,
            )
            server = _serve(metrics, health, metrics_host, metrics_port)
            try:
                _run(reconciler, metrics, health, election, interval)
            finally:
                if server is not None:
                    server.stop()
    finally:
        opened.close()
        kube.close()


def _policy(ref: str | None) -> Callable[[], Policy] | None:
    """The profile in force, re-read when its file changes (a bad new file is rejected with a log line, the last
    good one stays); a bad profile at start is a ``UserError``."""
    if ref is None:
        return None
    from gpuquota.admission.live import LiveConfig  # noqa: PLC0415

    live = LiveConfig(ref, None)

    def current() -> Policy:
        live.check()
        return live.current.policy

    return current


def ledger_and_kube(ledger: str | None, kube_options: KubeOptions,
                    cluster_name: str | None) -> tuple[SqlLedger, KubeClient]:
    """The ledger (``--ledger``, else $GPUQUOTA_LEDGER, else the default file), claimed for this cluster (its name
    and kube-system uid), and the cluster's client; or a ``UserError`` with nothing left open. The handle sees this
    cluster's reservations only; the Lease is in this cluster too, so each cluster has its own leader."""
    from gpuquota.ledger import LedgerError, open_ledger  # noqa: PLC0415
    from gpuquota.ledger.open import ledger_backend  # noqa: PLC0415

    url = ledger or os.environ.get("GPUQUOTA_LEDGER") or DEFAULT_LEDGER
    try:
        ledger_backend(url)  # a bad URL is told before any connection is tried
    except LedgerError as exc:
        raise UserError(str(exc)) from None
    kube = kube_options.connect()
    try:
        return open_ledger(url, pool_size=2, identity=cluster_identity(cluster_name, kube)), kube
    except (LedgerError, UserError) as exc:
        kube.close()
        raise UserError(str(exc)) from None


def _check_numbers(grace: float, interval: float, resync: float, metrics_port: int, stuck_after: float | None) -> None:
    if grace < 0 or interval <= 0 or resync <= 0:
        raise UserError("--grace must be ≥ 0, --interval and --resync positive")
    if stuck_after is not None and stuck_after <= interval:
        raise UserError(f"--stuck-after must be longer than --interval ({interval:g} s), not {stuck_after:g}")
    check_probe_port(metrics_port)


@dataclass(frozen=True, slots=True)
class Election:
    lease_name: str
    namespace: str
    timing: ElectionTiming


def election_of(leader_elect: bool | None, kube_options: KubeOptions, lease_name: str, lease_namespace: str | None,
                timing: tuple[float, float, float]) -> Election | None:
    """The election a command campaigns in: by default in a pod, not with ``--api-server``; ``timing`` is
    (lease duration, renew deadline, retry period) in seconds."""
    from gpuquota.kube import ElectionTiming  # noqa: PLC0415

    if not (leader_elect if leader_elect is not None else kube_options.in_cluster):
        return None
    try:
        checked = ElectionTiming(*timing)
    except ValueError as exc:
        raise UserError(f"{exc} (--retry-period, --renew-deadline, --lease-duration)") from None
    namespace = lease_namespace or pod_namespace()
    if not namespace:
        raise UserError("leader election needs the Lease's namespace: pass --lease-namespace or set POD_NAMESPACE")
    return Election(lease_name, namespace, checked)


def _run(
    reconciler: Reconciler,
    metrics: ReconcilerMetrics,
    health: ReconcilerHealth,
    election: Election | None,
    interval: float,
) -> None:
    """Until SIGTERM/SIGINT: reconcile, or — with an election — campaign and reconcile only while leading."""
    lead(reconciler.kube, election, metrics.set_leader, health,
         lambda term, beat: reconciler.run(term, interval_s=interval, heartbeat=beat))


def lead(
    kube: KubeApi,
    election: Election | None,
    set_metric: Callable[[bool], None],
    health: ReconcilerHealth,
    work: Callable[[threading.Event, Callable[[], None]], None],
) -> None:
    """Until SIGTERM/SIGINT: ``work(stop, beat)``, or — with an election — campaign and work only while leading.
    Whichever loop this replica is in beats ``health.heartbeat`` on each turn. Shared by every leader-elected
    command (``reconcile``, ``kueue-check``)."""
    from gpuquota.kube import LeaderElector  # noqa: PLC0415

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    beat = health.heartbeat.beat

    def set_leader(leader: bool) -> None:
        set_metric(leader)
        health.set_leader(leader)

    if election is None:
        set_leader(True)
        work(stop, beat)
        return
    elector = LeaderElector(
        kube,
        election.lease_name,
        election.namespace,
        pod_identity(),
        election.timing,
        on_change=set_leader,
    )
    set_leader(False)
    log.info("campaigning for lease %s/%s as %s", election.namespace, election.lease_name, elector.identity)
    elector.run(stop, lambda term: work(term, beat), on_follow=beat)


def _once(reconciler: Reconciler) -> None:
    from gpuquota.ledger import LedgerError  # noqa: PLC0415

    try:
        result = reconciler.reconcile_once()
    except LedgerError as exc:
        print(f"gpuquota: reconcile failed: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    for t in result.transitions:
        print(f"{t.workload}: {t.to} ({t.reason}) reservations {list(t.reservation_ids)}")
    for how, count in sorted(result.stopped.items()):
        print(f"{count} workload(s) past their declared runtime stopped ({how})")
    print(f"{sum(result.applied.values())} reservation(s) changed, {result.errors} error(s)")
    if result.errors:
        raise typer.Exit(1)


def _serve(metrics: ReconcilerMetrics, health: ReconcilerHealth, host: str, port: int) -> ProbeServer | None:
    return serve_probes(metrics.registry, health, host, port, "reconciler")


def serve_probes(registry: CollectorRegistry, health: ReconcilerHealth, host: str, port: int,
                 name: str) -> ProbeServer | None:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` (the probe server the node agent uses too)."""
    if port < 0:
        return None
    from gpuquota.probe_http import ProbeServer  # noqa: PLC0415

    checks = {"/healthz": health.liveness, "/readyz": health.readiness}
    try:
        server = ProbeServer(registry, checks, host, port, name=name)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    server.start()
    log.info("serving /metrics on %s:%d (and /healthz, /readyz)", host, server.port)
    return server


def register(app: typer.Typer) -> None:
    app.command("reconcile")(reconcile)
