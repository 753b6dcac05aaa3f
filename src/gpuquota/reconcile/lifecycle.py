"""What a recorded API object says about its run, read by its kind's own reader (``WorkloadKind.observe``) — pure.

The readers live with their kinds (``gpuquota.workloads.lifecycle`` holds the common ones); the starts of the pods
a workload owns are merged in by the caller (``gpuquota.reconcile.plan``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuquota.workloads.kind import KindKey
from gpuquota.workloads.lifecycle import Observation, earliest, observe_pod, observe_status, parse_time
from gpuquota.workloads.registry import BY_KEY

__all__ = ["Observation", "earliest", "observe", "observe_pod", "parse_time"]


def observe(obj: Mapping[str, Any], key: KindKey) -> Observation:
    """The object's own account of its run; a kind gpuquota does not know is read the usual way."""
    kind = BY_KEY.get(key)
    return kind.observe(obj) if kind is not None else observe_status(obj)
