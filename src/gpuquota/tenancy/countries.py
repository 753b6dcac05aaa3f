"""ISO 3166-1 alpha-2 codes: the only spelling of a jurisdiction gpuquota accepts.

Jurisdictions end up in ledger keys, metric labels and tier lists, so a typo ("UK" for GB) must fail loudly at
load time rather than silently fall into a default tier.
"""

from __future__ import annotations

from functools import cache

import pycountry

from gpuquota.errors import UserError


@cache
def country_codes() -> frozenset[str]:
    """Every current ISO 3166-1 alpha-2 code (from pycountry, loaded once)."""
    return frozenset(str(c.alpha_2) for c in pycountry.countries)


def yaml_country(value: object) -> object:
    """YAML 1.1 reads an unquoted ``NO`` (Norway) as ``false``; give the operator the country they wrote."""
    return "NO" if value is False else value


def is_country(code: str) -> bool:
    return code.upper() in country_codes()


def validate_country(code: str) -> str:
    """The upper-cased code, or a UserError that says the value is not an ISO 3166-1 alpha-2 code."""
    if not isinstance(code, str):
        raise UserError(f"{code!r} is not an ISO 3166-1 alpha-2 country code (expected two letters, e.g. JP)")
    upper = code.strip().upper()
    if upper not in country_codes():
        hint = " (the United Kingdom is GB)" if upper == "UK" else ""
        raise UserError(f"{code!r} is not an ISO 3166-1 alpha-2 country code{hint}")
    return upper
