"""What a recorded API object says about its run: when it started, whether and when it finished — pure.

Workload kinds report this differently (a Job's ``startTime``/``completionTime``, a PyTorchJob's conditions, a
RayJob's ``jobDeploymentStatus``), so each ``WorkloadKind`` names its reader (``observe``); most use
``observe_status``. The pods they own are the common ground: the reconciler counts a workload as started at the
earliest start of any pod it owns, directly or through intermediate controllers (JobSet → Job → Pod).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

JsonObject = Mapping[str, Any]

FINISHED_CONDITIONS = frozenset({"Complete", "Completed", "Succeeded", "Failed"})
RUNNING_CONDITIONS = frozenset({"Running", "Available"})  # Available: a LeaderWorkerSet serving


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def earliest(*times: datetime | None) -> datetime | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


@dataclass(frozen=True, slots=True)
class Observation:
    """``done`` with ``finished=None``: it says it finished but not when (the caller settles at its own clock)."""

    started: datetime | None
    done: bool = False
    finished: datetime | None = None
    outcome: str = ""  # the condition or phase that says it finished (Complete, Failed, Succeeded…)


def _conditions(status: JsonObject) -> list[JsonObject]:
    conditions = status.get("conditions")
    return [c for c in conditions if isinstance(c, Mapping)] if isinstance(conditions, list) else []


def observe_pod(obj: JsonObject) -> Observation:
    status = obj.get("status") or {}
    phase = status.get("phase")
    started = parse_time(status.get("startTime")) if phase in ("Running", "Succeeded", "Failed") else None
    if phase not in ("Succeeded", "Failed"):
        return Observation(started)
    ends = [
        parse_time(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        for cs in status.get("containerStatuses") or []
        if isinstance(cs, Mapping)
    ]
    known = [e for e in ends if e is not None]
    if not known:
        known = [t for c in _conditions(status) if (t := parse_time(c.get("lastTransitionTime"))) is not None]
    return Observation(started, True, max(known) if known else None, str(phase))


def observe_status(obj: JsonObject, finished_outcome: str = "") -> Observation:
    """The usual account: ``status.startTime``, Running/Available conditions for the start, a Complete/Succeeded/
    Failed condition for the end (``completionTime`` or ``endTime`` when set). ``finished_outcome``: a kind-specific
    field already says it finished (a RayJob's ``jobDeploymentStatus``)."""
    status = obj.get("status") or {}
    if not isinstance(status, Mapping):
        return Observation(None)
    started = parse_time(status.get("startTime"))
    finished: datetime | None = None
    outcome = ""
    for cond in _conditions(status):
        if cond.get("status") != "True":
            continue
        ctype = str(cond.get("type"))
        at = parse_time(cond.get("lastTransitionTime"))
        if ctype in RUNNING_CONDITIONS and at is not None:
            started = earliest(started, at)
        if ctype in FINISHED_CONDITIONS:
            outcome, finished = ctype, at or finished
    outcome = finished_outcome or outcome
    if not outcome:
        return Observation(started)
    finished = parse_time(status.get("completionTime")) or parse_time(status.get("endTime")) or finished
    return Observation(started, True, finished, outcome)
