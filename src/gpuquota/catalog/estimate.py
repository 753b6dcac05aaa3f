"""Fallback TPP for a device the catalog does not know, from what NVML reports.

The formula (SMs × dense tensor FLOP per clock per SM × clock × 16 bits) reproduces the datasheets of full
parts but overstates cut-down ones (H20) and uses NVML's max clock, which is above the datasheet's boost clock,
so the result is always flagged as an estimate and the catalog figure wins whenever there is one.
"""

from __future__ import annotations

from dataclasses import dataclass

# Dense FP16 tensor FLOP per clock per SM, by compute capability (reference: "Deriving figures from NVML").
# FP8 where present doubles FLOP at half the bit length, so TPP per clock is the same as FP16's.
_FP16_FLOP_PER_CLOCK_PER_SM: dict[tuple[int, int], int] = {
    (7, 0): 1024,  # Volta
    (7, 5): 1024,  # Turing
    (8, 0): 2048,  # GA100
    (8, 6): 1024,  # GA10x
    (8, 7): 1024,  # Orin (GA10B)
    (8, 9): 1024,  # Ada
    (9, 0): 4096,  # Hopper
    (10, 0): 8192,  # Blackwell data-centre
}
_TPP_BITS = 16


@dataclass(frozen=True, slots=True)
class TppEstimate:
    tpp: float
    basis: str  # human-readable formula with the inputs, for the inventory's "estimate" note


def estimate_tpp(cc_major: int, cc_minor: int, sm_count: int, sm_clock_mhz: float) -> TppEstimate | None:
    """Estimate a device's TPP; ``None`` when the architecture is not known (the caller then counts the device
    as the most powerful catalog GPU — never as zero)."""
    per_sm = _FP16_FLOP_PER_CLOCK_PER_SM.get((cc_major, cc_minor))
    if per_sm is None:
        # A newer minor revision of a known major architecture: take the highest figure of that major.
        same_major = [v for (major, _), v in _FP16_FLOP_PER_CLOCK_PER_SM.items() if major == cc_major]
        if not same_major:
            return None
        per_sm = max(same_major)
    if sm_count <= 0 or sm_clock_mhz <= 0:
        return None
    tflops = sm_count * per_sm * sm_clock_mhz / 1e6
    tpp = tflops * _TPP_BITS
    basis = (
        f"estimate: {sm_count} SM x {per_sm} FLOP/clock/SM x {sm_clock_mhz:.0f} MHz x {_TPP_BITS} bits "
        f"(compute capability {cc_major}.{cc_minor})"
    )
    return TppEstimate(tpp=tpp, basis=basis)
