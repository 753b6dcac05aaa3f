"""The check's decisions, as pure functions: what to do with a Workload (``step``) and which state its
admission check gets (``verdict``). No I/O here; ``gpuquota.kueue.controller`` reads and writes.

- Kueue asks (the check is ``Pending`` or ``Retry`` on a Workload holding Kueue quota, not evicted): judge it.
  Caps allow → ``Ready`` (the shell reserves first). They do not yet → ``Pending``, with the policy's own message
  (what is used, what is asked, what fits); Kueue keeps the Workload queued and we look again on every pass.
  It could never fit — denied even on an empty ledger (a per-workload rule: Tier 3 asking for 3A090 parts, a run
  above the cap on its own) → ``Rejected``, which makes Kueue deactivate it.
- Kueue dropped the quota of a Workload we reserved for (evicted or deactivated): Kueue drops it only once the
  owner's pods are no longer active, so the GPUs are gone — ``release``. A finished Workload is not ours to settle:
  its owner finished, and the reconciler settles the owner's reservation from the pods' real run times.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum
from typing import Final

from gpuquota.clusters import DEFAULT_CLUSTER
from gpuquota.domain import Decision, Demand, Tenant, Usage
from gpuquota.kueue.workload import Workload
from gpuquota.policy import Policy, decide
from gpuquota.policy import format as fmt

CONTROLLER_NAME: Final = "gpuquota.io/compute-cap"
MESSAGE_LIMIT: Final = 4096  # Kueue allows 32,768; a status people read stays short
REQUEST_PREFIX: Final = "kueue/"  # request_uid of the check's reservations: kueue/<workload uid>/<quota reserved at>


class CheckState(StrEnum):
    PENDING = "Pending"
    READY = "Ready"
    RETRY = "Retry"
    REJECTED = "Rejected"


class Step(Enum):
    NOTHING = "nothing"
    JUDGE = "judge"
    RELEASE = "release"


class Reason(StrEnum):
    """Why a Workload is in the state it is (the metrics' ``reason`` label)."""

    ADMITTED = "admitted"
    NO_GPU = "no-gpu"
    CAP = "cap"  # waiting for room under a cap
    NEVER_FITS = "never-fits"  # rejected by a per-workload rule
    INVALID = "invalid"  # its PodSets cannot be read
    NO_TENANT = "unknown-jurisdiction"


@dataclass(frozen=True, slots=True)
class Verdict:
    state: CheckState
    message: str
    reason: Reason

    @property
    def reserves(self) -> bool:
        return self.state is CheckState.READY and self.reason is Reason.ADMITTED


def request_uid(workload: Workload) -> str:
    """The idempotency key of the reservation for this quota reservation of this Workload: a retried pass finds
    its own reservation (``DUPLICATE``); a Workload evicted, released and queued again reserves afresh."""
    return f"{REQUEST_PREFIX}{workload.uid}/{workload.quota_reserved_at or ''}"


def made_for(workload_uid: str, request: str) -> bool:
    return request.startswith(f"{REQUEST_PREFIX}{workload_uid}/")


def step(workload: Workload, check: str, holds: bool) -> Step:
    """What ``check`` (an AdmissionCheck of ours listed on the Workload) calls for. ``holds``: an active
    reservation the check made for this Workload is in the ledger."""
    state = workload.check(check)
    if state is None or workload.finished:
        return Step.NOTHING
    if workload.quota_reserved_at is None:
        return Step.RELEASE if holds else Step.NOTHING
    if workload.evicted or not workload.active:
        return Step.NOTHING  # its pods may still run: wait until Kueue drops its quota
    if state.state in (CheckState.PENDING, CheckState.RETRY):
        return Step.JUDGE
    return Step.NOTHING


def _clip(text: str) -> str:
    return fmt.clip(text, MESSAGE_LIMIT)


def verdict(demand: Demand | None, tenant: Tenant, usage: Usage, policy: Policy, now: datetime, *,
            cluster: str = DEFAULT_CLUSTER) -> tuple[Verdict, Decision | None]:
    """The check state for ``demand`` given what the ledger counts (``usage``), and the decision it rests on
    (``None`` without GPUs). A denial is ``Rejected`` only when the demand is denied on an empty ledger too.
    ``cluster`` is where perCluster rules count (the check's own cluster, as for the webhook beside it)."""
    if demand is None:
        return Verdict(CheckState.READY, "gpuquota: no GPUs requested", Reason.NO_GPU), None
    decision = decide(demand, tenant, usage, policy, now=now, cluster=cluster)
    if decision.allowed:
        notes = "".join(f" Warning: {w}" for w in decision.warnings)
        return Verdict(CheckState.READY, _clip(
            f"gpuquota: {fmt.tpp(demand.tpp)} TPP ({demand.gpus:g} GPUs) reserved for tenant {tenant.name}.{notes}"),
            Reason.ADMITTED), decision
    alone = decide(demand, tenant, {}, policy, now=now, cluster=cluster)
    if not alone.allowed:
        reason = Reason.NO_TENANT if tenant.jurisdiction is None else Reason.NEVER_FITS
        return Verdict(CheckState.REJECTED, _clip(f"gpuquota: can never be admitted: {alone.message}"),
                       reason), alone
    return Verdict(CheckState.PENDING, _clip(f"gpuquota: waiting for room under the compute cap: {decision.message}"),
                   Reason.CAP), decision


def invalid(message: str) -> Verdict:
    """A Workload whose PodSets gpuquota cannot read can never be judged: rejected, with the reason."""
    return Verdict(CheckState.REJECTED, _clip(f"gpuquota: cannot read the Workload: {message}"), Reason.INVALID)
