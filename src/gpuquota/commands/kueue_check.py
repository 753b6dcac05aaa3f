"""``gpuquota kueue-check``: gpuquota as a Kueue AdmissionCheck (``controllerName: gpuquota.io/compute-cap``), see
docs/kueue.md. Kueue queues Workloads and reserves its own quota; this controller tells Kueue when the compute caps
allow each one to start (``Ready``, after reserving in the ledger the webhook uses), when it has to wait
(``Pending``, with what is used, asked and what fits) and when it never can (``Rejected``).

Like ``reconcile`` it campaigns for a Lease in a pod (``--leader-elect``), and serves ``/metrics``, ``/healthz`` and
``/readyz`` on ``--metrics-port``. Exit status: 0 after a clean stop; 2 on bad options, an unusable ledger URL,
policy or tenants file, or missing credentials.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from gpuquota.commands.catalog_option import CatalogOption
from gpuquota.commands.clusteropts import ClusterNameOption, cluster_name_of
from gpuquota.commands.gpuopts import GpuDeviceClassOption, GpuResourceOption, gpu_table
from gpuquota.commands.kubeopts import (
    ApiServerOption,
    CaFileOption,
    ContextOption,
    InsecureOption,
    KubeconfigOption,
    KubeOptions,
    LogLevelOption,
    TokenFileOption,
    setup_logging,
)
from gpuquota.commands.reconcile import (
    DEFAULT_LEDGER,
    ProbeHostOption,
    ProbePortOption,
    check_probe_port,
    election_of,
    lead,
    ledger_and_kube,
    serve_probes,
)
from gpuquota.errors import UserError

DEFAULT_LEASE = "gpuquota-kueue-check"
DEFAULT_METRICS_PORT = 9103
ELECTION_TIMING = (15.0, 10.0, 2.0)  # lease duration, renew deadline, retry period: the reconciler's defaults


def kueue_check(  # noqa: PLR0917 - typer maps each parameter to an option
    ledger: Annotated[
        str | None,
        typer.Option(help=f"sqlite:///path or postgresql://… (default: $GPUQUOTA_LEDGER or {DEFAULT_LEDGER})."),
    ] = None,
    policy: Annotated[str, typer.Option(help="Bundled profile name or a profile file (reloaded on change).")] = (
        "ai-diffusion-2025"
    ),
    tenants: Annotated[Path | None, typer.Option(help="Tenants file (reloaded on change).")] = None,
    catalog: CatalogOption = None,
    gpu_resource: GpuResourceOption = None,
    gpu_device_class: GpuDeviceClassOption = None,
    interval: Annotated[float, typer.Option(help="Seconds between passes over the Workloads.")] = 5.0,
    leader_elect: Annotated[
        bool | None,
        typer.Option("--leader-elect/--no-leader-elect",
                     help="Work only while holding a Lease (default: on in a pod, off with --api-server)."),
    ] = None,
    lease_name: Annotated[str, typer.Option(help="Name of the Lease the replicas compete for.")] = DEFAULT_LEASE,
    lease_namespace: Annotated[
        str | None,
        typer.Option(help="Namespace of the Lease (default: $POD_NAMESPACE, else the service account's namespace)."),
    ] = None,
    metrics_port: ProbePortOption = DEFAULT_METRICS_PORT,
    metrics_host: ProbeHostOption = "0.0.0.0",  # noqa: S104 - in a pod
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    api_server: ApiServerOption = None,
    token_file: TokenFileOption = None,
    ca_file: CaFileOption = None,
    insecure_skip_tls_verify: InsecureOption = False,
    log_level: LogLevelOption = "info",
    cluster_name: ClusterNameOption = None,
) -> None:
    """Serve gpuquota's Kueue AdmissionCheck: Ready, Pending or Rejected for each Workload by the compute caps."""
    from gpuquota.admission.live import LiveConfig  # noqa: PLC0415 - keep `gpuquota --help` fast
    from gpuquota.kube.health import WatchHealth  # noqa: PLC0415
    from gpuquota.kueue.controller import KueueCheck  # noqa: PLC0415
    from gpuquota.kueue.metrics import KueueCheckMetrics  # noqa: PLC0415
    from gpuquota.reconcile.health import Heartbeat, ReconcilerHealth, stuck_after_default  # noqa: PLC0415

    if interval <= 0:
        raise UserError("--interval must be positive")
    check_probe_port(metrics_port)
    cluster = cluster_name_of(cluster_name)
    setup_logging(log_level)
    table = gpu_table(gpu_resource, gpu_device_class, 8)
    live = LiveConfig(policy, tenants, catalog_path=catalog)  # a bad file is a UserError: exit 2
    kube_options = KubeOptions(api_server, token_file, ca_file, insecure_skip_tls_verify, kubeconfig, context)
    election = election_of(leader_elect, kube_options, lease_name, lease_namespace, ELECTION_TIMING)
    opened, kube = ledger_and_kube(ledger, kube_options, cluster_name)
    metrics = KueueCheckMetrics(cluster=cluster_name and cluster)
    watches = WatchHealth()
    metrics.registry.register(watches.collector())
    check = KueueCheck(kube, opened, live, metrics=metrics, health=watches, gpu_resources=table, cluster=cluster)
    health = ReconcilerHealth(Heartbeat(), opened.ping, stuck_after_s=stuck_after_default(interval),
                              kube_problems=watches.problems)
    server = serve_probes(metrics.registry, health, metrics_host, metrics_port, "kueue-check")

    def work(stop: threading.Event, beat: Callable[[], None]) -> None:
        def turn() -> None:  # each turn of the loop: the liveness beat, and the policy/tenants files' reload
            beat()
            live.check()

        check.run(stop, interval_s=interval, heartbeat=turn)

    try:
        lead(kube, election, metrics.set_leader, health, work)
    finally:
        if server is not None:
            server.stop()
        opened.close()
        kube.close()


def register(app: typer.Typer) -> None:
    app.command("kueue-check")(kueue_check)
