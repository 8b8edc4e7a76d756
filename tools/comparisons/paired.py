"""Paired tests of a deep model against its Random Forest on the same splits.

Over the k splits: the Wilcoxon signed-rank test and the paired t-test of the per-split overall
accuracies. On the test pixels pooled over the splits: McNemar's test of the pixels one model
classifies correctly and the other not (exact binomial when these discordant pixels are few,
chi-square with continuity correction otherwise; the engine's test, see
`lcfusion.engine.reports.mcnemar`). Over the test polygons pooled over the splits (the units
an object-level split draws, whose pixels are not independent): the Wilcoxon signed-rank
test of each polygon's share of pixels right by each model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from lcfusion.engine.reports.mcnemar import mcnemar as mcnemar_test

ALPHA = 0.05


@dataclass(frozen=True)
class McNemar:
    """Discordant test pixels: right only by the deep model, right only by the forest."""

    deep_only: int
    forest_only: int
    p_value: float
    method: str

    def to_json(self) -> dict:
        return asdict(self)


def mcnemar(deep_correct: np.ndarray, forest_correct: np.ndarray) -> McNemar:
    """McNemar's test on paired per-pixel correctness: the engine's (`lcfusion:comparemaps`
    runs the same), under the names of this harness's report."""
    test = mcnemar_test(deep_correct, forest_correct)
    return McNemar(test.only_a, test.only_b, test.p_value, test.method)


@dataclass(frozen=True)
class PolygonTest:
    """Test polygons (one per split that tests it), each scored by the share of its pixels a
    model gets right: how many each model scores higher, the mean of those shares, and the
    Wilcoxon signed-rank p of their differences (ties dropped; None without a difference)."""

    polygons: int
    deep_better: int
    forest_better: int
    deep_mean: float
    forest_mean: float
    p_value: float | None

    def to_json(self) -> dict:
        return asdict(self)


def polygon_test(deep_correct: np.ndarray, forest_correct: np.ndarray,
                 polygon: np.ndarray) -> PolygonTest:
    """The paired test over test polygons of per-pixel correctness (`polygon`: each pixel's
    polygon number)."""
    numbers, inverse = np.unique(polygon, return_inverse=True)
    pixels = np.bincount(inverse, minlength=numbers.size)
    deep = np.bincount(inverse, deep_correct, minlength=numbers.size) / np.maximum(pixels, 1)
    forest = np.bincount(inverse, forest_correct, minlength=numbers.size) / np.maximum(pixels, 1)
    differences = deep - forest
    p_value = (_p_or_none(stats.wilcoxon(differences, zero_method="wilcox").pvalue)
               if differences.any() else None)
    return PolygonTest(int(numbers.size), int((differences > 0).sum()),
                       int((differences < 0).sum()),
                       float(deep.mean()) if numbers.size else 0.0,
                       float(forest.mean()) if numbers.size else 0.0, p_value)


def splits_for_significance(differences: list[float], most: int = 1000) -> int | None:
    """The fewest splits at which per-split OA differences with this mean and standard
    deviation would give a two-sided paired t-test p below `ALPHA` (None when the mean is not
    above 0, or past `most`); the split count the evidence would need, not a promise."""
    values = np.asarray(differences, dtype=float)
    if values.size < 2 or values.mean() <= 0:
        return None
    spread = values.std(ddof=1)
    if spread == 0:
        return 2
    for splits in range(2, most + 1):
        if values.mean() / (spread / math.sqrt(splits)) > stats.t.ppf(1 - ALPHA / 2,
                                                                       splits - 1):
            return splits
    return None


def _p_or_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def wilcoxon_p(deep: list[float], forest: list[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p of the per-split differences (1 when all are 0)."""
    differences = np.asarray(deep) - np.asarray(forest)
    if differences.size < 2:
        return None
    if not differences.any():
        return 1.0
    return _p_or_none(stats.wilcoxon(differences).pvalue)


def paired_t_p(deep: list[float], forest: list[float]) -> float | None:
    """Two-sided paired t-test p of the per-split values (None when undefined: fewer than
    two splits, or differences without spread)."""
    differences = np.asarray(deep) - np.asarray(forest)
    if differences.size < 2:
        return None
    if not differences.any():
        return 1.0
    if np.ptp(differences) < 1e-12:
        return None
    return _p_or_none(stats.ttest_rel(deep, forest).pvalue)


def verdict(delta: float, t_p: float | None, pixels: McNemar) -> str:
    """'deep better' / 'deep worse' when the paired t-test over the splits and McNemar's test
    both say so at `ALPHA`, in the same direction as the mean OA difference; otherwise no
    significant difference."""
    direction = np.sign(pixels.deep_only - pixels.forest_only)
    if (t_p is not None and t_p < ALPHA and pixels.p_value < ALPHA
            and direction == np.sign(delta) != 0):
        return "deep better" if delta > 0 else "deep worse"
    return "no significant difference"
