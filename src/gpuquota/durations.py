"""Durations written by people: ``72h``, ``90m``, ``3d``, ``3600s`` or sums such as ``1h30m``.

Both the policy file (``operations.unboundedRuntime.assume``) and a workload's ``gpuquota.io/max-runtime``
annotation take a duration; one grammar here keeps the two from drifting apart. Each caller adds its own bounds
and wraps ``DurationError`` in its own error type, so the messages name the field the user wrote.
"""

from __future__ import annotations

import math
import re

UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}
EXAMPLES = "72h, 90m, 3d or 3600s"

_TERM = re.compile(r"(\d+(?:\.\d+)?)([smhd])", re.ASCII)


class DurationError(ValueError):
    """Text that is not a duration; the message says what was expected and is fit to show a user."""


def parse_duration(text: str, *, bare_seconds: bool = False) -> float:
    """Seconds (never negative) for ``text``; ``bare_seconds`` also takes a plain number such as ``3600``.

    Leading and trailing white space is ignored; white space between terms is not (``1h 30m`` is refused).
    """
    compact = text.strip()
    if not compact:
        raise DurationError(f"is empty; expected a duration such as {EXAMPLES}")
    position = 0
    seconds = 0.0
    for match in _TERM.finditer(compact):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position == len(compact):
        return seconds
    if bare_seconds and position == 0:
        number = _number(compact)
        if number is not None and math.isfinite(number) and number >= 0:
            return number
    accepted = "units s, m, h, d, or a number of seconds" if bare_seconds else "units s, m, h, d"
    raise DurationError(f"{text!r} is not a duration; expected e.g. {EXAMPLES} ({accepted})")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
