"""McNemar's test of two classifications of the same pixels (or points) against one reference.

Only the discordant pixels count: b, right by A only, and c, right by B only. The statistic is
chi-square with continuity correction, (|b - c| - 1)^2 / (b + c), on 1 degree of freedom; the
p-value is that chi-square's, or, below `EXACT_BELOW` discordant pixels, where the chi-square
approximation is poor, the two-sided exact binomial test of b among b + c at 1/2. McNemar,
Psychometrika 12(2):153-157, 1947; Foody, Photogrammetric Engineering & Remote Sensing
70(5):627-633, 2004. Pure numpy / scipy: `make accuracy` uses it too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

#: Below this many discordant pixels the p-value is the exact binomial test's.
EXACT_BELOW = 25
EXACT, CHI_SQUARE, NONE_DISCORDANT = ("exact binomial", "chi-square, continuity-corrected",
                                      "no discordant pixel")


@dataclass(frozen=True)
class McNemarTest:
    """Discordant pixels right only by A and only by B, the continuity-corrected chi-square
    (0 without discordant pixels), the two-sided p-value and how it was computed."""

    only_a: int
    only_b: int
    chi_square: float
    p_value: float
    method: str

    @property
    def discordant(self) -> int:
        return self.only_a + self.only_b

    def to_json(self) -> dict:
        return asdict(self)


def mcnemar_counts(only_a: int, only_b: int) -> McNemarTest:
    """McNemar's test from the discordant counts."""
    only_a, only_b = int(only_a), int(only_b)
    if only_a < 0 or only_b < 0:
        raise ValueError(f"discordant counts cannot be negative ({only_a}, {only_b})")
    discordant = only_a + only_b
    if discordant == 0:
        return McNemarTest(0, 0, 0.0, 1.0, NONE_DISCORDANT)
    chi_square = (abs(only_a - only_b) - 1) ** 2 / discordant
    if discordant < EXACT_BELOW:
        p_value = stats.binomtest(only_a, discordant, 0.5).pvalue
        return McNemarTest(only_a, only_b, chi_square, float(p_value), EXACT)
    return McNemarTest(only_a, only_b, chi_square, float(stats.chi2.sf(chi_square, 1)),
                       CHI_SQUARE)


def mcnemar(a_correct: np.ndarray, b_correct: np.ndarray) -> McNemarTest:
    """McNemar's test on paired per-pixel correctness (boolean arrays of one shape)."""
    a_correct = np.asarray(a_correct, dtype=bool)
    b_correct = np.asarray(b_correct, dtype=bool)
    if a_correct.shape != b_correct.shape:
        raise ValueError(f"unpaired pixels: {a_correct.shape} and {b_correct.shape}")
    return mcnemar_counts(np.count_nonzero(a_correct & ~b_correct),
                          np.count_nonzero(b_correct & ~a_correct))
