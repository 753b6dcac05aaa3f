"""The ``gpuquota`` command. Each subcommand lives in ``gpuquota.commands.<name>`` and registers itself, so
the CLI stays a thin shell over the packages; this module only wires them and turns user errors into exit 2."""

from __future__ import annotations

import importlib
import sys

import typer

from gpuquota import __version__
from gpuquota.errors import UserError

# Subcommand modules, each exposing ``register(app)``.
COMMAND_MODULES = ("check", "policy", "gpus", "serve", "inventory", "agent", "report", "reconcile", "kueue_check")

app = typer.Typer(
    name="gpuquota",
    help="GPU-aware compute-cap enforcement for Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"gpuquota.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"gpuquota.commands.{name}":
                continue  # not built yet in this checkout
            raise
        module.register(app)




@app.callback()
def _root() -> None:
    """GPU-aware compute-cap enforcement for Kubernetes: admission webhook, node agent, ledger, reports."""


@app.command("version")
def version() -> None:
    """Print the gpuquota version."""
    print(__version__)


_register_all()


def main() -> None:
    try:
        app()
    except UserError as exc:
        print(f"gpuquota: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
