"""The compiled profile ``decide()`` reads: frozensets and plain attributes instead of pydantic models, so
that matching a rule costs a few set lookups on the admission hot path."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from gpuquota.domain import (
    CONCURRENT_WINDOW,
    Action,
    Demand,
    GpuClass,
    Metric,
    OverrunAction,
    Purpose,
    Scope,
    Tenant,
    Weights,
    calendar_year_window,
    rolling_window,
)

if TYPE_CHECKING:
    from gpuquota.policy.schema import ProfileSpec

WORKLOAD = "workload-operations"
"""Cap kind of a per-workload operations rule: nothing cumulative is read or charged for it."""
EXCLUDED_SEPARATOR = "~"
"""Joins a scope subject and a rule id into the subject of an ``excludeExempted`` rule's own counter
(``BR~tier2-country-allocation``). No tenant name, ISO code, tier name or rule id contains it, so such a
counter never collides with a base metering counter or with another rule's."""


def excluded_subject(subject: str, rule_id: str) -> str:
    """The subject of the counter an ``excludeExempted`` rule reads: ``subject``'s usage by the tenants the rule
    applies to, leaving out those its exemptions lift."""
    return f"{subject}{EXCLUDED_SEPARATOR}{rule_id}"


CLUSTER_SEPARATOR = "@"
"""Joins a scope subject and a cluster name into the subject of a ``perCluster`` rule's counter (``globex@eu-1``):
tenant names, ISO codes and cluster names never hold it, and tier names may not."""


def base_subject(subject: str) -> str:
    """``BR`` for ``BR~tier2-country-allocation`` (and ``BR`` itself): the scope subject messages name."""
    return subject.partition(EXCLUDED_SEPARATOR)[0]


def cluster_subject(subject: str, cluster: str) -> str:
    """The subject of the counter a ``perCluster`` rule reads: ``subject``'s usage in ``cluster`` alone."""
    return f"{subject}{CLUSTER_SEPARATOR}{cluster}"


def holder(subject: str) -> str:
    """Who holds a counter's usage, in a tenant's words: ``globex``, ``globex in cluster eu-1``."""
    name, _, cluster = base_subject(subject).partition(CLUSTER_SEPARATOR)
    return f"{name} in cluster {cluster}" if cluster else name


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule. ``window`` is ``now`` (concurrent TPP), ``calendar-year``, ``rolling`` (with ``days``)
    or ``workload`` (the demand alone is compared with the cap)."""

    id: str
    description: str
    action: Action
    scope: Scope
    metric: Metric
    window: str
    days: int
    cap: float
    warn_at: float | None
    exemptions: frozenset[str]
    exclude_exempted: bool  # its counter leaves out the tenants its exemptions lift (own subject, see above)
    per_cluster: bool  # its counter is the subject's usage in the judging cluster alone (own subject, see above)
    hint: str
    tiers: frozenset[str] | None
    exclude_tiers: frozenset[str]
    jurisdictions: frozenset[str] | None
    exclude_jurisdictions: frozenset[str]
    tenants: frozenset[str] | None
    exclude_tenants: frozenset[str]
    purposes: frozenset[Purpose] | None
    gpu_classes: frozenset[GpuClass] | None
    weights: frozenset[Weights] | None

    @property
    def per_workload(self) -> bool:
        return self.window == "workload"

    def matches_tenant(self, tenant: str, jurisdiction: str | None, tier: str | None) -> bool:
        if self.tiers is not None and tier not in self.tiers:
            return False
        if tier is not None and tier in self.exclude_tiers:
            return False
        if self.jurisdictions is not None and jurisdiction not in self.jurisdictions:
            return False
        if jurisdiction is not None and jurisdiction in self.exclude_jurisdictions:
            return False
        if self.tenants is not None and tenant not in self.tenants:
            return False
        return tenant not in self.exclude_tenants

    def matches_demand(self, demand: Demand) -> bool:
        return self.matches_workload(demand.purpose, demand.weights, {g.gpu_class for g in demand.groups})

    def matches_workload(self, purpose: Purpose, weights: Weights, classes: set[GpuClass]) -> bool:
        """Workload-side match; ``classes`` are those of the demand's GPU groups (any one of them matches)."""
        return (
            (self.purposes is None or purpose in self.purposes)
            and (self.weights is None or weights in self.weights)
            and (self.gpu_classes is None or not self.gpu_classes.isdisjoint(classes))
        )

    @property
    def window_name(self) -> str:
        """``now``, ``calendar-year``, ``rolling-30d`` or ``workload``: the window as a profile spells it."""
        return f"rolling-{self.days}d" if self.window == "rolling" else self.window

    def window_key(self, day: date) -> str:
        if self.window == "calendar-year":
            return calendar_year_window(day)
        if self.window == "rolling":
            return rolling_window(self.days, day)
        return CONCURRENT_WINDOW


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    description: str
    jurisdictions: frozenset[str]


@dataclass(frozen=True, slots=True, eq=False)
class Policy:
    """A validated, compiled profile. Immutable: reloading builds a new one. ``origin`` is the file it came from
    (or ``bundled:<name>``); ``spec`` keeps the validated document for display (``gpuquota policy show``)."""

    name: str
    version: str
    effective: date
    description: str
    default_model: str | None
    unknown_model_tpp: float  # what a GPU the catalog lacks counts as when no NVML estimate says more
    shared_gpu_fraction: float
    tiers: tuple[Tier, ...]
    default_tier: str
    unknown_action: Action
    unknown_message: str
    bit_length: int
    utilisation: float
    horizon_s: float | None  # how long a run with no runtime bound is judged as running; None: forever
    unbounded_hint: str
    overrun_action: OverrunAction  # what the reconciler does about a run past its declared runtime
    rules: tuple[Rule, ...]
    origin: str
    spec: ProfileSpec
    countries: frozenset[str]
    _tier_by_country: dict[str, str] = field(repr=False)
    _rules_cache: dict[tuple[str, str | None], tuple[Rule, ...]] = field(default_factory=dict, repr=False)
    memo: dict[object, object] = field(default_factory=dict, repr=False)
    """Per-(tenant, day, cluster) plans of ``decide()``: derived data only, so sharing it keeps decisions pure."""

    def tier_of(self, jurisdiction: str | None) -> str | None:
        """The tier of an ISO alpha-2 code; ``None`` when unset or not a country code (→ unknownJurisdiction)."""
        if jurisdiction is None:
            return None
        tier = self._tier_by_country.get(jurisdiction)
        if tier is not None:
            return tier
        return self.default_tier if jurisdiction in self.countries else None

    def operations_per_second(self, tpp: float) -> float:
        """Operations a demand of ``tpp`` spends per second at the profile's utilisation (TPP ÷ bits × 10¹²)."""
        return tpp / self.bit_length * 1e12 * self.utilisation

    def rules_for(self, tenant: Tenant, tier: str | None) -> tuple[Rule, ...]:
        """Rules whose tenant-side match passes, memoised per (tenant, jurisdiction): tenants are few, demands many."""
        cache_key = (tenant.name, tenant.jurisdiction)
        rules = self._rules_cache.get(cache_key)
        if rules is None:
            rules = tuple(r for r in self.rules if r.matches_tenant(tenant.name, tenant.jurisdiction, tier))
            if len(self._rules_cache) > 65536:
                self._rules_cache.clear()
            self._rules_cache[cache_key] = rules
        return rules
