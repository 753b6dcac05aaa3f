"""The profile file format, validated with pydantic.

This is the operator-facing contract (documented in docs/policy.md): every key is camelCase, unknown keys are
errors (a misspelt ``excludeTiers`` must not silently match everything), numbers are finite, and cross-references
(tier names, rule ids, country codes, the default GPU model) are checked here so that a profile that loads can
always be compiled. ``compile.py`` turns the validated spec into the fast object ``decide()`` uses.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from gpuquota.catalog import UNKNOWN_MODEL_TPP
from gpuquota.domain import Action, GpuClass, Metric, OverrunAction, Purpose, Scope, Weights
from gpuquota.durations import parse_duration
from gpuquota.tenancy.countries import country_codes, yaml_country

_RULE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_ROLLING = re.compile(r"^rolling-(\d+)d$")
BIT_LENGTHS = (4, 6, 8, 16, 32, 64)


def _number(value: Any) -> Any:
    """YAML 1.1 reads ``1e26`` (no dot) as a string; accept it as the number the operator meant."""
    if isinstance(value, str):
        try:
            return float(value.replace("_", ""))
        except ValueError:
            return value
    return value


def _text(value: Any) -> Any:
    """Versions such as ``2025.1`` arrive as floats from YAML; keep them as the text the operator wrote."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


Number = Annotated[float, BeforeValidator(_number), Field(allow_inf_nan=False)]
Text = Annotated[str, BeforeValidator(_text)]


class _Spec(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True, use_enum_values=False
    )


def _country(code: str) -> str:
    upper = code.upper()
    if upper not in country_codes():
        hint = " (the United Kingdom is GB)" if upper == "UK" else ""
        raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 country code{hint}")
    return upper


Country = Annotated[str, BeforeValidator(yaml_country), AfterValidator(_country)]
"""An ISO 3166-1 alpha-2 code, upper-cased; validated per item so that errors name the list index."""


class MatchSpec(_Spec):
    """Which tenants and workloads a rule applies to. An omitted include list matches everything; an exclude list
    removes from it. A tenant whose tier is unknown matches no include list of tiers but passes exclude lists."""

    tiers: tuple[str, ...] | None = None
    exclude_tiers: tuple[str, ...] = ()
    jurisdictions: tuple[Country, ...] | None = None
    exclude_jurisdictions: tuple[Country, ...] = ()
    tenants: tuple[str, ...] | None = None
    exclude_tenants: tuple[str, ...] = ()
    purposes: tuple[Purpose, ...] | None = None
    gpu_classes: tuple[GpuClass, ...] | None = None
    weights: tuple[Weights, ...] | None = None


class CapSpec(_Spec):
    """What is counted and the limit. ``kind``: ``concurrent-tpp`` (TPP held at once), ``operations`` (spent in
    ``window``: ``calendar-year`` or ``rolling-<N>d``) or ``workload-operations`` (what one workload may spend)."""

    kind: Literal["concurrent-tpp", "operations", "workload-operations"]
    amount: Number = Field(ge=0)
    window: str | None = None

    @model_validator(mode="after")
    def _window_fits_kind(self) -> CapSpec:
        if self.kind == "operations":
            if self.window is None:
                raise ValueError("an operations cap needs a window: calendar-year or rolling-<N>d (e.g. rolling-30d)")
            rolling = _ROLLING.match(self.window)
            if self.window != "calendar-year" and not (rolling and 1 <= int(rolling.group(1)) <= 3660):
                raise ValueError(f"window {self.window!r}: expected calendar-year or rolling-<N>d with 1 ≤ N ≤ 3660")
        elif self.window is not None:
            raise ValueError(f"a {self.kind} cap takes no window (got {self.window!r})")
        return self

    @property
    def metric(self) -> Metric:
        return Metric.CONCURRENT_TPP if self.kind == "concurrent-tpp" else Metric.OPERATIONS

    @property
    def rolling_days(self) -> int | None:
        match = _ROLLING.match(self.window or "")
        return int(match.group(1)) if match else None


class RuleSpec(_Spec):
    id: str
    description: str = ""
    match: MatchSpec = Field(default_factory=MatchSpec)
    cap: CapSpec
    scope: Scope = Scope.TENANT
    action: Action = Action.DENY
    warn_at: Number | None = Field(default=None, gt=0, le=1)
    exemptions: tuple[str, ...] = ()
    exclude_exempted: bool = False
    per_cluster: bool = False
    hint: str = ""
    source: str = ""

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _RULE_ID.match(value):
            raise ValueError(f"{value!r}: rule ids are lower-case letters, digits and dashes (≤ 63 characters)")
        return value

    @field_validator("exemptions")
    @classmethod
    def _kinds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not k.strip() for k in value):
            raise ValueError("exemption kinds must be non-empty")
        return value

    @model_validator(mode="after")
    def _excluding_needs_a_pool(self) -> RuleSpec:
        """``excludeExempted`` leaves the tenants a rule's exemptions lift out of a shared counter: without
        exemptions nobody is lifted, a tenant-scoped counter holds only the tenant itself, and a per-workload cap
        counts nothing, so anywhere else the flag would be a silent no-op."""
        if not self.exclude_exempted:
            return self
        if not self.exemptions:
            raise ValueError("excludeExempted needs exemptions: it leaves out the tenants they lift")
        if self.scope is Scope.TENANT:
            raise ValueError("excludeExempted applies to a shared scope (jurisdiction, tier or cluster), not tenant")
        if self.cap.kind == "workload-operations":
            raise ValueError("excludeExempted does not apply to a workload-operations cap: it counts no usage")
        return self

    @model_validator(mode="after")
    def _per_cluster_needs_a_fleet_scope(self) -> RuleSpec:
        """``perCluster`` counts a tenant, jurisdiction or tier in each cluster apart; the cluster scope already
        counts one cluster, and a per-workload cap counts no usage, so there the flag would be a silent no-op."""
        if not self.per_cluster:
            return self
        if self.scope is Scope.CLUSTER:
            raise ValueError("perCluster applies to the tenant, jurisdiction or tier scope: the cluster scope already "
                             "counts one cluster")
        if self.cap.kind == "workload-operations":
            raise ValueError("perCluster does not apply to a workload-operations cap: it counts no usage")
        return self


class TierSpec(_Spec):
    name: str = Field(min_length=1, max_length=63)
    description: str = ""
    jurisdictions: tuple[Country, ...] = ()
    source: str = ""

    @field_validator("name")
    @classmethod
    def _no_tilde(cls, value: str) -> str:
        for mark, joins in (("~", "excludeExempted"), ("@", "perCluster")):
            if mark in value:  # it would collide with another tier's rule counter (docs/policy.md)
                raise ValueError(f"{value!r}: tier names may not contain {mark!r} (it joins {joins} counter subjects)")
        return value


class UnknownJurisdictionSpec(_Spec):
    """What happens to a GPU workload whose tenant has no (valid) jurisdiction."""

    action: Action = Action.DENY
    message: str = (
        "the namespace has no jurisdiction: ask a cluster admin to set the Namespace label "
        "gpuquota.io/jurisdiction to the tenant's ISO 3166-1 country code (or add the namespace to the tenants file)"
    )


class UnboundedRuntimeSpec(_Spec):
    """How a workload with no runtime bound (no activeDeadlineSeconds, no gpuquota.io/max-runtime) is judged.

    ``horizon``: a duration such as ``8760h`` (the run is judged, and its operations reserved, as if it ran that
    long; what it really spends is accrued by the reconciler from its pods' runtime, past the horizon too) or
    ``infinite`` (every operations cap that matches it is exceeded). ``assume`` is the older spelling of the same
    key, still read."""

    horizon: str = "infinite"
    hint: str = (
        "set spec.activeDeadlineSeconds or the annotation gpuquota.io/max-runtime (e.g. 72h) to bound its operations"
    )

    @model_validator(mode="before")
    @classmethod
    def _older_spelling(cls, data: Any) -> Any:
        if isinstance(data, dict) and "assume" in data:
            if "horizon" in data:
                raise ValueError("horizon and assume are the same setting (assume is its older spelling): set one")
            data = {("horizon" if k == "assume" else k): v for k, v in data.items()}
        return data

    @field_validator("horizon")
    @classmethod
    def _duration(cls, value: str) -> str:
        if value != "infinite":
            seconds = parse_duration(value, bare_seconds=True)
            if not seconds > 0:
                raise ValueError(f"{value!r}: a horizon is a positive duration (or infinite)")
        return value

    @property
    def horizon_seconds(self) -> float | None:
        return None if self.horizon == "infinite" else parse_duration(self.horizon, bare_seconds=True)


class OverrunSpec(_Spec):
    """What the reconciler does about a running workload past its declared runtime (``gpuquota.io/max-runtime``,
    ``activeDeadlineSeconds``). ``alert``: report it (metric, alert, log line); ``stop``: also stop it, through its
    kind's own suspend field where it has one, else by deleting it. Its excess is charged either way."""

    action: OverrunAction = OverrunAction.ALERT


class OperationsSpec(_Spec):
    """How hardware time becomes operations: TPP ÷ bitLength × 10¹² × utilisation per second."""

    bit_length: int = 16
    utilisation: Number = Field(default=1.0, gt=0, le=1)
    unbounded_runtime: UnboundedRuntimeSpec = Field(default_factory=UnboundedRuntimeSpec)

    @field_validator("bit_length")
    @classmethod
    def _bits(cls, value: int) -> int:
        if value not in BIT_LENGTHS:
            raise ValueError(f"{value} is not a bit length the TPP definition uses; expected one of {BIT_LENGTHS}")
        return value


class SourceSpec(_Spec):
    id: str
    text: str


class ProfileSpec(_Spec):
    schema_version: int = Field(default=1, alias="schema")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{0,62}$")
    version: Text = Field(min_length=1)
    effective: date
    description: str = ""
    sources: tuple[SourceSpec, ...] = ()
    tiers: tuple[TierSpec, ...] = ()
    default_tier: str
    unknown_jurisdiction: UnknownJurisdictionSpec = Field(default_factory=UnknownJurisdictionSpec)
    default_model: str | None = None
    unknown_model_tpp: Number = Field(default=UNKNOWN_MODEL_TPP, gt=0)
    shared_gpu_fraction: Number = Field(default=0.5, gt=0, le=1)
    operations: OperationsSpec = Field(default_factory=OperationsSpec)
    overrun: OverrunSpec = Field(default_factory=OverrunSpec)
    rules: tuple[RuleSpec, ...] = ()

    @field_validator("schema_version")
    @classmethod
    def _schema(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"schema {value} is not supported by this gpuquota (it reads schema 1)")
        return value

    @model_validator(mode="after")
    def _cross_references(self) -> ProfileSpec:
        names: dict[str, int] = {}
        for index, tier in enumerate(self.tiers):
            if tier.name in names:
                raise ValueError(f"tiers[{index}].name: duplicate tier {tier.name!r} (also tiers[{names[tier.name]}])")
            names[tier.name] = index
        if self.default_tier not in names:
            raise ValueError(f"defaultTier: {self.default_tier!r} is not one of the tiers {sorted(names)}")
        seen: dict[str, str] = {}
        for index, tier in enumerate(self.tiers):
            for code in tier.jurisdictions:
                if code in seen and seen[code] != tier.name:
                    raise ValueError(f"tiers[{index}].jurisdictions: {code} is already in tier {seen[code]!r}")
                seen[code] = tier.name
        ids: dict[str, int] = {}
        for index, rule in enumerate(self.rules):
            if rule.id in ids:
                raise ValueError(f"rules[{index}].id: duplicate rule id {rule.id!r} (also rules[{ids[rule.id]}])")
            ids[rule.id] = index
            for field_name in ("tiers", "exclude_tiers"):
                listed: tuple[str, ...] | None = getattr(rule.match, field_name)
                for tier_name in listed or ():
                    if tier_name not in names:
                        raise ValueError(
                            f"rules[{index}] ({rule.id}).match.{to_camel(field_name)}: unknown tier {tier_name!r}; "
                            f"tiers are {sorted(names)}"
                        )
        return self
