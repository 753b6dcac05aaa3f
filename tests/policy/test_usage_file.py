"""Usage files for `gpuquota check --usage`: format, window resolution, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuquota.domain import Metric, Scope, UsageKey
from gpuquota.errors import UserError
from gpuquota.policy.usage_file import load_usage
from tests.policy.builders import TODAY

USAGE = """
usage:
  - {scope: tenant, subject: globex, metric: concurrent-tpp, amount: 20000000}
  - {scope: tenant, subject: globex, metric: concurrent-tpp, amount: 1000000}   # repeated keys add up
  - {scope: jurisdiction, subject: BR, metric: operations, amount: 1.0e+24}
  - {scope: cluster, subject: cluster, metric: operations, window: rolling-30d, amount: 5e23}
  - {scope: tier, subject: tier-2, metric: operations, window: "calendar-year:2025", amount: 7}
"""


def test_usage_file(tmp_path: Path) -> None:
    path = tmp_path / "usage.yaml"
    path.write_text(USAGE)
    usage = load_usage(path, TODAY)
    assert usage == {
        UsageKey(Scope.TENANT, "globex", Metric.CONCURRENT_TPP): 21_000_000,
        UsageKey(Scope.JURISDICTION, "BR", Metric.OPERATIONS, "calendar-year:2026"): 1e24,
        UsageKey(Scope.CLUSTER, "default", Metric.OPERATIONS, "rolling-30d:2026-11-26"): 5e23,
        UsageKey(Scope.TIER, "tier-2", Metric.OPERATIONS, "calendar-year:2025"): 7,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("usage:\n  - {scope: tenant, subject: a, metric: concurrent-tpp, amount: -1}\n", "usage[0]: amount"),
        ("usage:\n  - {scope: planet, subject: a, metric: concurrent-tpp, amount: 1}\n", "usage[0]: scope"),
        ("usage:\n  - {scope: tenant, subject: a, metric: concurrent-tpp, amount: lots}\n", "usage[0]: amount"),
        ("usage:\n  - {scope: tenant, subject: a, metric: operations, window: soon, amount: 1}\n", "usage[0].window"),
        (
            "usage:\n  - {scope: tenant, subject: a, metric: concurrent-tpp, window: calendar-year, amount: 1}\n",
            "has no window",
        ),
        ("counters: []\n", "expected a mapping with a 'usage' list"),
        ("usage: [\n", "not valid YAML"),
    ],
)
def test_bad_usage_files(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "usage.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_usage(path, TODAY)
    assert str(info.value).startswith(str(path))
    assert expected in str(info.value)


def test_empty_file_is_no_usage(tmp_path: Path) -> None:
    path = tmp_path / "usage.yaml"
    path.write_text("")
    assert load_usage(path, TODAY) == {}
