"""Declarations read from annotations: purpose, weights, base model and the runtime bound."""

from __future__ import annotations

import pytest

from gpuquota.domain import Purpose, Weights
from gpuquota.workloads import WorkloadError
from gpuquota.workloads.annotations import base_model, max_runtime, parse_duration, purpose, weights


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("72h", 72 * 3600),
        ("90m", 5400),
        ("3d", 3 * 86400),
        ("3600s", 3600),
        ("1h30m", 5400),
        ("1.5h", 5400),
        (" 2d12h ", 60 * 3600),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "p") == seconds


@pytest.mark.parametrize("text", ["", "72", "h", "3 days", "1w", "-1h", "1h 30m", "10y", "1h-"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(WorkloadError) as info:
        parse_duration(text, "metadata.annotations[gpuquota.io/max-runtime]")
    assert info.value.path == "metadata.annotations[gpuquota.io/max-runtime]"


@pytest.mark.parametrize(
    ("annotation", "deadline", "expected"),
    [(None, None, None), ("2h", None, 7200.0), (None, 600, 600.0), ("2h", 600, 600.0), ("10m", 3600, 600.0)],
)
def test_the_smaller_bound_wins(annotation: str | None, deadline: int | None, expected: float | None) -> None:
    notes = {} if annotation is None else {"gpuquota.io/max-runtime": annotation}
    assert max_runtime(notes, deadline) == expected


def test_defaults_are_conservative() -> None:
    assert purpose({}) is Purpose.TRAINING
    assert weights({}) is Weights.CLOSED
    assert base_model({}) is None


def test_values_are_case_insensitive_and_trimmed() -> None:
    assert purpose({"gpuquota.io/purpose": " Fine-Tuning "}) is Purpose.FINE_TUNING
    assert weights({"gpuquota.io/weights": "OPEN"}) is Weights.OPEN
    assert base_model({"gpuquota.io/base-model": "  mistralai/Mixtral-8x7B-v0.1 "}) == "mistralai/Mixtral-8x7B-v0.1"
    assert base_model({"gpuquota.io/base-model": "  "}) is None
