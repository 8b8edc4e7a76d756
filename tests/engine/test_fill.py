"""Fill areas without declared nodata: found on a decimated read, read as nodata with a fill
value (per date: every band of that date holds it)."""

import numpy as np
import pytest
from helpers import write_raster
from rasterio.windows import Window

from lcfusion.engine.io.fill import fill_areas
from lcfusion.engine.io.series import SeriesSpec, TimeSeries


def scene(fill: float, dtype: str = "uint16", bands: int = 4, size: int = 60) -> np.ndarray:
    """Data in 100 .. 3000 with a fill border on the top 6 rows and left 9 columns (about
    24 % of the pixels)."""
    data = np.random.default_rng(1).integers(100, 3000, (bands, size, size)).astype(dtype)
    data[:, :6] = fill
    data[:, :, :9] = fill
    return data


SHARE = (6 * 60 + 9 * 54) / 3600


@pytest.mark.parametrize(("fill", "dtype"), [(0, "uint16"), (65535, "uint16"),
                                             (-9999, "int16"), (-9999.0, "float32")])
def test_a_fill_border_is_found_with_its_value_and_share(tmp_path, fill, dtype):
    path = write_raster(tmp_path / "scene.tif", scene(fill, dtype))
    (area,) = fill_areas([path], None)
    assert area.value == fill and area.share == pytest.approx(SHARE)


def test_declared_nodata_and_data_without_fill_are_not_reported(tmp_path):
    declared = write_raster(tmp_path / "declared.tif", scene(0), nodata=0)
    plain = write_raster(tmp_path / "plain.tif", scene(0)[:, 10:, 10:])
    inside = scene(0)
    inside[:, :6], inside[:, :, :9] = 1500, 1500  # constant, but inside the data's range
    assert not list(fill_areas([declared, plain], None))
    assert not list(fill_areas([write_raster(tmp_path / "inside.tif", inside)], None))


def test_each_date_of_a_stack_is_checked(tmp_path):
    clear = np.random.default_rng(2).integers(100, 3000, (4, 60, 60)).astype("uint16")
    stack = np.concatenate([clear, scene(0)])  # fill in the second date only
    (area,) = fill_areas([write_raster(tmp_path / "stack.tif", stack)], 4)
    assert area.value == 0


def test_a_large_raster_is_checked_on_a_decimated_read(tmp_path):
    data = np.random.default_rng(3).integers(100, 3000, (2, 1100, 700)).astype("uint16")
    data[:, :, :70] = 0
    (area,) = fill_areas([write_raster(tmp_path / "large.tif", data)], None)
    assert area.share == pytest.approx(0.1, abs=0.01)


def test_the_fill_value_reads_a_date_whose_bands_all_hold_it_as_nodata(tmp_path):
    first, second = scene(0, bands=2, size=12), scene(0, bands=2, size=12)
    second[:] = 700
    second[0, 0, 11] = 0  # one band only: data
    stack = write_raster(tmp_path / "stack.tif", np.concatenate([first, second]))
    series = TimeSeries(SeriesSpec((str(stack),), bands_per_date=2, fill_value=0))
    with series.open() as reader:
        data = reader.read(Window(0, 0, 12, 12))
    assert np.isnan(data[:2, :6]).all() and np.isnan(data[:2, :, :9]).all()
    assert not np.isnan(data[:2, 6:, 9:]).any()
    assert not np.isnan(data[2:]).any()  # the second date keeps its values
    assert data[2, 0, 11] == 0
    assert "0 in every band of a date read as nodata" in series.describe()
