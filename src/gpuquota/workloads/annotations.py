"""What a workload declares about itself: purpose, base model, open weights, and its maximum runtime.

These come from annotations on the workload's own metadata, which the tenant controls, so the defaults are the
conservative ones (training, closed weights, unbounded runtime) and a declared runtime only ever shortens the
bound a deadline field already sets (the smaller of the two wins).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar

from gpuquota import durations
from gpuquota.domain import Purpose, Weights
from gpuquota.workloads.errors import WorkloadError
from gpuquota.workloads.fields import MAX_DEADLINE_S, type_name

PURPOSE = "gpuquota.io/purpose"
BASE_MODEL = "gpuquota.io/base-model"
WEIGHTS = "gpuquota.io/weights"
MAX_RUNTIME = "gpuquota.io/max-runtime"

MAX_BASE_MODEL_LENGTH = 253

_PURPOSES = {p.value: p for p in Purpose}
_WEIGHTS = {w.value: w for w in Weights}
_E = TypeVar("_E", bound=Enum)


def _path(key: str) -> str:
    return f"metadata.annotations[{key}]"


def parse_duration(text: str, path: str) -> float:
    """``72h``, ``90m``, ``3d``, ``3600s`` or sums such as ``1h30m`` → seconds (positive, at most ten years)."""
    try:
        seconds = durations.parse_duration(text)
    except durations.DurationError as error:
        raise WorkloadError(str(error), path=path) from None
    if seconds <= 0:
        raise WorkloadError(f"{text!r} must be longer than zero", path=path)
    if seconds > MAX_DEADLINE_S:
        raise WorkloadError(f"{text!r} is longer than the accepted maximum of ten years", path=path)
    return seconds


def _text(annotations: Mapping[str, Any], key: str) -> str | None:
    value = annotations.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise WorkloadError(f"must be a string, got {type_name(value)}", path=_path(key))
    return value.strip()


def _choice(annotations: Mapping[str, Any], key: str, choices: Mapping[str, _E], default: _E, problem: str) -> _E:
    """The annotation's value among ``choices`` (case-insensitive), ``default`` when absent; ``problem`` follows
    the value in the error, e.g. ``'x' is not a purpose; expected …``."""
    value = _text(annotations, key)
    if value is None:
        return default
    found = choices.get(value.lower())
    if found is None:
        raise WorkloadError(f"{value!r} {problem}", path=_path(key))
    return found


def purpose(annotations: Mapping[str, Any]) -> Purpose:
    return _choice(
        annotations, PURPOSE, _PURPOSES, Purpose.TRAINING, f"is not a purpose; expected one of {', '.join(_PURPOSES)}"
    )


def weights(annotations: Mapping[str, Any]) -> Weights:
    return _choice(annotations, WEIGHTS, _WEIGHTS, Weights.CLOSED, "is not a weights value; expected open or closed")


def base_model(annotations: Mapping[str, Any]) -> str | None:
    value = _text(annotations, BASE_MODEL)
    if not value:
        return None
    if len(value) > MAX_BASE_MODEL_LENGTH:
        raise WorkloadError(
            f"is {len(value)} characters long; at most {MAX_BASE_MODEL_LENGTH} are accepted", path=_path(BASE_MODEL)
        )
    return value


def max_runtime(annotations: Mapping[str, Any], deadline_s: float | None) -> float | None:
    """The smaller of the workload's deadline field and its ``max-runtime`` annotation; ``None`` if neither."""
    value = _text(annotations, MAX_RUNTIME)
    declared = None if value is None else parse_duration(value, _path(MAX_RUNTIME))
    if deadline_s is None:
        return declared
    bound = float(deadline_s)
    return bound if declared is None else min(declared, bound)
