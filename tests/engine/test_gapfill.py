"""Temporal gap-filling and cloud masks: values against hand-computed interpolations."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import write_raster
from rasterio.windows import Window

from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.io import gapfill
from lcfusion.engine.io.gapfill import date_positions, fill_gaps
from lcfusion.engine.io.series import SeriesSpec, TimeSeries

NAN = np.nan


def test_linear_between_valid_dates_nearest_at_the_ends():
    series = np.array([NAN, 1.0, NAN, NAN, 4.0, NAN], dtype=np.float32).reshape(6, 1, 1)
    assert fill_gaps(series, np.arange(6.0)).ravel().tolist() == [1, 1, 2, 3, 4, 4]


def test_weights_follow_the_acquisition_days():
    days = date_positions(["2021-01-01", "2021-01-02", "2021-01-10", "2021-01-11",
                           "2021-01-12", "2021-02-01"])
    assert (days - days[0]).tolist() == [0, 1, 9, 10, 11, 31]
    series = np.array([NAN, 1.0, NAN, NAN, 4.0, NAN], dtype=np.float32).reshape(6, 1, 1)
    # Day 9 lies 8/10 of the way from day 1 (1.0) to day 11 (4.0): 1 + 0.8 * 3 = 3.4.
    assert fill_gaps(series, days).ravel() == pytest.approx([1, 1, 3.4, 3.7, 4, 4])


def test_bands_are_filled_independently_and_empty_pixels_stay_missing():
    data = np.full((3, 2, 1, 2), NAN, dtype=np.float32)
    data[0, 0, 0, 0], data[2, 0, 0, 0] = 2.0, 6.0
    data[1, 1, 0, 0] = 5.0
    filled = fill_gaps(data, np.arange(3.0))
    assert filled[:, 0, 0, 0].tolist() == [2, 4, 6]
    assert filled[:, 1, 0, 0].tolist() == [5, 5, 5]
    assert np.isnan(filled[:, :, 0, 1]).all()


def test_many_columns_in_chunks_equal_numpys_interpolation(monkeypatch):
    """Columns with gaps filled a few at a time, the others untouched, each as np.interp
    gives it (linear in time, the nearest valid value at the ends)."""
    monkeypatch.setattr(gapfill, "FILL_COLUMNS", 7)
    rng = np.random.default_rng(5)
    data = rng.normal(size=(9, 3, 10, 10)).astype(np.float32)
    data[rng.random(data.shape) < 0.4] = NAN
    data[:, 0, 0, 0] = NAN
    days = np.sort(rng.choice(365, 9, replace=False)).astype(np.float64)
    original = data.copy()
    filled = fill_gaps(data, days)
    assert filled is data
    flat, before = filled.reshape(9, -1), original.reshape(9, -1)
    for column in range(flat.shape[1]):
        known = np.isfinite(before[:, column])
        if not known.any():
            assert np.isnan(flat[:, column]).all()
            continue
        expected = np.interp(days, days[known], before[known, column].astype(np.float64))
        np.testing.assert_allclose(flat[:, column], expected, rtol=1e-6, atol=1e-6)
    assert np.array_equal(flat[:, np.isfinite(before).all(axis=0)],
                          before[:, np.isfinite(before).all(axis=0)])


def test_unknown_or_unordered_dates_fall_back_to_indices():
    assert date_positions(["2021-03", None]).tolist() == [0, 1]
    assert date_positions(["2021-03-01", "2021-02-01"]).tolist() == [0, 1]
    months = date_positions(["2021-01", "2021-03"])
    assert months[1] - months[0] == 59


def masked_series(tmp_path, gapfill: bool, masks=None) -> TimeSeries:
    """Three dates of two bands, values 10 * date + band; date 2 cloudy on the left half."""
    paths = []
    for d in range(3):
        data = np.stack([np.full((4, 4), 10.0 * d + b, dtype=np.float32) for b in range(2)])
        paths.append(str(write_raster(tmp_path / f"s2_2021-0{d + 1}-01.tif", data)))
    if masks is None:
        clouds = np.zeros((3, 4, 4), dtype=np.uint8)
        clouds[1, :, :2] = 1
        masks = [str(write_raster(tmp_path / "clouds.tif", clouds))]
    return TimeSeries(SeriesSpec(tuple(paths), masks=tuple(masks), gapfill=gapfill))


def test_masked_dates_are_missing_in_every_band(tmp_path):
    series = masked_series(tmp_path, gapfill=False)
    with series.open() as reader:
        data = reader.read(Window(0, 0, 4, 4))
    assert np.isnan(data[2:4, :, :2]).all()
    assert data[2:4, :, 2:].tolist() == np.stack([np.full((4, 2), 10.0), np.full((4, 2), 11.0)]
                                                  ).tolist()
    assert series.to_json()["masked"] is True


def test_gapfill_interpolates_the_masked_date_by_day(tmp_path):
    series = masked_series(tmp_path, gapfill=True)
    assert "gaps filled" in series.describe()
    with series.open() as reader:
        data = reader.read(Window(-2, 0, 4, 4))  # partly outside: mirrored, then filled
    # Jan 1 -> 0, Mar 1 -> 20; Feb 1 lies 31 / 59 days between them.
    expected = 20.0 * 31 / 59
    assert data[2, :, 2:] == pytest.approx(np.full((4, 2), expected))
    assert data[3, :, 2:] == pytest.approx(np.full((4, 2), expected + 1))
    assert np.isfinite(data).all()


def test_mask_with_the_wrong_number_of_dates_names_the_mask(tmp_path):
    two = str(write_raster(tmp_path / "two.tif", np.zeros((2, 4, 4), dtype=np.uint8)))
    with pytest.raises(LcfusionError) as error:
        masked_series(tmp_path, gapfill=True, masks=[two])
    assert error.value.parameter == "INPUT_MASK"
    assert "3 dates" in error.value.message
