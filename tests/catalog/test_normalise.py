"""GPU model-name normalisation is tenant input read on the event loop: same answers as the straightforward
definition, in time linear in the value's length."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuquota.catalog import load_catalog, normalise_name

_SUFFIX = re.compile(r"(-shared|-mig-\d+g\.\d+gb(\+me)?)$")


def _reference(name: str) -> str:
    """The definition: fold separators and case, then strip suffixes until none is left (quadratic)."""
    folded = re.sub(r"[\s_]+", "-", name.strip()).lower()
    while True:
        stripped = _SUFFIX.sub("", folded)
        if stripped == folded:
            return folded
        folded = stripped


_PIECES = st.sampled_from(["-SHARED", "-shared", "-MIG-1g.10gb", "-mig-3g.40gb+me", "-mig-", "-mig-1g.", "gb", "+me",
                           "-", "_", " ", "H100", "a", "7", "g", ".", "\n", "-sharedx", "-MIG-12g.80GB"])


@given(st.lists(_PIECES, max_size=12).map("".join))
def test_matches_the_definition_on_suffix_soup(name: str) -> None:
    assert normalise_name(name) == _reference(name)


@given(st.text(max_size=40))
def test_matches_the_definition_on_any_text(name: str) -> None:
    assert normalise_name(name) == _reference(name)


@pytest.mark.timeout(30)  # the quadratic version takes minutes on these; linear takes milliseconds
@pytest.mark.parametrize("suffix", ["-SHARED", "-MIG-1g.10gb", "-mig-1g.10gb+me-shared"])
def test_a_megabyte_of_stacked_suffixes_is_one_pass(suffix: str) -> None:
    value = "NVIDIA-H100-80GB-HBM3" + suffix * (1_000_000 // len(suffix))
    assert normalise_name(value) == "nvidia-h100-80gb-hbm3"
    assert load_catalog().get(value) is None  # no label value is that long: unknown, counted as the strongest


def test_a_long_name_is_no_model_but_a_short_one_with_suffixes_is() -> None:
    catalog = load_catalog()
    assert catalog.get("NVIDIA-H100-80GB-HBM3" + "-SHARED" * 5) is not None
    assert catalog.get("NVIDIA-H100-80GB-HBM3" + "-SHARED" * 40) is None
