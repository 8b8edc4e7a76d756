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


def fill_gaps(data: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Fill NaN in `data` (dates, bands, ...) along the first axis, in place, and return it.

    Each value is interpolated from the same band's nearest valid dates before and after it
    (weights from `positions`, the dates' times); before the first or after the last valid
    date, the nearest valid value is repeated.
    """
    n_dates = data.shape[0]
    flat = data.reshape(n_dates, -1)
    valid = np.isfinite(flat)
    missing = ~valid
    if not missing.any() or n_dates == 1:
        return data
    index = np.arange(n_dates)[:, None]
    before = np.maximum.accumulate(np.where(valid, index, -1), axis=0)
    after = np.minimum.accumulate(np.where(valid, index, n_dates)[::-1], axis=0)[::-1]
    has_before, has_after = before >= 0, after < n_dates
    columns = np.broadcast_to(np.arange(flat.shape[1]), flat.shape)
    value_before = flat[np.clip(before, 0, n_dates - 1), columns]
    value_after = flat[np.clip(after, 0, n_dates - 1), columns]
    time = positions.astype(np.float64)[:, None]
    t0 = time[np.clip(before, 0, n_dates - 1), 0]
    t1 = time[np.clip(after, 0, n_dates - 1), 0]
    span = np.where(t1 > t0, t1 - t0, 1.0)
    weight = np.clip((np.broadcast_to(time, flat.shape) - t0) / span, 0.0, 1.0)
    between = value_before + weight * (value_after - value_before)
    filled = np.where(has_before & has_after, between,
                      np.where(has_before, value_before, value_after))
    flat[missing] = filled[missing].astype(flat.dtype)
    return data
