"""``gpuquota report``: the compliance report of a period, from the ledger (see docs/ledger.md).

Exit status: 0 with the report printed; 2 on bad options or an unreadable ledger (message, no traceback).
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from gpuquota.commands.clusteropts import cluster_name_of
from gpuquota.errors import UserError

DEFAULT_LEDGER = "sqlite:///var/ledger.sqlite3"  # where `gpuquota serve` keeps it by default


class Format(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


def _day(value: str, flag: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UserError(f"{flag} must be a date like 2026-01-31, not {value!r}") from None


def _existing_sqlite(url: str) -> None:
    """A report must not create an empty ledger where the operator mistyped a path."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///") :]).expanduser()
        if not path.exists():
            raise UserError(f"no ledger at {path} (pass --ledger sqlite:///path or postgresql://…)")


def report(  # noqa: PLR0917 - typer maps each parameter to an option
    from_: Annotated[str, typer.Option("--from", help="First day of the period (YYYY-MM-DD, UTC).")],
    to: Annotated[str, typer.Option("--to", help="Last day of the period, inclusive (YYYY-MM-DD, UTC).")],
    by: Annotated[str, typer.Option(help="Group by tenant, jurisdiction, tier or cluster.")] = "tenant",
    format_: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    ledger: Annotated[
        str | None,
        typer.Option(help=f"sqlite:///path or postgresql://… (default: $GPUQUOTA_LEDGER or {DEFAULT_LEDGER})."),
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
    cluster_name: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Only this cluster's records (default: every cluster sharing the ledger)."),
    ] = None,
) -> None:
    """Usage, peak concurrent TPP, operations, admissions and denials per scope over a period."""
    from gpuquota.ledger import LedgerError, open_ledger  # noqa: PLC0415 - keep `gpuquota --help` fast
    from gpuquota.ledger.report import GroupBy, Period, build_report, to_csv, to_json, to_table  # noqa: PLC0415

    try:
        group = GroupBy(by)
    except ValueError:
        raise UserError(f"--by must be tenant, jurisdiction, tier or cluster, not {by!r}") from None
    cluster = None if cluster_name is None else cluster_name_of(cluster_name)
    try:
        fmt = Format(format_)
    except ValueError:
        raise UserError(f"--format must be table, csv or json, not {format_!r}") from None
    try:
        period = Period.from_days(_day(from_, "--from"), _day(to, "--to"))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    url = ledger or os.environ.get("GPUQUOTA_LEDGER") or DEFAULT_LEDGER
    _existing_sqlite(url)
    try:
        opened = open_ledger(url, pool_size=1)
        try:
            result = build_report(
                opened.reservations(period.start, period.end, cluster=cluster),
                opened.decisions(period.start, period.end, cluster=cluster),
                period,
                group,
                datetime.now(UTC),
            )
        finally:
            opened.close()
    except LedgerError as exc:
        raise UserError(str(exc)) from None
    text = {Format.TABLE: to_table, Format.CSV: to_csv, Format.JSON: to_json}[fmt](result)
    if output is None:
        print(text, end="" if text.endswith("\n") else "\n")
    else:
        try:
            output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write {output}: {exc.strerror}") from None


def register(app: typer.Typer) -> None:
    app.command("report")(report)
