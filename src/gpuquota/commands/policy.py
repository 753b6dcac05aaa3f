"""``gpuquota policy``: list the bundled profiles, validate a profile file, show a profile's tiers and rules."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.table import Table

from gpuquota.errors import UserError
from gpuquota.policy import Policy, Rule, bundled_profiles, load_policy
from gpuquota.policy import format as fmt


class ShowFormat(StrEnum):
    TABLE = "table"
    YAML = "yaml"


policy_app = typer.Typer(help="Policy profiles: list, validate, show.", no_args_is_help=True)


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 200)


def _fail(exc: UserError) -> typer.Exit:
    print(f"gpuquota: {exc}", file=sys.stderr)
    return typer.Exit(2)


@policy_app.command("list")
def list_profiles() -> None:
    """Names of the bundled profiles (usable as --policy NAME)."""
    for name in bundled_profiles():
        policy = load_policy(name)
        print(f"{name}\t{policy.version}\teffective {policy.effective.isoformat()}")


@policy_app.command("validate")
def validate(file: Annotated[str, typer.Argument(help="Profile file (YAML) or bundled profile name.")]) -> None:
    """Check a profile: exit 0 when valid, 2 with the file, field and problem otherwise."""
    try:
        policy = load_policy(file)
    except UserError as exc:
        raise _fail(exc) from None
    print(
        f"{file}: valid — {policy.name} {policy.version}, effective {policy.effective.isoformat()}, "
        f"{len(policy.tiers)} tiers, {len(policy.rules)} rules"
    )


def _cap(rule: Rule) -> str:
    if rule.per_workload:
        return f"{fmt.operations(rule.cap)} operations per workload"
    if rule.window == "now":
        return f"{fmt.tpp(rule.cap)} TPP concurrent"
    return f"{fmt.operations(rule.cap)} operations per {rule.window_name}"


def _match(rule: Rule) -> str:
    parts = []
    for label, include, exclude in (
        ("tiers", rule.tiers, rule.exclude_tiers),
        ("jurisdictions", rule.jurisdictions, rule.exclude_jurisdictions),
        ("tenants", rule.tenants, rule.exclude_tenants),
    ):
        if include is not None:
            parts.append(f"{label} {','.join(sorted(include))}")
        if exclude:
            parts.append(f"{label} not {','.join(sorted(exclude))}")
    for label, values in (("purposes", rule.purposes), ("classes", rule.gpu_classes), ("weights", rule.weights)):
        if values is not None:
            parts.append(f"{label} {','.join(sorted(str(v) for v in values))}")
    return "; ".join(parts) or "everything"


def render_policy(policy: Policy, console: Console) -> None:
    console.print(
        f"[bold]{policy.name}[/] {policy.version} (effective {policy.effective.isoformat()}, from {policy.origin})",
        highlight=False,
    )
    if policy.description:
        console.print(policy.description, highlight=False)
    tiers = Table(title="tiers")
    tiers.add_column("tier")
    tiers.add_column("jurisdictions", overflow="fold")
    for tier in policy.tiers:
        members = " ".join(sorted(tier.jurisdictions)) or ""
        if tier.name == policy.default_tier:
            members = (members + " " if members else "") + "(and every other country)"
        tiers.add_row(tier.name, members)
    console.print(tiers)
    rules = Table(title="rules")
    for column in ("id", "action", "scope", "cap", "warn at", "matches", "exemptions"):
        rules.add_column(column, overflow="fold")
    for rule in policy.rules:
        rules.add_row(
            rule.id,
            rule.action.value,
            rule.scope.value,
            _cap(rule),
            fmt.percent(rule.warn_at) if rule.warn_at is not None else "",
            _match(rule),
            ",".join(sorted(rule.exemptions)),
        )
    console.print(rules)
    hours = "infinite" if policy.horizon_s is None else f"judged over a {policy.horizon_s / 3600:g}h horizon"
    console.print(
        f"unknown jurisdiction: {policy.unknown_action.value}; default model: {policy.default_model or 'none'}; "
        f"shared GPU counts as {policy.shared_gpu_fraction:g}; operations = TPP ÷ {policy.bit_length} × 10¹² × "
        f"{policy.utilisation:g} per second; unbounded runtime: {hours}",
        highlight=False,
    )


@policy_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Bundled profile name or profile file.")] = "ai-diffusion-2025",
    output: Annotated[ShowFormat, typer.Option("--output", "-o", help="table or yaml.")] = ShowFormat.TABLE,
) -> None:
    """Show a profile's tiers and rules (table), or the validated profile as YAML."""
    try:
        policy = load_policy(name)
    except UserError as exc:
        raise _fail(exc) from None
    if output is ShowFormat.YAML:
        document = policy.spec.model_dump(mode="json", by_alias=True)
        sys.stdout.write(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    else:
        render_policy(policy, _console())


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")
