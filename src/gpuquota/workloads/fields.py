"""Typed reads of manifest fields with the checks the API server would make, and bounds it would not.

Manifests reach the enforcer as plain JSON/YAML trees; every read here either returns the expected type or
raises ``WorkloadError`` naming the field path. Paths are built by the callers only as far as they need them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from gpuquota.workloads.errors import WorkloadError

MAX_PODS = 100_000
"""Most pods one workload (or one role of it) may ask for: far above any real training run, low enough to
catch a typo or an overflow (KubeRay's unset ``maxReplicas`` defaults to 2,147,483,647)."""

MAX_GPUS_PER_CONTAINER = 64
"""Most units of one GPU resource a container may request (8 GPUs × 7 MIG slices fits)."""

MAX_DEADLINE_S = 10 * 366 * 86_400
"""Longest run time accepted from a deadline or annotation (ten years): above it the value is a mistake."""

_EMPTY: Mapping[str, Any] = {}


_TYPE_NAMES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (type(None), "null"),
    (bool, "boolean"),
    ((int, float), "number"),
    (str, "string"),
    (Mapping, "mapping"),
    (Sequence, "list"),
)


def type_name(value: object) -> str:
    """The JSON name of a value's type, for messages."""
    for types, name in _TYPE_NAMES:
        if isinstance(value, types):
            return name
    return type(value).__name__


def mapping(parent: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> Mapping[str, Any]:
    """``parent[key]`` as a mapping; absent or null gives an empty one unless ``required``."""
    value = parent.get(key)
    if value is None:
        if required:
            raise WorkloadError("is required", path=path)
        return _EMPTY
    if not isinstance(value, Mapping):
        raise WorkloadError(f"must be a mapping, got {type_name(value)}", path=path)
    return value


def sequence(parent: Mapping[str, Any], key: str, path: str) -> Sequence[Any]:
    """``parent[key]`` as a list; absent or null gives an empty one."""
    value = parent.get(key)
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise WorkloadError(f"must be a list, got {type_name(value)}", path=path)
    return value


def mappings(parent: Mapping[str, Any], key: str, path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``parent[key]`` as a list of mappings, each with its field path (``path[i]``); a non-mapping item is refused."""
    for index, item in enumerate(sequence(parent, key, path)):
        where = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            raise WorkloadError(f"must be a mapping, got {type_name(item)}", path=where)
        yield where, item


def optional_str(parent: Mapping[str, Any], key: str, path: str) -> str | None:
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise WorkloadError(f"must be a string, got {type_name(value)}", path=path)
    return value


def integer(value: object, path: str, *, minimum: int = 0, maximum: int = MAX_PODS) -> int:
    """A whole number within bounds. Numeric strings are refused as the API server refuses them."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WorkloadError(f"must be a whole number, got {type_name(value)} {value!r}", path=path)
    if isinstance(value, float):
        if not value.is_integer():
            raise WorkloadError(f"must be a whole number, got {value!r}", path=path)
        value = int(value)
    if value < minimum:
        raise WorkloadError(f"must be at least {minimum}, got {value}", path=path)
    if value > maximum:
        raise WorkloadError(f"{value} is above the accepted maximum of {maximum:,}", path=path)
    return value


def optional_int(
    parent: Mapping[str, Any], key: str, path: str, *, minimum: int = 0, maximum: int = MAX_PODS
) -> int | None:
    value = parent.get(key)
    if value is None:
        return None
    return integer(value, path, minimum=minimum, maximum=maximum)


def count(parent: Mapping[str, Any], key: str, path: str, default: int) -> int:
    """A replica-like count: absent means ``default`` (the API's own default)."""
    value = parent.get(key)
    if value is None:
        return default
    return integer(value, path)


def deadline(parent: Mapping[str, Any], key: str, path: str) -> int | None:
    """An ``activeDeadlineSeconds``-style bound: positive seconds, or ``None`` when unset."""
    return optional_int(parent, key, path, minimum=1, maximum=MAX_DEADLINE_S)


# Kubernetes resource.Quantity: a signed decimal with an optional binary/decimal SI suffix or exponent.
_QUANTITY = re.compile(r"^([+-]?)(\d+(?:\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$", re.ASCII)
_SUFFIX = {
    "": 1,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def device_count(value: object, path: str, *, maximum: int = MAX_GPUS_PER_CONTAINER) -> int:
    """An extended-resource quantity (``nvidia.com/gpu: 8`` or ``"8"``): Kubernetes allows only whole units.
    ``maximum``: devices per container by default; HAMi's percentages and MiB have their own bounds."""
    if isinstance(value, int) and not isinstance(value, bool):
        number: float = value
    elif isinstance(value, float):
        number = value
    elif isinstance(value, str):
        match = _QUANTITY.match(value)
        if match is None:
            raise WorkloadError(f"{value!r} is not a Kubernetes quantity", path=path)
        sign, digits, suffix = match.groups()
        exponent = bool(suffix) and suffix[0] in "eE"
        # An exponent is parsed by float() so that 1e400 overflows to inf (refused below) instead of raising.
        number = float(digits + suffix) if exponent else float(digits) * _SUFFIX[suffix or ""]
        if sign == "-":
            number = -number
    else:
        raise WorkloadError(f"must be a quantity, got {type_name(value)} {value!r}", path=path)
    if not math.isfinite(number):
        raise WorkloadError(f"{value!r} is not a finite quantity", path=path)
    if number < 0:
        raise WorkloadError(f"must not be negative, got {value!r}", path=path)
    if number != int(number):
        raise WorkloadError(f"devices are whole units; {value!r} is fractional", path=path)
    if number > maximum:
        raise WorkloadError(f"{value!r} is above the accepted maximum of {maximum} per container", path=path)
    return int(number)
