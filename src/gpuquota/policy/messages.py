"""The sentences tenants read: a denial names the workload, the tenant with its jurisdiction and tier, the rule,
what was requested, what is already used, the cap and what would fit — on one line."""

from __future__ import annotations

from gpuquota.domain import Demand, Metric, RuleOutcome, Scope
from gpuquota.policy import format as fmt
from gpuquota.policy.model import Rule, base_subject, holder

SCOPE_NOUN = {Scope.TENANT: "tenant", Scope.JURISDICTION: "country", Scope.TIER: "tier", Scope.CLUSTER: "cluster"}


def requested_phrase(
    demand: Demand,
    *,
    tpp: float,
    gpus: float,
    model: str,
    operations: float | None,
    metric: Metric,
    horizon_s: float | None = None,
) -> str:
    text = f"requested {fmt.count(gpus)} × {model} = {fmt.tpp(tpp)} TPP"
    if metric is Metric.OPERATIONS:
        if operations is None:
            text += " with no runtime bound"
        elif demand.max_runtime_s is None:
            over = "" if horizon_s is None else f" over {duration(horizon_s)}"
            text += f" with no runtime bound, judged{over} = {fmt.operations(operations)} operations"
        else:
            text += f" for {duration(demand.max_runtime_s)} = {fmt.operations(operations)} operations"
    return text


def duration(seconds: float) -> str:
    """``30d``, ``72h``, ``1.5h``, ``90s``: a runtime as a tenant would write it."""
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{seconds / 86400:.0f}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.4g}h"
    return f"{seconds:.0f}s"


def cap_phrase(o: RuleOutcome, rule: Rule) -> str:
    noun = SCOPE_NOUN[rule.scope] if not rule.per_cluster else f"per-cluster {SCOPE_NOUN[rule.scope]}"
    if rule.metric is Metric.CONCURRENT_TPP:
        who = holder(o.key.subject)
        if base_subject(o.key.subject) != o.key.subject:  # an excludeExempted rule's counter
            who += ", exempted tenants not counted"
        return f"against a {fmt.tpp(o.cap)} TPP {noun} cap ({fmt.tpp(o.used)} TPP already held by {who})"
    if rule.per_workload:
        return f"against a per-workload cap of {fmt.operations(o.cap)} operations"
    return (
        f"against a {fmt.operations(o.cap)}-operation {noun} cap per {rule.window_name} "
        f"({fmt.operations(o.used)} already spent)"
    )


def denial(
    demand: Demand,
    o: RuleOutcome,
    rule: Rule,
    *,
    who: str,
    tpp: float,
    gpus: float,
    model: str,
    operations: float | None,
    unbounded_hint: str,
    horizon_s: float | None = None,
) -> str:
    """``PyTorchJob ns/name denied for tenant globex (BR, tier-2) by rule …: requested … against …; up to … fit``."""
    head = f"{demand.kind} {demand.namespace}/{demand.name} denied for {who} by rule {rule.id}"
    if rule.description and rule.description != rule.id:
        head += f" ({rule.description})"
    requested = requested_phrase(
        demand, tpp=tpp, gpus=gpus, model=model, operations=operations, metric=rule.metric, horizon_s=horizon_s
    )
    body = f"{requested} {cap_phrase(o, rule)}"
    unbounded = rule.metric is Metric.OPERATIONS and operations is None
    if unbounded:
        body += f": {unbounded_hint}"
    elif o.fits_gpus is not None:
        body += f"; up to {fmt.count(o.fits_gpus)} × {model} fit" if o.fits_gpus >= 1 else f"; no {model} fits"
    if rule.metric is Metric.OPERATIONS and demand.max_runtime_s is None and not unbounded:
        body += "; or bound its runtime (gpuquota.io/max-runtime)"  # judged over the horizon: a shorter bound may fit
    if rule.hint and not unbounded:
        body += f"; {rule.hint}"
    return f"{head}: {body}"


def short(used: float, cap: float, rule: Rule) -> str:
    """``23M of 26.9M TPP`` / ``3e25 of 1e26 operations``: the figures of a warning."""
    if rule.metric is Metric.CONCURRENT_TPP:
        return f"{fmt.tpp(used)} of {fmt.tpp(cap)} TPP"
    return f"{fmt.operations(used)} of {fmt.operations(cap)} operations"
