"""One module per ``gpuquota`` subcommand; each exposes ``register(app: typer.Typer) -> None``."""
