"""Whether a workload is suspended, and whether Kueue manages it — read from the object, pure.

A suspended workload runs no pods, so it holds no GPUs (docs/workloads.md, "Suspended workloads"): each kind module
names the field that suspends it (``WorkloadKind.suspend``: a Job's ``spec.suspend``, a Kubeflow job's
``spec.runPolicy.suspend``…). Only a literal ``true`` there is suspension: anything else — absent, ``false``, a
string, a field on a path that is not a mapping — counts as running, so a malformed field can never make GPUs go
uncharged (the API server's schema refuses such objects anyway).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from gpuquota.workloads.kind import KindKey
from gpuquota.workloads.registry import BY_KEY

KUEUE_QUEUE_LABEL: Final = "kueue.x-k8s.io/queue-name"
"""The label that hands a workload to Kueue (its LocalQueue's name)."""


def suspendable(key: KindKey) -> bool:
    """Whether objects of this kind can be suspended (their kind module names a suspend field)."""
    kind = BY_KEY.get(key)
    return kind is not None and kind.suspend is not None


def suspended(obj: Mapping[str, Any] | None, key: KindKey) -> bool:
    """Whether ``obj`` (of kind ``key``) says it is suspended; ``False`` for a kind that cannot be."""
    kind = BY_KEY.get(key)
    if obj is None or kind is None or kind.suspend is None:
        return False
    node: Any = obj
    for step in kind.suspend:
        if not isinstance(node, Mapping):
            return False
        node = node.get(step)
    return node is True


def kueue_queue(obj: Mapping[str, Any]) -> str | None:
    """The LocalQueue a Kueue-managed object names (label ``kueue.x-k8s.io/queue-name``), else ``None``.

    The label is the tenant's to set: it only ever decides how a *suspended* object is answered — never whether
    an un-suspended one is charged (``gpuquota.admission.suspension``)."""
    metadata = obj.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
    value = labels.get(KUEUE_QUEUE_LABEL) if isinstance(labels, Mapping) else None
    return value if isinstance(value, str) and value else None
