"""Paired tests of a deep model against its Random Forest on the same splits.

Over the k splits: the Wilcoxon signed-rank test and the paired t-test of the per-split overall
accuracies. On the test pixels pooled over the splits: McNemar's test of the pixels one model
classifies correctly and the other not (exact binomial when these discordant pixels are few,
chi-square with continuity correction otherwise; the engine's test, see
`lcfusion.engine.reports.mcnemar`). Over the reference polygons tested in any split (the
units an object-level split draws, whose pixels are not independent): the Wilcoxon
signed-rank test of the difference between the shares of their pixels each model gets right.
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


#: Fewer polygons that the two models score differently give no polygon p-value.
MIN_POLYGONS = 10


@dataclass(frozen=True)
class PolygonTest:
    """Reference polygons tested in any split, each scored by the share of its pixels a model
    gets right (the mean over the splits that test it): on how many each model scores higher,
    the mean shares, and the Wilcoxon signed-rank p of their differences (polygons both
    score the same left out; None below `MIN_POLYGONS` left)."""

    polygons: int
    deep_better: int
    forest_better: int
    deep_mean: float | None
    forest_mean: float | None
    p_value: float | None

    def to_json(self) -> dict:
        return asdict(self)


def polygon_test(deep_correct: np.ndarray, forest_correct: np.ndarray, split: np.ndarray,
                 polygon: np.ndarray) -> PolygonTest:
    """The paired test over polygons of per-pixel correctness (`split`, `polygon`: each
    pixel's split index and reference polygon). A polygon tested in several splits is one
    unit, not several: its shares are averaged over those splits."""
    if polygon.size == 0:
        return PolygonTest(0, 0, 0, None, None, None)
    tested, per_test = np.unique(np.stack([polygon, split]), axis=1, return_inverse=True)
    per_test = per_test.ravel()
    pixels = np.bincount(per_test)
    deep = np.bincount(per_test, deep_correct.astype(np.int64))
    forest = np.bincount(per_test, forest_correct.astype(np.int64))
    polygons, per_polygon = np.unique(tested[0], return_inverse=True)
    tests = np.bincount(per_polygon)

    def mean_over_splits(per_split: np.ndarray) -> np.ndarray:
        return np.bincount(per_polygon, per_split) / tests

    deep_share, forest_share = mean_over_splits(deep / pixels), mean_over_splits(forest / pixels)
    # From counts, so that equal differences tie exactly (3/5 - 1/5 is not 2/5 in floats).
    differences = mean_over_splits((deep - forest) / pixels)
    differing = differences[np.abs(differences) > 1e-12]
    p_value = None
    if differing.size >= MIN_POLYGONS:
        tied = np.unique(np.round(np.abs(differing), 12)).size < differing.size
        exact = differing.size <= 50 and not tied  # scipy's exact distribution has no ties
        p_value = _p_or_none(stats.wilcoxon(differing, method="exact" if exact
                                            else "approx").pvalue)
    return PolygonTest(int(polygons.size), int((differing > 0).sum()),
                       int((differing < 0).sum()), float(deep_share.mean()),
                       float(forest_share.mean()), p_value)


def splits_for_significance(differences: list[float], most: int = 1000) -> int | None:
    """The fewest splits at which per-split OA differences with this mean and standard
    deviation would give a two-sided paired t-test p below `ALPHA`, if the splits were
    independent replicates (None with fewer than 2 splits, without spread, when the mean is
    not above 0, or past `most`). Random splits of one set overlap, which makes the t-test
    over them optimistic (Nadeau and Bengio 2003): a measure of how far the evidence is, not
    a number of splits to run."""
    values = np.asarray(differences, dtype=float)
    if values.size < 2 or values.mean() <= 0 or np.ptp(values) < 1e-12:
        return None
    spread = values.std(ddof=1)
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
