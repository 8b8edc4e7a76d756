"""Area estimates and accuracy from a stratified random sample, strata = map classes.

The estimators and the sample-size formula of Olofsson et al., "Good practices for estimating
area and assessing accuracy of land change", Remote Sensing of Environment 148:42-57, 2014
(eqs. 2-13; the same as Olofsson et al. 2013 and Cochran 1977, ch. 5). Pure numpy: counts in,
estimates out. Rows of every matrix are map classes (strata), columns reference classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The multiplier of a 95 % confidence interval, as the paper (and the IPCC) uses it: the
#: 0.975 quantile of the normal distribution, 1.95996..., rounded to 1.96.
Z95 = 1.96


def sample_size(weights: np.ndarray, users_accuracies: np.ndarray,
                target_se: float) -> int:
    """The total sample size n = (sum W_i S_i / S(O))^2, S_i = sqrt(U_i (1 - U_i)) (eq. 13):
    enough for the standard error `target_se` of overall accuracy when the map classes of
    area shares `weights` have the user's accuracies `users_accuracies`."""
    weights = np.asarray(weights, dtype=np.float64)
    accuracies = np.asarray(users_accuracies, dtype=np.float64)
    if target_se <= 0 or target_se >= 1:
        raise ValueError(f"the target standard error must lie between 0 and 1, not {target_se}")
    if ((accuracies <= 0) | (accuracies >= 1)).any():
        raise ValueError("expected user's accuracies must lie strictly between 0 and 1")
    spread = float(np.sum(weights / weights.sum() * np.sqrt(accuracies * (1 - accuracies))))
    return math.ceil((spread / target_se) ** 2 - 1e-9)


def allocate(total: int, weights: np.ndarray, minimum: int,
             available: np.ndarray | None = None) -> np.ndarray:
    """Points per class: `minimum` for every class whose share of `total` in proportion to
    area would be smaller, the rest of `total` in proportion to area among the other classes
    (largest remainders); never more than the `available` pixels of a class. The sum exceeds
    `total` when the minimums alone do."""
    weights = np.asarray(weights, dtype=np.float64)
    small = np.zeros(weights.size, dtype=bool)
    while True:
        rest = total - minimum * int(small.sum())
        free = weights * ~small
        shares = rest * free / free.sum() if free.sum() > 0 and rest > 0 else free * 0
        newly = ~small & (shares < minimum)
        if not newly.any():
            break
        small |= newly
    counts = np.where(small, minimum, np.floor(shares)).astype(np.int64)
    missing = max(rest, 0) - int(counts[~small].sum())
    order = np.argsort(-(shares - np.floor(shares)) * ~small, kind="stable")
    counts[order[:missing]] += 1
    if available is not None:
        counts = np.minimum(counts, np.asarray(available, dtype=np.int64))
    return counts


@dataclass
class AreaEstimates:
    """The stratified estimates. `proportions` is the error matrix in estimated area
    proportions (rows map, columns reference); `*_se` are standard errors; areas are in the
    unit of the mapped areas given."""

    proportions: np.ndarray
    overall: float
    overall_se: float
    users: np.ndarray
    users_se: np.ndarray
    producers: np.ndarray
    producers_se: np.ndarray
    area_shares: np.ndarray
    area_shares_se: np.ndarray
    areas: np.ndarray
    areas_se: np.ndarray
    mapped_areas: np.ndarray

    @property
    def overall_ci(self) -> float:
        return Z95 * self.overall_se

    @property
    def users_ci(self) -> np.ndarray:
        return Z95 * self.users_se

    @property
    def producers_ci(self) -> np.ndarray:
        return Z95 * self.producers_se

    @property
    def areas_ci(self) -> np.ndarray:
        return Z95 * self.areas_se


def stratified_estimates(counts: np.ndarray, mapped_areas: np.ndarray) -> AreaEstimates:
    """Olofsson et al. 2014's estimators from the sample `counts` n_ij (rows: map classes =
    strata, columns: reference classes, the same classes in the same order) and the map's
    area of each class. Every class with mapped area needs at least 2 sample points (the
    variances divide by n_i - 1); classes without mapped area are reference-only columns.
    User's and producer's accuracies of a class with no sample or no estimated area are NaN."""
    n = np.asarray(counts, dtype=np.float64)
    mapped = np.asarray(mapped_areas, dtype=np.float64)
    if n.ndim != 2 or n.shape[0] != n.shape[1] or n.shape[0] != mapped.size:
        raise ValueError("counts must be a square matrix with one row per mapped area")
    n_rows = n.sum(axis=1)
    strata = mapped > 0
    if (n_rows[strata] < 2).any():
        raise ValueError("every class with mapped area needs at least 2 sample points")
    total = mapped.sum()
    weights = mapped / total
    rows = np.divide(n, n_rows[:, None], out=np.zeros_like(n), where=n_rows[:, None] > 0)
    p = weights[:, None] * rows
    shares = p.sum(axis=0)
    diagonal = np.diag(p)
    users = np.divide(np.diag(n), n_rows, out=np.full(n_rows.shape, np.nan),
                      where=n_rows > 0)
    denominator = np.where(n_rows > 1, n_rows - 1, np.inf)
    users_var = np.where(n_rows > 0, np.nan_to_num(users * (1 - users)) / denominator, np.nan)
    overall = float(diagonal.sum())
    overall_var = float(np.nansum(weights ** 2 * users_var))
    producers = np.divide(diagonal, shares, out=np.full(shares.shape, np.nan),
                          where=shares > 0)
    # eq. 7 of Olofsson 2014 in area units: N_j. = mapped area, N_.j = estimated area.
    cell_var = rows * (1 - rows) / denominator[:, None]
    producers_var = np.full(shares.shape, np.nan)
    for j in np.flatnonzero(shares > 0):
        estimated = total * shares[j]
        own = mapped[j] ** 2 * (1 - producers[j]) ** 2 * np.nan_to_num(users_var[j])
        others = producers[j] ** 2 * sum(mapped[i] ** 2 * cell_var[i, j]
                                         for i in range(mapped.size) if i != j)
        producers_var[j] = (own + others) / estimated ** 2
    shares_var = np.sum((weights[:, None] * p - p ** 2) / denominator[:, None], axis=0)
    return AreaEstimates(
        proportions=p, overall=overall, overall_se=math.sqrt(overall_var),
        users=users, users_se=np.sqrt(users_var), producers=producers,
        producers_se=np.sqrt(producers_var), area_shares=shares,
        area_shares_se=np.sqrt(shares_var), areas=total * shares,
        areas_se=total * np.sqrt(shares_var), mapped_areas=mapped)
