"""``gpuquota reconcile``: settle reservations against what runs in the cluster (see docs/ledger.md).

Exit status: 0 after a clean stop (SIGTERM/SIGINT) or a successful ``--once``; 1 when ``--once`` failed;
2 on bad options, an unusable ledger URL or missing credentials.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from gpuquota.errors import UserError

DEFAULT_LEDGER = "sqlite:///var/ledger.sqlite3"


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
    once: Annotated[bool, typer.Option("--once", help="Run one pass, print what changed, exit.")] = False,
    api_server: Annotated[
        str | None, typer.Option(help="API server URL, for running outside a pod (default: in-cluster).")
    ] = None,
    token_file: Annotated[Path | None, typer.Option(help="Bearer token file, with --api-server.")] = None,
    ca_file: Annotated[Path | None, typer.Option(help="CA bundle of the API server, with --api-server.")] = None,
    insecure_skip_tls_verify: Annotated[
        bool, typer.Option("--insecure-skip-tls-verify", help="Do not verify the API server's certificate (dev only).")
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Follow admitted workloads and move their reservations: running, settled, released, expired."""
    from gpuquota.kube.client import KubeClient  # noqa: PLC0415 - keep `gpuquota --help` fast
    from gpuquota.ledger import LedgerError, open_ledger  # noqa: PLC0415
    from gpuquota.reconcile import Reconciler  # noqa: PLC0415

    if grace < 0 or interval <= 0 or resync <= 0:
        raise UserError("--grace must be ≥ 0, --interval and --resync positive")
    level = getattr(logging, log_level.upper(), None)
    if log_level.lower() not in ("debug", "info", "warning", "error") or not isinstance(level, int):
        raise UserError(f"--log-level must be debug, info, warning or error, not {log_level!r}")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    url = ledger or os.environ.get("GPUQUOTA_LEDGER") or DEFAULT_LEDGER
    try:
        opened = open_ledger(url, pool_size=2)
    except LedgerError as exc:
        raise UserError(str(exc)) from None
    kube = KubeClient.connect(api_server, token_file, ca_file, insecure_skip_tls_verify)
    reconciler = Reconciler(kube, opened, grace=timedelta(seconds=grace), resync_s=resync)
    try:
        if once:
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
            return
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        reconciler.run(stop, interval_s=interval)
    finally:
        opened.close()
        kube.close()


def register(app: typer.Typer) -> None:
    app.command("reconcile")(reconcile)
