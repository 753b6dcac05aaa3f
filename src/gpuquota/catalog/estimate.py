"""Fallback TPP for a device the catalog does not know, from what NVML reports.

The formula (SMs × dense tensor FLOP per clock per SM × clock × 16 bits) reproduces the datasheets of full
parts but overstates cut-down ones (H20) and uses NVML's max clock, which is above the datasheet's boost clock,
so the result is always flagged as an estimate and the catalog figure wins whenever there is one. The rate is
taken at the precision that gives the highest TPP, not always FP16.
"""

from __future__ import annotations

from dataclasses import dataclass

# Dense tensor throughput per clock per SM, by compute capability, as (FLOP per clock, bit length) of the
# precision that gives the highest TPP (FLOP x bits). Through Blackwell (10.0) and GB20x (12.0) every lower
# precision doubles the rate as it halves the bits, so FP16 stands for all; Blackwell Ultra (10.3) runs dense FP4
# at 1.5x Blackwell's (GB300: 15 PF at 160 SMs), so FP4 sets its TPP and FP16 x 16 would under-count it by a third.
_DENSE_PER_CLOCK_PER_SM: dict[tuple[int, int], tuple[int, int]] = {
    (7, 0): (1024, 16),  # Volta
    (7, 5): (1024, 16),  # Turing
    (8, 0): (2048, 16),  # GA100
    (8, 6): (1024, 16),  # GA10x
    (8, 7): (1024, 16),  # Orin (GA10B)
    (8, 9): (1024, 16),  # Ada
    (9, 0): (4096, 16),  # Hopper
    (10, 0): (8192, 16),  # Blackwell data-centre (FP4 32,768 x 4 bits: the same TPP)
    (10, 3): (49152, 4),  # Blackwell Ultra: dense FP4 (FP16 stays 8,192)
    (12, 0): (1024, 16),  # Blackwell GB20x (RTX 5090, RTX PRO 6000: FP4 4,096 x 4 bits, the same TPP)
}


def _tpp_per_clock(entry: tuple[int, int]) -> int:
    flop, bits = entry
    return flop * bits


@dataclass(frozen=True, slots=True)
class TppEstimate:
    tpp: float
    basis: str  # human-readable formula with the inputs, for the inventory's "estimate" note


def estimate_tpp(cc_major: int, cc_minor: int, sm_count: int, sm_clock_mhz: float) -> TppEstimate | None:
    """Estimate a device's TPP; ``None`` when the architecture is not known (the caller then counts the device
    at the profile's unknown-part figure — never as zero)."""
    entry = _DENSE_PER_CLOCK_PER_SM.get((cc_major, cc_minor))
    if entry is None:
        # A newer minor revision of a known major architecture: take the highest figure of that major.
        same_major = [v for (major, _), v in _DENSE_PER_CLOCK_PER_SM.items() if major == cc_major]
        if not same_major:
            return None
        entry = max(same_major, key=_tpp_per_clock)
    if sm_count <= 0 or sm_clock_mhz <= 0:
        return None
    flop, bits = entry
    tpp = sm_count * flop * sm_clock_mhz / 1e6 * bits
    basis = (
        f"estimate: {sm_count} SM x {flop} FLOP/clock/SM x {sm_clock_mhz:.0f} MHz x {bits} bits "
        f"(compute capability {cc_major}.{cc_minor})"
    )
    return TppEstimate(tpp=tpp, basis=basis)
