"""Short human figures for messages tenants read in kubectl: ``32.4M TPP``, ``1,699``, ``3.2e25``."""

from __future__ import annotations

import math


def tpp(value: float) -> str:
    """TPP with a k/M/G suffix and one decimal (``32.4M``, ``790M``, ``126.7k``)."""
    magnitude = abs(value)
    if magnitude < 1e3:
        return f"{value:.0f}" if value == int(value) else f"{value:.1f}"
    if magnitude == math.inf:
        return "unlimited"
    scale, suffix = (1e9, "G") if magnitude >= 1e9 else (1e6, "M") if magnitude >= 1e6 else (1e3, "k")
    return f"{value / scale:.1f}".removesuffix(".0") + suffix


def operations(value: float | None) -> str:
    """Operations in scientific notation (``3.2e25``); ``unbounded`` for an infinite or unknown amount."""
    if value is None or math.isinf(value):
        return "unbounded"
    if value == 0:
        return "0"
    exponent = math.floor(math.log10(abs(value)))
    mantissa = value / 10**exponent
    if round(mantissa, 1) >= 10:
        mantissa /= 10
        exponent += 1
    return f"{mantissa:.1f}e{exponent}".replace(".0e", "e")


def count(value: float) -> str:
    """GPU counts: ``2,048`` when whole, ``2.5`` when a MIG slice or share makes them fractional."""
    if value == math.inf:
        return "unlimited"
    whole = round(value)
    if abs(value - whole) < 1e-9:
        return f"{whole:,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def percent(fraction: float) -> str:
    return "∞ %" if math.isinf(fraction) else f"{fraction * 100:.0f} %"


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
