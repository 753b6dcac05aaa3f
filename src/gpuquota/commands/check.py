"""``gpuquota check``: evaluate workload manifests offline against a profile, as the webhook would.

Each manifest is decided by the webhook's own judge (``gpuquota.admission.judge.Judge.decide``) on an in-memory
ledger seeded with ``--usage``: in order and, like a sequence of ``kubectl apply``, each admitted workload's
reservation counts against the next — three Tier 2 jobs that each fit alone but not together are reported so.
Exit status: 0 all allowed, 1 any denied, 2 bad input (message on stderr, no traceback).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from gpuquota.admission.judge import Judge
from gpuquota.admission.outcome import Case, Decided
from gpuquota.catalog import Catalog, h100_equivalents, load_catalog
from gpuquota.commands.catalog_option import CatalogOption, catalog_from
from gpuquota.commands.gpuopts import (
    DEFAULT_ALL_DEVICES,
    DraAllDevicesOption,
    GpuDeviceClassOption,
    GpuResourceOption,
    gpu_table,
)
from gpuquota.domain import Action, Decision, Demand, RuleOutcome, Tenant, UsageKey
from gpuquota.errors import UserError
from gpuquota.ledger import WorkloadRef
from gpuquota.ledger.memory import MemoryLedger
from gpuquota.policy import Policy, load_policy
from gpuquota.policy import format as fmt
from gpuquota.policy.usage_file import load_usage
from gpuquota.tenancy import TenantDirectory, load_tenants, validate_country
from gpuquota.tenancy.validation import one_line
from gpuquota.workloads import (
    ExtractContext,
    GpuResources,
    ManifestClaims,
    ManifestObjects,
    UnreadableError,
    UnsupportedKind,
    WorkloadError,
    extract,
    gpu_resources,
    requests_gpu,
)
from gpuquota.workloads.dra import CLAIM, CLAIM_TEMPLATE
from gpuquota.workloads.extract import estimate
from gpuquota.workloads.registry import REFERENCED, api_group

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


class Status(StrEnum):
    ALLOWED = "allowed"
    WARNED = "warned"
    DENIED = "denied"
    NO_GPU = "no-gpu"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Row:
    """One manifest object and what became of it."""

    kind: str
    namespace: str
    name: str
    status: Status
    message: str
    demand: Demand | None = None
    decision: Decision | None = None
    tenant: Tenant | None = None

    @property
    def allowed(self) -> bool:
        return self.status is not Status.DENIED


def _documents(text: str, origin: str) -> Iterator[Mapping[str, Any]]:
    """Objects of a multi-document YAML/JSON stream; ``kind: List`` and top-level arrays are unpacked."""
    try:
        documents = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise UserError(f"{origin}: not valid YAML or JSON: {one_line(exc)}") from None
    for index, doc in enumerate(documents):
        yield from _objects(doc, f"{origin}: document {index + 1}")


def _objects(doc: Any, where: str) -> Iterator[Mapping[str, Any]]:
    if doc is None:
        return
    if isinstance(doc, list):
        for item in doc:
            yield from _objects(item, where)
        return
    if not isinstance(doc, dict):
        raise UserError(f"{where}: expected a Kubernetes object (a mapping), got {type(doc).__name__}")
    if doc.get("kind") == "List" or (isinstance(doc.get("kind"), str) and doc["kind"].endswith("List")):
        items = doc.get("items")
        if not isinstance(items, list):
            raise UserError(f"{where}: a {doc['kind']} needs an 'items' list")
        for item in items:
            yield from _objects(item, where)
        return
    yield doc


def read_manifests(files: list[str]) -> list[Mapping[str, Any]]:
    objects: list[Mapping[str, Any]] = []
    for name in files:
        if name == "-":
            text, origin = sys.stdin.read(), "<stdin>"
        else:
            try:
                text = Path(name).read_text(encoding="utf-8")
            except OSError as exc:
                raise UserError(f"{name}: cannot read: {exc.strerror}") from None
            except UnicodeDecodeError:
                raise UserError(f"{name}: not a UTF-8 text file") from None
            origin = name
        objects.extend(_documents(text, origin))
    return objects


CHECK_USER = "gpuquota-check"
"""The user ``check``'s cases are judged as (recorded in the in-memory ledger's audit records)."""


def _identity(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    return str(obj.get("kind") or "?"), str(meta.get("namespace") or ""), str(meta.get("name") or "?")


@dataclass(frozen=True, slots=True)
class Who:
    """How the tenant of each object is found: a fixed jurisdiction, or the tenants file by namespace."""

    jurisdiction: str | None
    directory: TenantDirectory | None
    namespace: str | None

    def tenant(self, obj_namespace: str) -> Tenant:
        namespace = self.namespace or obj_namespace or "default"
        if self.directory is not None:
            return self.directory.resolve_or_unknown(namespace)
        return Tenant(name=namespace, jurisdiction=self.jurisdiction, namespaces=(namespace,))


def evaluate(
    objects: Sequence[Mapping[str, Any]],
    policy: Policy,
    who: Who,
    usage: Mapping[UsageKey, float],
    now: datetime,
    *,
    inventory: tuple[str, ...] = (),
    catalog: Catalog | None = None,
    resources: GpuResources | None = None,
    all_devices: int = DEFAULT_ALL_DEVICES,
) -> list[Row]:
    """Judge each object in order, as the webhook's judge on an in-memory ledger: the reservations of admitted ones
    count against later ones. DRA claims that pods name, and the runtimes TrainJobs name, are read from the same
    manifests; a TrainJob whose runtime is not among them is counted from its own fields with a warning, or refused
    when those do not say what it runs (``trainjob.trainjob_from_runtime``)."""
    claims = ManifestClaims(objects, who.namespace or "")
    references = ManifestObjects(objects, who.namespace or "")
    judge = Judge(MemoryLedger(usage), clock=lambda: now, gpu_resources=resources or gpu_resources(),
                  all_devices=all_devices, claims=claims)
    table = judge.gpu_resources
    ctx = ExtractContext(
        catalog or load_catalog(), inventory, policy.default_model, policy.shared_gpu_fraction,
        policy.unknown_model_tpp, resources=table, all_devices=all_devices,
    )
    seen: set[WorkloadRef] = set()
    rows: list[Row] = []
    for index, obj in enumerate(objects):
        kind, namespace, name = _identity(obj)
        if kind in (CLAIM, CLAIM_TEMPLATE) and str(obj.get("apiVersion", "")).startswith("resource.k8s.io/"):
            rows.append(Row(kind, namespace, name, Status.NO_GPU, "device claim: counted with the pods that name it"))
            continue
        if (api_group(str(obj.get("apiVersion") or "")), kind) in REFERENCED:
            rows.append(Row(kind, namespace, name, Status.NO_GPU, "counted with the workloads that name it"))
            continue
        try:
            demand = extract(obj, ctx, claims, references)
        except UnsupportedKind as exc:
            rows.append(_skipped(obj, exc.problem, ctx, claims, table))
            continue
        except UnreadableError as exc:
            rows.append(Row(kind, namespace, name, Status.DENIED, f"cannot be counted offline: {exc}"))
            continue
        if demand is None:
            rows.append(Row(kind, namespace, name, Status.NO_GPU, "requests no GPU"))
            continue
        namespace = demand.namespace or namespace
        tenant = who.tenant(namespace)
        workload = WorkloadRef(namespace, kind, name, api_group(str(obj.get("apiVersion") or "")))
        if workload in seen:  # every document is a workload of its own: a second one of a name is not a retry
            workload = WorkloadRef(namespace, kind, f"{name}#{index + 1}", workload.group)
        seen.add(workload)
        outcome = judge.decide(Case(uid=f"check-{index + 1}", operation="CREATE", user=CHECK_USER, dry_run=False,
                                    policy=policy, demand=demand, whole=None, tenant=tenant, workload=workload))
        assert isinstance(outcome, Decided)  # no owner claims, every workload new: never Owned
        decision = outcome.decision
        status = Status.DENIED if not decision.allowed else Status.WARNED if decision.warnings else Status.ALLOWED
        rows.append(Row(kind, namespace, name, status, decision.message, demand, decision, tenant))
    return rows


def _skipped(obj: Mapping[str, Any], problem: str, ctx: ExtractContext, claims: ManifestClaims,
             table: GpuResources) -> Row:
    """A kind no adapter reads: not judged (the webhook checks its pods one by one), but its GPUs are reported
    from the pod templates found in it rather than as 0."""
    kind, namespace, name = _identity(obj)
    if not requests_gpu(obj, table):
        return Row(kind, namespace, name, Status.SKIPPED, f"not evaluated: {problem}")
    try:
        demand = estimate(obj, ctx, claims)
    except WorkloadError:
        demand = None
    figure = f"its pod templates ask for {fmt.count(demand.gpus)} GPU(s); " if demand is not None else ""
    message = f"not evaluated: {problem}; {figure}the webhook checks its pods one by one"
    return Row(kind, demand.namespace if demand else namespace, name, Status.SKIPPED, message, demand)


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _outcome_json(o: RuleOutcome) -> dict[str, Any]:
    return {
        "id": o.rule_id,
        "description": o.description,
        "action": o.action.value,
        "scope": o.key.scope.value,
        "subject": o.key.subject,
        "metric": o.key.metric.value,
        "window": o.key.window,
        "requested": _finite(o.requested),
        "used": o.used,
        "cap": _finite(o.cap),
        "remaining": _finite(o.remaining),
        "exceeded": o.exceeded,
        "fits_gpus": _finite(o.fits_gpus),
        "exempted_by": o.exempted_by,
    }


def row_json(row: Row) -> dict[str, Any]:
    """The ``--output json`` object: the DESIGN.md keys (kind, name, allowed, gpus, tpp, message) and detail."""
    demand, decision, tenant = row.demand, row.decision, row.tenant
    tpp = demand.tpp if demand else 0.0
    return {
        "kind": row.kind,
        "namespace": row.namespace,
        "name": row.name,
        "allowed": row.allowed,
        "decision": row.status.value,
        "gpus": demand.gpus if demand else 0.0,
        "tpp": tpp,
        "h100e": round(h100_equivalents(tpp), 3),
        "model": demand.model if demand else None,
        "model_source": demand.primary.model_source.value if demand and demand.primary else None,
        "operations": _finite(decision.operations) if decision else None,
        "operations_unbounded": bool(decision and decision.operations is None),
        "tenant": tenant.name if tenant else None,
        "jurisdiction": tenant.jurisdiction if tenant else None,
        "tier": decision.tier if decision else None,
        "profile": f"{decision.profile}@{decision.profile_version}" if decision else None,
        "message": row.message,
        "warnings": list(decision.warnings) if decision else [],
        "rules": [_outcome_json(o) for o in decision.outcomes] if decision else [],
    }


_STYLE = {
    Status.ALLOWED: "green",
    Status.WARNED: "yellow",
    Status.DENIED: "bold red",
    Status.NO_GPU: "dim",
    Status.SKIPPED: "dim",
}


def _reason(row: Row) -> str:
    decision = row.decision
    if decision is None:
        return row.message
    denying = decision.denying_rules
    if denying:
        return "; ".join(_brief(o) for o in denying)
    exceeded = [o for o in decision.outcomes if o.exceeded and o.action is not Action.DENY]
    if decision.warnings:
        return "; ".join(decision.warnings)
    if exceeded:
        return "audit: " + ", ".join(o.rule_id for o in exceeded)
    return f"{decision.tier or 'no tier'}: within " + (", ".join(o.rule_id for o in decision.outcomes) or "no caps")


def _brief(o: RuleOutcome) -> str:
    """``tier2-tenant-lpp: 32.4M > 26.9M TPP tenant cap (0 used), 1,699 fit`` — the message itself is printed below."""
    if o.key.metric.value == "concurrent-tpp":
        figures = (
            f"{fmt.tpp(o.requested)} > {fmt.tpp(o.remaining)} TPP left of {fmt.tpp(o.cap)} {o.key.scope.value} cap"
        )
    else:
        figures = f"{fmt.operations(o.requested)} > {fmt.operations(o.remaining)} operations left"
    fits = "" if o.fits_gpus is None else f", {fmt.count(o.fits_gpus)} GPUs fit"
    return f"{o.rule_id}: {figures}{fits}"


def _full_warnings(row: Row) -> tuple[str, ...]:
    """The decision's warnings, with the demand's own (which decide() clips to kubectl's 120 characters) in full."""
    if row.decision is None or row.demand is None:
        return ()
    own = row.demand.warnings
    return own + row.decision.warnings[len(own) :]


def render_table(rows: list[Row], policy: Policy, console: Console) -> None:
    table = Table(title=f"gpuquota check — profile {policy.name} {policy.version}", expand=False, show_lines=True)
    for column, justify in (
        ("workload", "left"),
        ("tenant", "left"),
        ("GPUs", "right"),
        ("model", "left"),
        ("TPP", "right"),
        ("H100e", "right"),
        ("operations", "right"),
        ("decision", "left"),
        ("reason", "left"),
    ):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for row in rows:
        demand, decision, tenant = row.demand, row.decision, row.tenant
        workload = f"{row.kind} {row.namespace + '/' if row.namespace else ''}{row.name}"
        who = f"{tenant.name} ({tenant.jurisdiction or '?'}, {decision.tier if decision else '?'})" if tenant else ""
        table.add_row(
            workload,
            who,
            fmt.count(demand.gpus) if demand else "0",
            (demand.model or "") if demand else "",
            fmt.tpp(demand.tpp) if demand else "0",
            f"{h100_equivalents(demand.tpp):,.1f}" if demand else "0",
            fmt.operations(decision.operations) if decision else "",
            f"[{_STYLE[row.status]}]{row.status.value}[/]",
            _reason(row),
        )
    console.print(table)
    for row in rows:
        if row.status is Status.DENIED:
            console.print(f"[bold red]denied[/]: {row.message}", highlight=False, soft_wrap=True)
        for warning in _full_warnings(row):
            console.print(f"[yellow]warning[/] {row.kind} {row.name}: {warning}", highlight=False, soft_wrap=True)


def _now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"--now: {text!r} is not an ISO 8601 date or time (e.g. 2026-11-26T12:00:00Z)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _who(tenants: Path | None, namespace: str | None, jurisdiction: str | None) -> Who:
    if jurisdiction is not None and (tenants is not None or namespace is not None):
        raise UserError("give either --jurisdiction, or --tenants (with --namespace or the manifests' namespaces)")
    if jurisdiction is not None:
        return Who(validate_country(jurisdiction), None, None)
    if tenants is None:
        raise UserError(
            "who is asking? give --jurisdiction CC (ISO 3166-1 alpha-2), or --tenants FILE with --namespace NS "
            "or namespaces in the manifests"
        )
    return Who(None, load_tenants(tenants), namespace)


def run_check(
    files: list[str],
    *,
    policy_name: str,
    tenants: Path | None,
    namespace: str | None,
    jurisdiction: str | None,
    usage_file: Path | None,
    output: OutputFormat,
    inventory: list[str],
    now_text: str | None,
    catalog_file: Path | None = None,
    resources: GpuResources | None = None,
    all_devices: int = DEFAULT_ALL_DEVICES,
) -> int:
    """The command's body, returning the exit status (UserError for bad input)."""
    policy = load_policy(policy_name)
    who = _who(tenants, namespace, jurisdiction)
    now = _now(now_text)
    usage = load_usage(usage_file, now.date()) if usage_file is not None else {}
    catalog = catalog_from(catalog_file)
    models: list[str] = []
    for name in inventory:
        for part in filter(None, (p.strip() for p in name.split(","))):
            spec = catalog.get(part)
            if spec is None:
                raise UserError(f"--inventory: {part!r} is not in the GPU catalog (see `gpuquota gpus`)")
            models.append(spec.key)
    rows = evaluate(read_manifests(files), policy, who, usage, now, inventory=tuple(models), catalog=catalog,
                    resources=resources, all_devices=all_devices)
    if output is OutputFormat.JSON:
        sys.stdout.write(json.dumps([row_json(r) for r in rows], indent=2, ensure_ascii=False) + "\n")
    else:
        render_table(rows, policy, Console(width=None if sys.stdout.isatty() else 200))
    return 1 if any(not r.allowed for r in rows) else 0


def check(  # noqa: PLR0917 - typer maps parameters to options
    files: Annotated[list[str], typer.Argument(help="Manifest files (multi-document YAML or JSON); - for stdin.")],
    policy: Annotated[
        str, typer.Option("--policy", "-p", help="Bundled profile name or profile file.")
    ] = "ai-diffusion-2025",
    tenants: Annotated[Path | None, typer.Option("--tenants", help="Tenants file (namespace → tenant).")] = None,
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", "-n", help="Namespace to resolve in --tenants (default: each manifest's)."),
    ] = None,
    jurisdiction: Annotated[
        str | None,
        typer.Option("--jurisdiction", "-j", help="Tenant's ISO 3166-1 alpha-2 country (instead of --tenants)."),
    ] = None,
    usage: Annotated[
        Path | None, typer.Option("--usage", help="Current usage (YAML, see docs/policy.md 'Usage files').")
    ] = None,
    output: Annotated[OutputFormat, typer.Option("--output", "-o", help="table or json.")] = OutputFormat.TABLE,
    inventory: Annotated[
        list[str] | None,
        typer.Option("--inventory", help="GPU models the cluster holds (repeatable or comma-separated)."),
    ] = None,
    now: Annotated[
        str | None, typer.Option("--now", help="Evaluate at this ISO 8601 time (default: now, UTC).")
    ] = None,
    catalog_file: CatalogOption = None,
    gpu_resource: GpuResourceOption = None,
    gpu_device_class: GpuDeviceClassOption = None,
    dra_all_devices: DraAllDevicesOption = DEFAULT_ALL_DEVICES,
) -> None:
    """Evaluate workload manifests offline against a policy profile (exit 0 allowed, 1 denied, 2 bad input)."""
    try:
        table = gpu_table(gpu_resource, gpu_device_class, dra_all_devices)
        code = run_check(
            files,
            policy_name=policy,
            tenants=tenants,
            namespace=namespace,
            jurisdiction=jurisdiction,
            usage_file=usage,
            output=output,
            inventory=inventory or [],
            now_text=now,
            catalog_file=catalog_file,
            resources=table,
            all_devices=dra_all_devices,
        )
    except UserError as exc:
        print(f"gpuquota: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("check")(check)
