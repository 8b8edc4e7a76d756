"""Temporal gap-filling of masked dates, as operational chains do before deep models (iota2):
linear interpolation in time between the nearest valid dates before and after, and the nearest
valid date at the ends of the series. A pixel with no valid date at all stays missing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np


def day_number(text: str) -> int:
    """The day number (proleptic ordinal) of an ISO date, ``YYYY-MM`` taken as the 15th."""
    parts = [int(p) for p in text.split("-")]
    return date(parts[0], parts[1], parts[2] if len(parts) > 2 else 15).toordinal()


def date_positions(dates: Sequence[str | None]) -> np.ndarray:
    """Day numbers of ISO dates (``YYYY-MM-DD`` or ``YYYY-MM``, taken as the 15th) for the
    interpolation weights; the date indices when any date is unknown."""
    if not dates or not all(dates):
        return np.arange(len(dates), dtype=np.float64)
    positions = np.asarray([day_number(str(text)) for text in dates], dtype=np.float64)
    if np.any(np.diff(positions) <= 0):
        return np.arange(len(dates), dtype=np.float64)
    return positions


#: The columns (one band of one pixel, all dates) filled at a time: the temporaries are a few
#: MB whatever the size of the tile read.
FILL_COLUMNS = 1 << 14


def fill_gaps(data: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Fill NaN in `data` (dates, bands, ...) along the first axis, in place, and return it.

    Each value is interpolated from the same band's nearest valid dates before and after it
    (weights from `positions`, the dates' times); before the first or after the last valid
    date, the nearest valid value is repeated. Only the columns with a gap are computed,
    `FILL_COLUMNS` at a time.
    """
    n_dates = data.shape[0]
    flat = data.reshape(n_dates, -1)
    if n_dates == 1:
        return data
    gaps = np.flatnonzero(~np.isfinite(flat).all(axis=0))
    time = positions.astype(np.float64)[:, None]
    for start in range(0, gaps.size, FILL_COLUMNS):
        columns = gaps[start: start + FILL_COLUMNS]
        flat[:, columns] = _filled(flat[:, columns], time)
    return data


def _filled(values: np.ndarray, time: np.ndarray) -> np.ndarray:
    """`values` (dates, columns) with their missing values interpolated (`fill_gaps`)."""
    n_dates = values.shape[0]
    valid = np.isfinite(values)
    index = np.arange(n_dates)[:, None]
    before = np.maximum.accumulate(np.where(valid, index, -1), axis=0)
    after = np.minimum.accumulate(np.where(valid, index, n_dates)[::-1], axis=0)[::-1]
    has_before, has_after = before >= 0, after < n_dates
    before, after = np.clip(before, 0, n_dates - 1), np.clip(after, 0, n_dates - 1)
    columns = np.arange(values.shape[1])
    value_before, value_after = values[before, columns], values[after, columns]
    t0, t1 = time[before, 0], time[after, 0]
    span = np.where(t1 > t0, t1 - t0, 1.0)
    weight = np.clip((time - t0) / span, 0.0, 1.0)
    between = value_before + weight * (value_after - value_before)
    filled = np.where(has_before & has_after, between,
                      np.where(has_before, value_before, value_after))
    return np.where(valid, values, filled.astype(values.dtype))
