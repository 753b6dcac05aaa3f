"""The figures in tenant messages: short, unambiguous, never 'inf' or 'nan' spelled by Python."""

from __future__ import annotations

import math

import pytest

from gpuquota.policy import format as fmt


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (5.5, "5.5"),
        (999, "999"),
        (1000, "1k"),
        (126_656, "126.7k"),
        (32_423_936, "32.4M"),
        (26_900_000, "26.9M"),
        (790_000_000, "790M"),
        (1.5e9, "1.5G"),
        (math.inf, "unlimited"),
    ],
)
def test_tpp(value: float, text: str) -> None:
    assert fmt.tpp(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "unbounded"),
        (math.inf, "unbounded"),
        (0, "0"),
        (1e26, "1e26"),
        (5.25e23, "5.3e23"),
        (9.99e25, "1e26"),
        (3.2e25, "3.2e25"),
    ],
)
def test_operations(value: float | None, text: str) -> None:
    assert fmt.operations(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (2048, "2,048"), (1699.0, "1,699"), (2.5, "2.5"), (0.25, "0.25"), (math.inf, "unlimited")],
)
def test_count(value: float, text: str) -> None:
    assert fmt.count(value) == text


def test_percent_and_clip() -> None:
    assert fmt.percent(0.8) == "80 %"
    assert fmt.percent(math.inf) == "∞ %"
    assert fmt.clip("abc", 5) == "abc"
    clipped = fmt.clip("x" * 200, 120)
    assert len(clipped) == 120
    assert clipped.endswith("…")
