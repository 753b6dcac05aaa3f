"""The growth of an UPDATE: what a scaled-up workload adds to what was admitted before.

Only growth is charged; shrinking is settled by the reconciler from what actually runs. A change to what the
policy matches on (purpose, weights, base model, a longer or removed runtime bound) is not growth of a group but
a different workload, so the whole new demand is returned and checked.
"""

from __future__ import annotations

from dataclasses import replace

from gpuquota.domain import Demand, PodGroup


def _longer(old: float | None, new: float | None) -> bool:
    if new is None:
        return old is not None
    return old is not None and new > old


def _group_growth(old: PodGroup | None, new: PodGroup) -> PodGroup | None:
    if old is None:
        return new
    per_pod_old = old.gpus_per_pod * old.tpp_per_gpu
    per_pod_new = new.gpus_per_pod * new.tpp_per_gpu
    if new.gpus_per_pod <= old.gpus_per_pod and per_pod_new <= per_pod_old and new.model == old.model:
        # Same or smaller pods: only the added pods are new (the old reservation covers the rest).
        added = new.pods - old.pods
        return replace(new, pods=added) if added > 0 else None
    # Bigger pods, or another model: the new pods replace the old ones and may overlap with them.
    return new


def scale_delta(old: Demand, new: Demand) -> Demand | None:
    """What ``new`` asks for beyond ``old``, group by group (matched by role); ``None`` if nothing grows.

    Invariant (tested): for every group, old + delta covers new in GPUs and TPP.
    """
    if (
        old.purpose != new.purpose
        or old.weights != new.weights
        or old.base_model != new.base_model
        or _longer(old.max_runtime_s, new.max_runtime_s)
    ):
        return new
    before = {group.role: group for group in old.groups}
    grown = tuple(g for g in (_group_growth(before.get(n.role), n) for n in new.groups) if g is not None)
    if not grown:
        return None
    return replace(new, groups=grown)
