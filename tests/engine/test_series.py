"""Time series: a list of dates or one stack, grid checks, dates, nodata."""

import numpy as np
import pytest
from helpers import RecordingReporter, write_raster
from rasterio.windows import Window

from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.families.twinns.inputs import inputs_for_model
from lcfusion.engine.io.series import SeriesSpec, TimeSeries, parse_date, to_nan


@pytest.fixture
def dates(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(1, 1000, (3, 12, 10)).astype("uint16") for _ in range(4)]
    paths = [write_raster(tmp_path / f"s2_2021-0{i + 1}-15.tif", a, nodata=0,
                          descriptions=["B02", "B03", "B04"]) for i, a in enumerate(arrays)]
    return paths, arrays


def test_list_and_stack_read_the_same_channels(tmp_path, dates):
    paths, arrays = dates
    stack = write_raster(tmp_path / "stack.tif", np.concatenate(arrays), nodata=0)
    as_list = TimeSeries(SeriesSpec(tuple(map(str, paths))))
    as_stack = TimeSeries(SeriesSpec((str(stack),), bands_per_date=3))
    assert (as_list.n_dates, as_list.bands_per_date) == (4, 3) == (as_stack.n_dates,
                                                                    as_stack.bands_per_date)
    window = Window(2, 3, 5, 4)
    with as_list.open() as a, as_stack.open() as b:
        np.testing.assert_array_equal(a.read(window), b.read(window))
        np.testing.assert_array_equal(a.read(window)[3:6], arrays[1][:, 3:7, 2:7])
    assert as_list.dates == ["2021-01-15", "2021-02-15", "2021-03-15", "2021-04-15"]
    assert as_list.band_names == ["B02", "B03", "B04"]


def test_nodata_becomes_nan_and_outside_is_reflected(tmp_path):
    data = np.arange(1, 17, dtype="int16").reshape(1, 4, 4)
    data[0, 0, 0] = -9999
    series = TimeSeries(SeriesSpec((str(write_raster(tmp_path / "a.tif", data,
                                                     nodata=-9999)),)))
    with series.open() as reader:
        block = reader.read(Window(-1, -1, 3, 3))[0]
    assert np.isnan(block[1, 1])
    # reflect padding: row -1 mirrors row 1, column -1 mirrors column 1
    assert block[0, 2] == data[0, 1, 1] and block[2, 0] == data[0, 1, 1]


def test_stack_not_a_multiple_of_bands_per_date(tmp_path):
    stack = write_raster(tmp_path / "stack.tif", np.ones((7, 4, 4), "uint8"))
    with pytest.raises(LcfusionError, match="not a multiple of the bands per date") as info:
        TimeSeries(SeriesSpec((str(stack),), bands_per_date=3))
    assert info.value.parameter == "INPUT"


def test_crs_mismatch_names_both_rasters(tmp_path):
    a = write_raster(tmp_path / "a.tif", np.ones((1, 4, 4), "uint8"))
    b = write_raster(tmp_path / "b.tif", np.ones((1, 4, 4), "uint8"), crs="EPSG:32632")
    with pytest.raises(LcfusionError, match="CRS mismatch: b.tif is in EPSG:32632 but a.tif "
                                            "is in EPSG:32631"):
        TimeSeries(SeriesSpec((str(a), str(b))))


def test_different_grids_are_refused(tmp_path):
    a = write_raster(tmp_path / "a.tif", np.ones((1, 4, 4), "uint8"))
    b = write_raster(tmp_path / "b.tif", np.ones((1, 4, 4), "uint8"), origin=(500005.0, 5e6))
    with pytest.raises(LcfusionError, match="not on one grid"):
        TimeSeries(SeriesSpec((str(a), str(b))))


def test_band_counts_must_agree(tmp_path):
    a = write_raster(tmp_path / "a.tif", np.ones((2, 4, 4), "uint8"))
    b = write_raster(tmp_path / "b.tif", np.ones((3, 4, 4), "uint8"))
    with pytest.raises(LcfusionError, match="band counts differ"):
        TimeSeries(SeriesSpec((str(a), str(b))))


def test_missing_file_and_missing_crs(tmp_path):
    with pytest.raises(LcfusionError, match="does not exist"):
        TimeSeries(SeriesSpec((str(tmp_path / "nope.tif"),)))
    bare = write_raster(tmp_path / "bare.tif", np.ones((1, 4, 4), "uint8"), crs=None)
    with pytest.raises(LcfusionError, match="no coordinate reference system"):
        TimeSeries(SeriesSpec((str(bare),)))


@pytest.mark.parametrize("text, expected", [
    ("s2_2021-03-16.tif", "2021-03-16"), ("S2A_20210316T103021.tif", "2021-03-16"),
    ("s1_2020-11.tif", "2020-11"), ("2015-07-11T10:00:08", "2015-07-11"),
    ("scene_5.tif", None), ("x_20211399.tif", None),
])
def test_dates_from_names(text, expected):
    assert parse_date(text) == expected


def test_dates_out_of_order_are_sorted_and_said(tmp_path, dates):
    paths, _ = dates
    series = TimeSeries(SeriesSpec((str(paths[1]), str(paths[0]))))
    reporter = RecordingReporter()
    series.sort_by_date(reporter)
    assert series.dates == ["2021-01-15", "2021-02-15"]
    assert "[INPUT] the layers are not in date order" in "\n".join(reporter.lines)
    ordered = TimeSeries(SeriesSpec(tuple(map(str, paths))))
    ordered.sort_by_date(reporter := RecordingReporter())
    assert reporter.lines == []


def test_one_undated_date_has_no_order_to_warn_about(tmp_path, dates):
    _, arrays = dates
    single = write_raster(tmp_path / "scene.tif", arrays[0], nodata=0)
    TimeSeries(SeriesSpec((str(single),))).sort_by_date(reporter := RecordingReporter())
    TimeSeries(SeriesSpec((str(single),))).match_dates(["2021-01-15"], reporter)
    assert reporter.lines == []
    two = TimeSeries(SeriesSpec((str(single), str(single))))
    two.sort_by_date(reporter)
    assert "the layers are used in the given order, which could not be checked" in reporter.text()


def test_a_stack_is_ordered_by_the_dates_of_its_band_descriptions(tmp_path, dates):
    """Bands per date in a stack whose band descriptions hold the dates, given latest first;
    its mask stack, dated the same way, is given earliest first."""
    paths, arrays = dates
    days = ["2021-01-15", "2021-02-15", "2021-03-15", "2021-04-15"]
    described = [f"{day} {band}" for day in reversed(days) for band in ("B02", "B03", "B04")]
    stack = write_raster(tmp_path / "stack.tif", np.concatenate(arrays[::-1]), nodata=0,
                         descriptions=described)
    clouds = np.zeros((4, 12, 10), dtype="uint8")
    clouds[1, :3] = 1
    mask = write_raster(tmp_path / "mask.tif", clouds, descriptions=days)
    as_stack = TimeSeries(SeriesSpec((str(stack),), bands_per_date=3, masks=(str(mask),)))
    as_list = TimeSeries(SeriesSpec(tuple(map(str, paths)), masks=(str(mask),)))
    as_stack.sort_by_date(RecordingReporter())
    assert as_stack.dates == days
    window = Window(0, 0, 10, 12)
    with as_list.open() as a, as_stack.open() as b:
        np.testing.assert_array_equal(a.read(window), b.read(window))
        assert np.isnan(b.read(window)[3:6, :3]).all()


def test_duplicate_dates_are_refused(tmp_path, dates):
    paths, _ = dates
    series = TimeSeries(SeriesSpec((str(paths[0]), str(paths[1]), str(paths[0]))), "S2")
    with pytest.raises(LcfusionError, match="2021-01-15 is given twice") as caught:
        series.sort_by_date(RecordingReporter())
    assert caught.value.parameter == "S2"


def test_masks_with_other_dates_are_refused(tmp_path, dates):
    paths, _ = dates
    mask = write_raster(tmp_path / "mask.tif", np.zeros((4, 12, 10), dtype="uint8"),
                        descriptions=["2020-01-15", "2020-02-15", "2020-03-15", "2020-04-15"])
    with pytest.raises(LcfusionError, match="not the dates of the layers") as caught:
        TimeSeries(SeriesSpec(tuple(map(str, paths)), masks=(str(mask),)), "S2")
    assert caught.value.parameter == "S2_MASK"


def test_dates_come_from_layer_names_when_files_have_none(tmp_path, dates):
    paths, _ = dates
    plain = [p.rename(tmp_path / f"scene_{i}.tif") for i, p in enumerate(paths[:2])]
    series = TimeSeries(SeriesSpec(tuple(map(str, plain)), names=("S2 2021-05-01", "x")))
    assert series.dates == ["2021-05-01", None]


def test_normalisation_finds_a_channel_valid_in_one_corner_only(tmp_path):
    from lcfusion.engine.io.normalization import PercentileNormalizer

    data = np.full((2, 256, 256), np.nan, dtype="float32")
    data[0] = 1.0
    data[1, 250:, 250:] = 5.0
    series = TimeSeries(SeriesSpec((str(write_raster(tmp_path / "a.tif", data)),),
                                   bands_per_date=2))
    with series.open() as reader:
        normalizer = PercentileNormalizer.fit(reader, np.random.default_rng(0),
                                              max_pixels=2 * 128 * 128, block=32)
    assert normalizer.low[1] == 5.0
    empty = np.full((1, 64, 64), np.nan, dtype="float32")
    series = TimeSeries(SeriesSpec((str(write_raster(tmp_path / "b.tif", empty)),)))
    with series.open() as reader, pytest.raises(LcfusionError, match="nodata everywhere"):
        PercentileNormalizer.fit(reader, np.random.default_rng(0))


def test_windows_across_the_edges_read_the_mirrored_raster(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.integers(1, 500, (2, 9, 7)).astype("uint16")
    series = TimeSeries(SeriesSpec((str(write_raster(tmp_path / "a.tif", data, nodata=0)),)))
    with series.open() as reader:
        for r0, c0, h, w in [(-3, -2, 6, 5), (5, 4, 8, 7), (-8, -6, 25, 20), (0, 0, 9, 7),
                             (-1, 3, 3, 3), (2, -7, 4, 12)]:
            r = np.array([reflect(r, 9) for r in range(r0, r0 + h)])
            c = np.array([reflect(c, 7) for c in range(c0, c0 + w)])
            np.testing.assert_array_equal(reader.read(Window(c0, r0, w, h)),
                                          data[:, r][:, :, c].astype(np.float32))


def reflect(index: int, size: int) -> int:
    """numpy's reflect padding of one index, by hand."""
    period = 2 * (size - 1)
    index %= period
    return index if index < size else period - index


def test_int8_and_per_band_nodata_are_read_exactly(tmp_path):
    signed = np.array([[[-5, 3], [-128, 7]]], dtype="int8")
    series = TimeSeries(SeriesSpec((str(write_raster(tmp_path / "s.tif", signed,
                                                     nodata=-128)),)))
    with series.open() as reader:
        np.testing.assert_array_equal(reader.read(Window(0, 0, 2, 2))[0],
                                      [[-5, 3], [np.nan, 7]])
    floats = np.array([[[np.nan, 5.0], [1.0, np.inf]], [[5.0, 2.0], [5.0, 1.0]]],
                      dtype="float32")
    data = floats.copy()
    to_nan(data, floats, (float("nan"), 5.0), "float32")  # per-band nodata (a VRT, say)
    np.testing.assert_array_equal(data[0], [[np.nan, 5.0], [1.0, np.nan]])
    np.testing.assert_array_equal(data[1], [[np.nan, 2.0], [np.nan, 1.0]])


def test_monthly_mask_names_match_daily_layer_dates(tmp_path, dates):
    """Masks named by month follow the layers' days, whatever order each is given in."""
    paths, arrays = dates
    masks = []
    for month in (4, 3, 2, 1):
        clouds = np.zeros((1, 12, 10), dtype="uint8")
        clouds[0, :month] = 1
        masks.append(str(write_raster(tmp_path / f"mask_2021-0{month}.tif", clouds)))
    series = TimeSeries(SeriesSpec(tuple(map(str, paths)), masks=tuple(masks)))
    assert series.mask_order == (3, 2, 1, 0)
    with series.open() as reader:
        data = reader.read(Window(0, 0, 10, 12))
    for date in range(4):
        assert np.isnan(data[date * 3, : date + 1]).all()
        assert not np.isnan(data[date * 3, date + 1:]).any()


def test_the_description_follows_the_order_used(tmp_path, dates):
    """Masks are listed next to their dates in the order used; one date is one date, with
    nothing to interpolate."""
    paths, _ = dates
    masks = tuple(str(write_raster(tmp_path / f"mask_2021-0{month}.tif",
                                   np.zeros((1, 12, 10), dtype="uint8"))) for month in (2, 1))
    series = TimeSeries(SeriesSpec((str(paths[1]), str(paths[0])), masks=masks))
    series.sort_by_date(RecordingReporter())
    assert ("dates 2021-01-15, 2021-02-15, masked by mask_2021-01.tif, mask_2021-02.tif"
            in series.describe())
    single = TimeSeries(SeriesSpec((str(paths[0]),), gapfill=True)).describe()
    assert single.startswith("1 date x 3 bands (one stack)")
    assert "interpolation" not in single


def test_a_series_is_matched_to_the_model_or_refused_naming_its_source(tmp_path, dates):
    paths, _ = dates
    model = TimeSeries(SeriesSpec(tuple(map(str, paths))), "S2").to_json()
    given = TimeSeries(SeriesSpec(tuple(map(str, paths[::-1]))), "S2")
    given.match_model(model, RecordingReporter(), "Sentinel-2")
    assert given.dates == model["dates"]
    with pytest.raises(LcfusionError) as info:
        TimeSeries(SeriesSpec(tuple(map(str, paths[:3]))), "S2").match_model(
            model, RecordingReporter(), "Sentinel-2")
    assert info.value.parameter == "S2"
    assert info.value.message == (
        "the model expects 4 Sentinel-2 dates x 3 bands (12 channels) but the layers give "
        "3 dates x 3 bands (9 channels); give the same dates and bands, in the same order, as "
        "for training")


def test_twinns_warns_when_a_model_trained_with_cloud_masks_gets_none(tmp_path):
    days = ["2021-05-01", "2021-06-01"]
    paths = {source: [str(write_raster(tmp_path / f"{source}_{day}.tif",
                                       np.ones((bands, 6, 6), "float32")))
                      for day in days] for source, bands in (("s1", 2), ("s2", 3))}
    mask = write_raster(tmp_path / "clouds.tif", np.zeros((2, 6, 6), "uint8"))
    record = {"n_dates": 2, "dates": days, "gapfill": False}
    metadata = {"inputs": {"s1_scale": "db", "s1": {**record, "bands_per_date": 2},
                           "s2": {**record, "bands_per_date": 3, "masked": True}}}
    inputs_for_model({"s1": {"paths": paths["s1"]}, "s2": {"paths": paths["s2"]}}, metadata,
                     reporter := RecordingReporter())
    assert "[S2_MASK] the model was trained with a cloud mask but none is given" in (
        reporter.text())
    inputs_for_model({"s1": {"paths": paths["s1"]},
                      "s2": {"paths": paths["s2"], "masks": [str(mask)]}}, metadata,
                     reporter := RecordingReporter())
    assert "cloud mask" not in reporter.text()
