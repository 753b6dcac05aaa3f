"""ECCN 3A090 classification and the derived figures of an accelerator.

Thresholds follow 15 CFR 774 Supp. 1, 3A090 (as summarised in the reference): they are law-shaped constants
of the classification itself, not caps, so they live here rather than in a policy profile.
"""

from __future__ import annotations

from gpuquota.domain import GpuClass

# 3A090.a: TPP >= 4800, or TPP >= 1600 with PD >= 5.92.
A_TPP = 4800.0
A_TPP_DENSE = 1600.0
A_PD = 5.92
# 3A090.b (data-centre parts): TPP in [2400, 4800) with 1.6 <= PD < 5.92, or TPP >= 1600 with 3.2 <= PD < 5.92.
B_TPP_LOW = 2400.0
B_PD_LOW = 1.6
B_PD_DENSE = 3.2

H100_TPP = 15832.0
"""TPP of one H100 SXM5: the unit of 'H100-equivalents', used for display only."""


def performance_density(tpp: float, die_area_mm2: float | None) -> float | None:
    """TPP per mm² of logic die; ``None`` when the die area is not published."""
    if die_area_mm2 is None or die_area_mm2 <= 0:
        return None
    return tpp / die_area_mm2


def classify(tpp: float, pd: float | None) -> GpuClass:
    """3A090 class of a part. An unknown PD is treated as high (conservative: it can only raise the class)."""
    density = float("inf") if pd is None else pd
    if tpp >= A_TPP or (tpp >= A_TPP_DENSE and density >= A_PD):
        return GpuClass.A090_A
    if (B_TPP_LOW <= tpp < A_TPP and B_PD_LOW <= density < A_PD) or (
        tpp >= A_TPP_DENSE and B_PD_DENSE <= density < A_PD
    ):
        return GpuClass.A090_B
    return GpuClass.UNCONTROLLED


def h100_equivalents(tpp: float) -> float:
    """TPP expressed as H100 SXM5 units, for people; caps are never counted in it."""
    return tpp / H100_TPP
