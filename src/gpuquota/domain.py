"""Value types shared by every layer: what a workload asks for, who asks, what is used, what was decided.

They live in one small module so that the pure core (``catalog``, ``policy``, ``workloads``) and the shell
(``admission``, ``ledger``, ``inventory``) agree on one vocabulary without importing each other. Every type is
an immutable, slotted dataclass: decisions are computed on the admission hot path and must be cheap to build
and safe to share between threads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum


class Purpose(StrEnum):
    """Why the GPUs are wanted; rules match on it (a cap may cover training only)."""

    TRAINING = "training"
    FINE_TUNING = "fine-tuning"
    INFERENCE = "inference"


class Weights(StrEnum):
    """Whether the resulting model weights are published (4E091 controls closed weights only)."""

    OPEN = "open"
    CLOSED = "closed"


class GpuClass(StrEnum):
    """ECCN 3A090 classification of an accelerator."""

    A090_A = "3A090.a"
    A090_B = "3A090.b"
    UNCONTROLLED = "uncontrolled"


class Scope(StrEnum):
    """Whose usage a cap is counted against."""

    TENANT = "tenant"
    JURISDICTION = "jurisdiction"
    TIER = "tier"
    CLUSTER = "cluster"


class Metric(StrEnum):
    """What a cap counts: hardware held at once (TPP) or compute spent (operations, FLOP)."""

    CONCURRENT_TPP = "concurrent-tpp"
    OPERATIONS = "operations"


class Action(StrEnum):
    """What happens when a rule's cap would be exceeded."""

    DENY = "deny"
    WARN = "warn"
    AUDIT = "audit"


class OverrunAction(StrEnum):
    """What the reconciler does about a running workload past its declared runtime (the profile's
    ``overrun.action``). Either way its excess is accrued and charged, and it is reported."""

    ALERT = "alert"  # report it: metric, alert, log line
    STOP = "stop"  # and stop it: the kind's own suspend field where it has one, else delete it


class ModelSource(StrEnum):
    """How the GPU model of a demand was found — tenants and auditors need to know when it was guessed."""

    SELECTOR = "selector"  # nodeSelector / required affinity on the product label
    RESOURCE = "resource"  # implied by the resource name (a MIG profile of a known parent)
    INVENTORY = "inventory"  # most powerful model the cluster inventory holds (no selector)
    DEFAULT = "default"  # the policy's default model (no selector, no inventory)
    UNKNOWN = "unknown"  # a product the catalog does not know: counted as the most powerful catalog GPU


# The window of an OPERATIONS usage key: "calendar-year:2026", "rolling-30d:2026-11-26" (the 30 days ending on,
# and including, that day) or "total". CONCURRENT_TPP keys always use the window "now".
CONCURRENT_WINDOW = "now"
TOTAL_WINDOW = "total"


def calendar_year_window(day: date) -> str:
    return f"calendar-year:{day.year}"


def rolling_window(days: int, day: date) -> str:
    return f"rolling-{days}d:{day.isoformat()}"


@dataclass(frozen=True, slots=True)
class Window:
    """A parsed window: the first and last day (inclusive) it sums, or neither for ``now``/``total``."""

    kind: str  # "now", "total", "calendar-year", "rolling"
    first: date | None = None
    last: date | None = None


def parse_window(window: str) -> Window:
    """Inverse of the window builders; raises ``ValueError`` for anything else."""
    if window in (CONCURRENT_WINDOW, TOTAL_WINDOW):
        return Window(window)
    kind, _, arg = window.partition(":")
    if kind == "calendar-year" and arg.isdigit():
        year = int(arg)
        return Window(kind, date(year, 1, 1), date(year, 12, 31))
    if kind.startswith("rolling-") and kind.endswith("d") and kind[8:-1].isdigit():
        days = int(kind[8:-1])
        last = date.fromisoformat(arg)
        if days < 1:
            raise ValueError(f"rolling window of {days} days")
        return Window("rolling", last - timedelta(days=days - 1), last)
    raise ValueError(f"unknown usage window {window!r}")


@dataclass(frozen=True, slots=True)
class UsageKey:
    """One counter in the ledger: a scope's subject, a metric and a window.

    ``subject`` is the tenant name, the ISO 3166-1 alpha-2 code, the tier name, or ``"cluster"``.
    """

    scope: Scope
    subject: str
    metric: Metric
    window: str = CONCURRENT_WINDOW


Usage = Mapping[UsageKey, float]
"""What is already used, per key. A key that is absent counts as zero."""


_CLASS_RANK = {GpuClass.UNCONTROLLED: 0, GpuClass.A090_B: 1, GpuClass.A090_A: 2}


def class_rank(gpu_class: GpuClass) -> int:
    """Order of control: 3A090.a above 3A090.b above uncontrolled (a workload takes its highest class)."""
    return _CLASS_RANK[gpu_class]


@dataclass(frozen=True, slots=True)
class PodGroup:
    """Identical pods of one role of a workload (a PyTorchJob's workers, a RayCluster worker group).

    ``gpus_per_pod`` counts physical GPUs: a MIG slice or a time-sliced share contributes the fraction of a
    GPU it can use (never zero). ``model`` is the catalog key counted — the most powerful candidate when the
    pods may land on several models.
    """

    role: str
    pods: int
    gpus_per_pod: float
    model: str
    model_source: ModelSource
    tpp_per_gpu: float
    gpu_class: GpuClass

    @property
    def gpus(self) -> float:
        return self.pods * self.gpus_per_pod

    @property
    def tpp(self) -> float:
        return self.gpus * self.tpp_per_gpu


@dataclass(frozen=True, slots=True)
class Demand:
    """What one workload asks for, in physical-GPU equivalents and TPP, with what the policy matches on.

    ``groups`` holds only the roles that request GPUs. ``max_runtime_s`` is ``None`` when nothing bounds the
    runtime; the policy decides what an unbounded run means for operations caps.
    """

    kind: str
    namespace: str
    name: str
    groups: tuple[PodGroup, ...]
    purpose: Purpose = Purpose.TRAINING
    weights: Weights = Weights.CLOSED
    base_model: str | None = None
    max_runtime_s: float | None = None
    warnings: tuple[str, ...] = ()
    api_version: str = ""

    @property
    def pods(self) -> int:
        return sum(g.pods for g in self.groups)

    @property
    def gpus(self) -> float:
        """Physical-GPU equivalents of the whole workload."""
        return sum(g.gpus for g in self.groups)

    @property
    def tpp(self) -> float:
        """Total TPP the workload can hold at once."""
        return sum(g.tpp for g in self.groups)

    @property
    def primary(self) -> PodGroup | None:
        """The group holding the most TPP: its model names the workload in messages."""
        return max(self.groups, key=lambda g: g.tpp, default=None)

    @property
    def model(self) -> str | None:
        primary = self.primary
        return None if primary is None else primary.model

    @property
    def gpu_class(self) -> GpuClass:
        """The highest 3A090 class among the groups (a rule on 3A090.a catches any group of it)."""
        return max((g.gpu_class for g in self.groups), key=class_rank, default=GpuClass.UNCONTROLLED)


@dataclass(frozen=True, slots=True)
class Exemption:
    """A status or licence granted to a tenant by the operator (never by the tenant).

    ``kind`` is matched against a rule's ``exemptions`` list (e.g. ``veu``, ``licence``). A licence with
    ``amount`` raises the cap of the rules it covers by that amount (in the rule's unit); without an amount it
    lifts them. ``rules`` narrows it to rule ids (empty: every rule that accepts this kind). An exemption past
    ``expires`` (inclusive of that day) no longer applies.
    """

    kind: str
    id: str = ""
    rules: tuple[str, ...] = ()
    amount: float | None = None
    expires: date | None = None

    def active_on(self, day: date) -> bool:
        return self.expires is None or day <= self.expires


@dataclass(frozen=True, slots=True)
class Tenant:
    """An organisation the operator enforces caps on. ``jurisdiction`` is its HQ country (ISO alpha-2), or
    ``None`` when the admin has not set one — the policy's ``unknownJurisdiction`` action then applies."""

    name: str
    jurisdiction: str | None
    exemptions: tuple[Exemption, ...] = ()
    namespaces: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Charge:
    """One counter a reservation increments, with the cap the ledger must re-check inside its transaction.

    ``cap`` is ``None`` for counters that are only metered (audit/warn rules, the base usage counters).
    """

    key: UsageKey
    amount: float
    cap: float | None = None
    rule_id: str | None = None


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """How one matching rule judged the demand, with the figures a tenant needs to act on it."""

    rule_id: str
    description: str
    action: Action
    key: UsageKey
    requested: float
    used: float
    cap: float
    exceeded: bool
    warn_threshold: float | None = None  # fraction of the cap above which a warning is given
    fits_gpus: float | None = None  # how many GPUs of the demanded model would still fit under this cap
    exempted_by: str | None = None  # id/kind of the exemption that lifted or raised this cap
    message: str = ""

    @property
    def remaining(self) -> float:
        return max(0.0, self.cap - self.used)

    @property
    def utilisation_after(self) -> float:
        """Fraction of the cap used if the demand were admitted (inf for a zero cap with a positive demand)."""
        total = self.used + self.requested
        if self.cap > 0:
            return total / self.cap
        return 0.0 if total <= 0 else float("inf")


@dataclass(frozen=True, slots=True)
class Decision:
    """The pure verdict on one demand. ``charges`` is what the ledger reserves if the workload is admitted."""

    allowed: bool
    message: str
    tier: str | None
    profile: str
    profile_version: str
    outcomes: tuple[RuleOutcome, ...] = ()
    warnings: tuple[str, ...] = ()
    charges: tuple[Charge, ...] = ()
    operations: float | None = None  # operations the demand may spend (None: unbounded)
    operations_per_second: float = 0.0  # rate at full allocation: settles actual usage from actual runtime
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def denying_rules(self) -> tuple[RuleOutcome, ...]:
        return tuple(o for o in self.outcomes if o.exceeded and o.action is Action.DENY)
