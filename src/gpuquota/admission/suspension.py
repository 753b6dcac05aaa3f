"""What a CREATE or UPDATE does to a suspendable workload's suspension, and so how the webhook judges it — pure.

The rules (docs/webhook.md, "Suspended workloads"), for the kinds whose module names a suspend field:

- ``HELD``: created suspended, or changed while it stays suspended. Nothing runs, so nothing is reserved; it is
  judged as if nothing else were held or spent (per-workload rules, and any cap its demand alone exceeds — a
  Tier 3 tenant's 3A090 parts, a run larger than a cap): what could never be admitted is refused now.
- ``QUEUED``: the same, for a Kueue-managed object (label ``kueue.x-k8s.io/queue-name``): passed, nothing judged
  or reserved — gpuquota's AdmissionCheck admits it inside Kueue's flow (docs/kueue.md).
- ``SUSPENDING``: a running workload being suspended. Always passed (stopping work is never refused) and nothing is
  released here: its GPUs go when its pods go, and the reservation with them (docs/webhook.md).
- ``RESUMING``: un-suspended. Judged like a scale-up from zero — its whole demand, charged, refused at the caps —
  unless the ledger already holds an active reservation for this very object (same uid) covering it: the one
  gpuquota's Kueue AdmissionCheck made when Kueue admitted it, or the one it held before it was suspended. Then it
  passes and nothing is charged twice. The queue-name label plays no part in this: a tenant cannot escape the caps
  by adding it.
- ``NONE``: not suspendable, or not suspended before nor after: the usual path.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from gpuquota.workloads.kind import KindKey
from gpuquota.workloads.suspension import kueue_queue, suspendable, suspended


class Suspension(Enum):
    NONE = "none"
    HELD = "held"
    QUEUED = "queued"
    SUSPENDING = "suspending"
    RESUMING = "resuming"


def suspension(key: KindKey, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> Suspension:
    """How a CREATE (``old`` is ``None``) or UPDATE of an object of kind ``key`` changes its suspension."""
    if not suspendable(key):
        return Suspension.NONE
    now, before = suspended(obj, key), suspended(old, key)
    if not now:
        return Suspension.RESUMING if before else Suspension.NONE
    if old is not None and not before:
        return Suspension.SUSPENDING
    return Suspension.QUEUED if kueue_queue(obj) is not None else Suspension.HELD
