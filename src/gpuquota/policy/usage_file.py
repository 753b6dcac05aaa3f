"""Current usage from a YAML file, for ``gpuquota check --usage`` (what-if evaluation without a ledger).

Format (docs/policy.md, "Usage files")::

    usage:
      - scope: tenant            # tenant | jurisdiction | tier | cluster
        subject: globex          # tenant name, ISO code, tier name or cluster name ("default"; "cluster" reads so)
        metric: concurrent-tpp   # concurrent-tpp | operations
        amount: 20000000
      - scope: jurisdiction
        subject: BR
        metric: operations
        window: calendar-year    # calendar-year | rolling-<N>d | total, or an exact window (calendar-year:2026)
        amount: 1.0e+24

A window without a date is resolved against the evaluation day, so a file keeps working from one year to the next.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gpuquota.clusters import DEFAULT_CLUSTER
from gpuquota.domain import (
    CONCURRENT_WINDOW,
    TOTAL_WINDOW,
    Metric,
    Scope,
    UsageKey,
    calendar_year_window,
    parse_window,
    rolling_window,
)
from gpuquota.errors import UserError
from gpuquota.policy.schema import Number
from gpuquota.tenancy.validation import describe, one_line

_ROLLING = re.compile(r"^rolling-(\d+)d$")
LEGACY_CLUSTER_SUBJECT = "cluster"
"""The cluster scope's one subject before clusters had names; a usage file may still say it (the default cluster)."""


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    scope: Scope
    subject: str = Field(min_length=1)
    metric: Metric
    window: str | None = None
    amount: Number = Field(ge=0)


def _window(metric: Metric, window: str | None, day: date) -> str:
    if metric is Metric.CONCURRENT_TPP:
        if window not in (None, CONCURRENT_WINDOW):
            raise ValueError(f"a concurrent-tpp figure has no window (got {window!r})")
        return CONCURRENT_WINDOW
    if window is None or window == "calendar-year":
        return calendar_year_window(day)
    rolling = _ROLLING.match(window)
    if rolling:
        return rolling_window(int(rolling.group(1)), day)
    if window == TOTAL_WINDOW:
        return window
    parse_window(window)  # ValueError names the problem
    return window


def parse_usage(document: Any, origin: str, day: date) -> dict[UsageKey, float]:
    """Validate a usage document; repeated keys add up. Errors name the file, the entry and the field."""
    if document is None:
        return {}
    if not isinstance(document, dict) or not isinstance(document.get("usage"), list):
        raise UserError(f"{origin}: expected a mapping with a 'usage' list (see docs/policy.md, 'Usage files')")
    usage: dict[UsageKey, float] = {}
    for index, row in enumerate(document["usage"]):
        try:
            entry = _Entry.model_validate(row)
            subject = entry.subject
            if entry.scope is Scope.CLUSTER and subject == LEGACY_CLUSTER_SUBJECT:
                subject = DEFAULT_CLUSTER
            key = UsageKey(entry.scope, subject, entry.metric, _window(entry.metric, entry.window, day))
        except ValidationError as exc:
            raise UserError(describe(exc, row, f"{origin}: usage[{index}]")) from None
        except ValueError as exc:
            raise UserError(f"{origin}: usage[{index}].window: {exc}") from None
        usage[key] = usage.get(key, 0.0) + entry.amount
    return usage


def load_usage(path: str | Path, day: date) -> dict[UsageKey, float]:
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{path}: cannot read the usage file: {exc.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid YAML: {one_line(exc)}") from None
    return parse_usage(document, str(path), day)
