"""The one duration grammar shared by the policy file and the max-runtime annotation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuquota.durations import DurationError, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("72h", 259_200.0), ("1h30m", 5400.0), ("1.5h", 5400.0), (" 2d12h ", 216_000.0), ("0s", 0.0)],
)
def test_units_and_sums(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(text, bare_seconds=True) == seconds


@pytest.mark.parametrize("text", ["72", "h", "1h 30m", "1w", "-1h", "1h-", "3600"])
def test_a_unit_is_required_by_default(text: str) -> None:
    with pytest.raises(DurationError, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(("text", "seconds"), [("3600", 3600.0), (" 90.5 ", 90.5), ("0", 0.0)])
def test_bare_seconds_when_asked(text: str, seconds: float) -> None:
    assert parse_duration(text, bare_seconds=True) == seconds


@pytest.mark.parametrize("text", ["forever", "-1", "inf", "nan", "1h-", "5x"])
def test_bare_seconds_are_finite_and_not_negative(text: str) -> None:
    with pytest.raises(DurationError, match="or a number of seconds"):
        parse_duration(text, bare_seconds=True)


def test_empty_text_says_so() -> None:
    with pytest.raises(DurationError, match="is empty"):
        parse_duration("  ", bare_seconds=True)


@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from("smhd")), min_size=1, max_size=4))
def test_a_sum_is_the_sum_of_its_terms(terms: list[tuple[int, str]]) -> None:
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
    text = "".join(f"{amount}{letter}" for amount, letter in terms)
    assert parse_duration(text) == sum(amount * unit[letter] for amount, letter in terms)
