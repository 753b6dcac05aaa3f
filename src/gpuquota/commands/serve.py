"""``gpuquota serve``: the admission webhook (see docs/webhook.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gpuquota.commands.catalog_option import CatalogOption
from gpuquota.commands.clusteropts import ClusterNameOption, cluster_name_of
from gpuquota.commands.gpuopts import (
    DEFAULT_ALL_DEVICES,
    DraAllDevicesOption,
    GpuDeviceClassOption,
    GpuResourceOption,
    gpu_table,
)
from gpuquota.commands.kubeopts import (
    ApiServerOption,
    CaFileOption,
    ContextOption,
    KubeconfigOption,
    LogLevelOption,
    TokenFileOption,
    log_level_name,
)
from gpuquota.errors import UserError

_KUBE_MODES = ("auto", "in-cluster", "none")


def serve(  # noqa: PLR0917 - typer maps each parameter to an option
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",  # noqa: S104 - pod address
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8443,
    ledger: Annotated[
        str | None, typer.Option(help="sqlite:///path or postgresql://… (default: sqlite in --state-dir).")
    ] = None,
    policy: Annotated[str, typer.Option(help="Bundled profile name or a profile file (reloaded on change).")] = (
        "ai-diffusion-2025"
    ),
    tenants: Annotated[Path | None, typer.Option(help="Tenants file (reloaded on change).")] = None,
    catalog: CatalogOption = None,
    tls_cert: Annotated[Path | None, typer.Option(help="Serving certificate (PEM), reloaded when it changes.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Private key of --tls-cert (PEM).")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Plain HTTP, no TLS (local testing only).")] = False,
    audit_log: Annotated[
        str | None, typer.Option(help="Where decision JSON lines go: a file, '-' for stdout, 'off' for nowhere.")
    ] = "-",
    kube: Annotated[
        str,
        typer.Option(help="Namespace labels and nodes from the cluster: in-cluster (required), none, or auto (the "
                     "cluster --kubeconfig/$KUBECONFIG/--api-server names, else the pod's, else none)."),
    ] = "auto",
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    api_server: ApiServerOption = None,
    token_file: TokenFileOption = None,
    ca_file: CaFileOption = None,
    state_dir: Annotated[
        Path, typer.Option(help="Where the default SQLite ledger and a generated self-signed certificate live.")
    ] = Path("var"),
    reload_interval: Annotated[float, typer.Option(help="Seconds between checks of watched files.")] = 2.0,
    ping_interval: Annotated[
        float, typer.Option(help="Seconds between ledger health checks (behind /readyz and gpuquota_ledger_up).")
    ] = 5.0,
    ledger_threads: Annotated[
        int | None,
        typer.Option(help="Threads for ledger calls (0: on the event loop). Default: 0 for SQLite, 8 for PostgreSQL."),
    ] = None,
    log_level: LogLevelOption = "info",
    client_ca: Annotated[
        Path | None, typer.Option(help="Mutual TLS: accept only clients (the API server) presenting a certificate "
                                  "signed by this CA bundle (PEM) on the webhook port.")
    ] = None,
    metrics_port: Annotated[
        int, typer.Option(help="Serve /metrics (and /healthz, /readyz) on this port of their own, off the webhook "
                          "port; 0 keeps them on the webhook port (local use).")
    ] = 0,
    metrics_auth: Annotated[
        str, typer.Option(help="none, or kubernetes: /metrics on --metrics-port needs a bearer token the API server "
                          "authenticates (TokenReview) and allows to get /metrics (SubjectAccessReview).")
    ] = "none",
    read_timeout: Annotated[
        float, typer.Option(help="Seconds a client has for its TLS handshake, again for a request's headers and again "
                            "for its body, before the connection is closed (slow clients hold no connection).")
    ] = 10.0,
    max_connections: Annotated[
        int, typer.Option(help="Open connections to the webhook port; one beyond this is closed at once.")
    ] = 512,
    decision_retention_days: Annotated[
        float, typer.Option(help="Days decision records are kept in the ledger (0: forever). Identical denials are "
                            "folded into one record per day either way.")
    ] = 7 * 366,
    trusted_controller: Annotated[
        list[str] | None,
        typer.Option(
            metavar="USER",
            help="A user (e.g. system:serviceaccount:ns:name) whose pods and child objects may ride on their owner's "
            "reservation, beyond the controller manager and non-tenant service accounts. Repeatable.",
        ),
    ] = None,
    gpu_resource: GpuResourceOption = None,
    gpu_device_class: GpuDeviceClassOption = None,
    dra_all_devices: DraAllDevicesOption = DEFAULT_ALL_DEVICES,
    cluster_name: ClusterNameOption = None,
) -> None:
    """Run the validating admission webhook (POST /validate, /healthz, /readyz, /metrics)."""
    from gpuquota.admission.server import ServeSettings, run  # noqa: PLC0415 - keep `gpuquota --help` fast
    from gpuquota.admission.transport import ConnectionLimits  # noqa: PLC0415

    if kube not in _KUBE_MODES:
        raise UserError(f"--kube must be one of {', '.join(_KUBE_MODES)}, not {kube!r}")
    if insecure and (tls_cert is not None or tls_key is not None):
        raise UserError("--insecure and --tls-cert/--tls-key exclude each other")
    if kube == "none" and (api_server is not None or kubeconfig is not None or context is not None):
        raise UserError("--api-server, --kubeconfig and --context need --kube in-cluster or auto")
    if not 0 < port < 65536:
        raise UserError(f"--port must be between 1 and 65535, not {port}")
    if reload_interval <= 0 or ping_interval <= 0:
        raise UserError("--reload-interval and --ping-interval must be positive")
    if ledger_threads is not None and not 0 <= ledger_threads <= 64:
        raise UserError("--ledger-threads must be between 0 and 64")
    if metrics_auth not in ("none", "kubernetes"):
        raise UserError(f"--metrics-auth must be none or kubernetes, not {metrics_auth!r}")
    if (metrics_port and not 0 < metrics_port < 65536) or metrics_port == port:
        raise UserError(f"--metrics-port must be a port other than --port ({port}), or 0")
    if decision_retention_days < 0:
        raise UserError("--decision-retention-days must be 0 (forever) or more")
    if not 0 < read_timeout <= 300:
        raise UserError("--read-timeout must be between 0 and 300 seconds")
    if not 0 < max_connections <= 100_000:
        raise UserError("--max-connections must be between 1 and 100000")
    trusted = tuple(name.strip() for name in trusted_controller or ())
    if any(not name for name in trusted):
        raise UserError("--trusted-controller needs a user name, e.g. system:serviceaccount:kubeflow:training-operator")
    gpu_table(gpu_resource, gpu_device_class, dra_all_devices)  # bad entries: a clear error before anything starts
    level = log_level_name(log_level)
    cluster_name_of(cluster_name)  # a bad name: a clear error before anything starts
    settings = ServeSettings(
        host=host,
        port=port,
        ledger_url=ledger,
        policy=policy,
        tenants=tenants,
        catalog=catalog,
        tls_cert=tls_cert,
        tls_key=tls_key,
        insecure=insecure,
        audit_log=None if audit_log in (None, "off", "") else audit_log,
        kube=kube,  # type: ignore[arg-type]  # checked against _KUBE_MODES above
        state_dir=state_dir,
        api_server=api_server,
        token_file=token_file,
        ca_file=ca_file,
        kubeconfig=kubeconfig,
        context=context,
        reload_interval_s=reload_interval,
        trusted_controllers=trusted,
        ping_interval_s=ping_interval,
        ledger_threads=ledger_threads,
        log_level=level,
        decision_retention_days=decision_retention_days or None,
        metrics_port=metrics_port or None,
        client_ca=client_ca,
        metrics_auth=metrics_auth,  # type: ignore[arg-type]  # checked above
        limits=ConnectionLimits(header_timeout_s=read_timeout, body_timeout_s=read_timeout,
                                handshake_timeout_s=read_timeout, max_connections=max_connections),
        gpu_resources=tuple(gpu_resource or ()),
        gpu_device_classes=tuple(gpu_device_class or ()),
        dra_all_devices=dra_all_devices,
        cluster_name=cluster_name,
    )
    run(settings)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
