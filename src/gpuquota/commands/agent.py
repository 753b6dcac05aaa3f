"""``gpuquota agent``: the node agent (a DaemonSet on GPU nodes; see docs/agent.md).

Exit status: 0 after a clean stop (SIGTERM) or a successful ``--once``; 1 when ``--once`` could not publish;
2 on bad options or missing credentials; 3 when NVML is unavailable at start.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from typing import Annotated

import typer

from gpuquota.commands.clusteropts import ClusterNameOption, cluster_name_of
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
from gpuquota.errors import UserError

ONCE_ATTEMPTS = 5


def agent(  # noqa: PLR0917 - typer maps each parameter to an option
    node_name: Annotated[
        str | None, typer.Option(envvar="NODE_NAME", help="The Node to publish to (default: $NODE_NAME).")
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between publishes when nothing changed.")] = 60.0,
    poll: Annotated[float, typer.Option(help="Seconds between NVML reads (a MIG change is published at once).")] = 10.0,
    port: Annotated[int, typer.Option(help="Port of /metrics and /healthz (0: any free port).")] = 9402,
    host: Annotated[str, typer.Option(help="Address of /metrics and /healthz.")] = "0.0.0.0",  # noqa: S104 - pod
    once: Annotated[bool, typer.Option("--once", help="Discover and publish once, then exit.")] = False,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    api_server: ApiServerOption = None,
    token_file: TokenFileOption = None,
    ca_file: CaFileOption = None,
    insecure_skip_tls_verify: InsecureOption = False,
    log_level: LogLevelOption = "info",
    cluster_name: ClusterNameOption = None,
) -> None:
    """Publish this node's GPU inventory to its Node (labels + annotation) and serve /metrics and /healthz."""
    from gpuquota.inventory.agent import AgentServer, NodeAgent  # noqa: PLC0415 - keep `gpuquota --help` fast
    from gpuquota.inventory.agent_metrics import AgentMetrics  # noqa: PLC0415
    from gpuquota.inventory.discovery import discover  # noqa: PLC0415

    if not node_name:
        raise UserError("no node name: pass --node-name or set NODE_NAME (the DaemonSet sets it from spec.nodeName)")
    if interval <= 0 or poll <= 0:
        raise UserError("--interval and --poll must be positive")
    if not 0 <= port < 65536:
        raise UserError(f"--port must be between 0 and 65535, not {port}")
    cluster = cluster_name and cluster_name_of(cluster_name)  # its metrics' cluster label (it writes no ledger)
    setup_logging(log_level)

    kube = KubeOptions(api_server, token_file, ca_file, insecure_skip_tls_verify, kubeconfig, context).connect()
    node_agent = NodeAgent(kube, node_name, lambda: discover(node_name=node_name), interval_s=interval, poll_s=poll,
                           metrics=AgentMetrics(node_name, cluster))

    published = node_agent.tick()
    if node_agent.inventory is None:  # NVML could not start: nothing to publish, nothing to serve
        print(f"gpuquota: {node_agent.nvml_error}", file=sys.stderr)
        raise typer.Exit(3)
    if once:
        for _ in range(ONCE_ATTEMPTS - 1):
            failure = node_agent.kube_failure
            if published or (failure is not None and not failure.retriable):
                break
            time.sleep(node_agent.retry_in or 0)
            published = node_agent.publish(node_agent.inventory)
        if not published:
            print(f"gpuquota: publishing to node {node_name} failed: {node_agent.kube_error}", file=sys.stderr)
            raise typer.Exit(1)
        inv = node_agent.inventory
        print(f"published {inv.gpu_count} GPU(s), {inv.total_tpp:,.0f} TPP to node {node_name}")
        return

    try:
        server = AgentServer(node_agent, host, port)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    logging.getLogger("gpuquota.agent").info("serving /metrics and /healthz on %s:%d", host, server.port)
    try:
        if not stop.wait(node_agent.next_wait()):
            node_agent.run(stop)
    finally:
        server.stop()
        kube.close()


def register(app: typer.Typer) -> None:
    app.command("agent")(agent)
