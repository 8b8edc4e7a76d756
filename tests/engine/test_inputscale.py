"""The warning when a classification's input is on another scale than the training data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import (
    cropped_pair,
    mrfusion_classify_job,
    randomforest_classify_job,
    write_raster,
)
from model_mutants import ModelBytes
from rasterio.transform import from_origin

from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.families.mrfusion.commands import classify_mrfusion
from lcfusion.engine.families.randomforest.classify_onnx import classify_randomforest_onnx
from lcfusion.engine.families.randomforest.commands import classify_randomforest
from lcfusion.engine.io.indices import IndexConfig
from lcfusion.engine.io.inputscale import check_input_scale, sample_values
from lcfusion.engine.io.normalization import PercentileNormalizer
from lcfusion.engine.io.rasters import MIN_BLOCK_CACHE
from lcfusion.engine.io.series import SeriesSpec, TimeSeries
from lcfusion.engine.io.sources import SourceFeatures
from lcfusion.engine.jobs import Job
from lcfusion.engine.progress import FollowerReporter, Reporter

BANDS = ("B02", "B03", "B04", "B08")


class LevelReporter(Reporter):
    """Keeps the warnings apart from the rest of the log."""

    def __init__(self):
        self.warnings: list[str] = []

    def progress(self, fraction: float, stage: str = "") -> None:
        return None

    def log(self, message: str, level: str = "info") -> None:
        if level == "warning":
            self.warnings.append(message)

    def result(self, outputs: dict) -> None:
        return None


def reflectance(seed: int) -> np.ndarray:
    """Two dates of 4 bands, 30 x 30 pixels, of S2-like reflectance 0-10000."""
    rng = np.random.default_rng(seed)
    levels = np.array([500, 800, 700, 3000], dtype=np.float32)[None, :, None, None]
    return (levels * rng.uniform(0.5, 1.5, size=(2, 4, 30, 30))).astype(np.float32)


def series(folder: Path, data: np.ndarray, parameter: str = "S2") -> TimeSeries:
    paths = [str(write_raster(folder / f"s2_2021-0{date + 5}-01.tif", data[date],
                              descriptions=BANDS)) for date in range(len(data))]
    return TimeSeries(SeriesSpec(tuple(paths)), parameter)


def trained_normalizer(folder: Path) -> PercentileNormalizer:
    folder.mkdir()
    with series(folder, reflectance(1)).open() as reader:
        return PercentileNormalizer.fit(reader, np.random.default_rng(0))


def warnings_for(folder: Path, data: np.ndarray, normalizer: PercentileNormalizer,
                 indices: IndexConfig | None = None) -> list[str]:
    folder.mkdir()
    features = SourceFeatures(series(folder, data), indices)
    reporter = LevelReporter()
    with features.open() as reader:
        check_input_scale(reader, normalizer, reporter, features.scaled_channels())
    return reporter.warnings


def test_silent_on_data_of_the_training_scale(tmp_path):
    normalizer = trained_normalizer(tmp_path / "train")
    assert warnings_for(tmp_path / "same", reflectance(2), normalizer) == []


@pytest.mark.parametrize("factor, how", [(10000, "10,000 times wider"),
                                         (1e-4, "10,000 times narrower")])
def test_warns_on_another_scale_naming_the_parameter_and_ranges(tmp_path, factor, how):
    normalizer = trained_normalizer(tmp_path / "train")
    warnings = warnings_for(tmp_path / "scaled", reflectance(2) * np.float32(factor),
                            normalizer)
    assert len(warnings) == 1
    message = warnings[0]
    assert message.startswith("S2: ") and "in 8 of 8 channels" in message
    assert how in message and "0-1 or 0-10000" in message and "map may be wrong" in message
    band, date = re.search(r"channels: (B0\d) of 2021-0(\d)-01, for example", message).groups()
    channel = (int(date) - 5) * len(BANDS) + BANDS.index(band)
    low, high = normalizer.low[channel], normalizer.high[channel]
    assert f"training range {low:.4g} to {high:.4g}" in message


def test_indices_do_not_hide_a_change_of_scale(tmp_path):
    """Indices are ratios, the same at any scale: only the bands are compared."""
    indices = IndexConfig(("NDVI", "NDWI"))
    train = tmp_path / "train"
    train.mkdir()
    features = SourceFeatures(series(train, reflectance(1)), indices)
    with features.open() as reader:
        normalizer = PercentileNormalizer.fit(reader, np.random.default_rng(0))
    assert warnings_for(tmp_path / "same", reflectance(2), normalizer, indices) == []
    warnings = warnings_for(tmp_path / "scaled", reflectance(2) / np.float32(10000), normalizer,
                            indices)
    assert len(warnings) == 1 and "in 8 of 8 channels" in warnings[0]


def test_a_shift_within_the_scale_is_not_a_change_of_scale(tmp_path):
    """Another season, haze or the L2A offset of 1000 move the values, not their unit."""
    normalizer = trained_normalizer(tmp_path / "train")
    assert warnings_for(tmp_path / "shifted", reflectance(2) * 1.8 + 1000, normalizer) == []


def test_an_input_without_valid_values_checks_nothing(tmp_path):
    """No data everywhere is reported by the classification itself, not as a scale."""
    normalizer = trained_normalizer(tmp_path / "train")
    empty = np.full_like(reflectance(2), np.nan)
    assert warnings_for(tmp_path / "empty", empty, normalizer) == []


def test_a_rank_other_than_0_checks_nothing(tmp_path):
    normalizer = trained_normalizer(tmp_path / "train")
    folder = tmp_path / "scaled"
    folder.mkdir()
    reporter = LevelReporter()
    with series(folder, reflectance(2) * 10000).open() as reader:
        check_input_scale(reader, normalizer, FollowerReporter(reporter, 1))
    assert reporter.warnings == []


def test_classify_warns_on_an_ms_ten_thousand_times_larger(tmp_path, trained_mrfusion, scene):
    import rasterio

    pan, ms = cropped_pair(tmp_path / "crop", scene, size=48)
    with rasterio.open(ms) as src:
        profile, data = src.profile, src.read()
    scaled = tmp_path / "ms_x10000.tif"
    with rasterio.open(scaled, "w", **{**profile, "dtype": "float32"}) as dst:
        dst.write(data.astype(np.float32) * 10000)
    said = {}
    for name, ms_path in (("same", ms), ("scaled", scaled)):
        reporter = LevelReporter()
        job = Job.load(mrfusion_classify_job(tmp_path / name, trained_mrfusion[0], pan, ms_path,
                                             confidence=False))
        classify_mrfusion(job, reporter)
        said[name] = [w for w in reporter.warnings if "another scale" in w]
    assert said["same"] == []
    assert len(said["scaled"]) == 1 and said["scaled"][0].startswith("MS: ")


@pytest.mark.parametrize("format", ["lcfusion", "onnx"])
def test_a_forest_warns_on_reflectance_in_another_unit(tmp_path, trained_randomforest,
                                                       randomforest_onnx, scene, format):
    """A forest scales nothing: its thresholds in DN split reflectance 0-1 nowhere."""
    import rasterio

    scaled_folder = tmp_path / "reflectance"
    scaled_folder.mkdir()
    for path in scene.s2_paths:
        with rasterio.open(path) as src:
            profile, data = src.profile, src.read()
        with rasterio.open(scaled_folder / path.name, "w",
                           **{**profile, "dtype": "float32"}) as dst:
            dst.write(data.astype(np.float32) / 10000)
    model, classify = {"lcfusion": (trained_randomforest[0], classify_randomforest),
                       "onnx": (randomforest_onnx, classify_randomforest_onnx)}[format]
    said = {}
    for name, folder in (("same", scene.folder), ("scaled", scaled_folder)):
        job_path = randomforest_classify_job(tmp_path / name, scene, model)
        job = Job.load(job_path)
        job.data["inputs"]["s2"]["paths"] = [str(folder / p.name) for p in scene.s2_paths]
        reporter = LevelReporter()
        classify(job, reporter)
        said[name] = [w for w in reporter.warnings if "another scale" in w]
    assert said["same"] == []
    assert len(said["scaled"]) == 1 and said["scaled"][0].startswith("S2: ")
    assert "10,000 times narrower" in said["scaled"][0]


def test_a_forest_with_ranges_of_other_inputs_is_refused(tmp_path, trained_randomforest, scene):
    """Ranges that do not fit the inputs come from an altered file: refused, not misread."""
    original = ModelBytes(trained_randomforest[0].read_bytes())
    metadata = json.loads(json.dumps(original.metadata))
    ranges = metadata["input_ranges"]["s2"]
    ranges["low"], ranges["high"] = ranges["low"][:-1], ranges["high"][:-1]
    forged = tmp_path / "forged.lcfusion"
    forged.write_bytes(original.forge(metadata))
    job = Job.load(randomforest_classify_job(tmp_path / "run", scene, forged))
    with pytest.raises(LcfusionError, match="input ranges of S2 are not those") as error:
        classify_randomforest(job, LevelReporter())
    assert error.value.parameter == "MODEL"
    assert not (tmp_path / "run" / "map.tif").exists()


def test_sampling_leaves_gdals_block_cache_small(tmp_path, monkeypatch):
    """Each sampled window decodes whole file blocks (here one block of 512 pixels square and
    10 bands, 5.2 MB, per date: 31 MB for 6 dates); they do not stay in GDAL's block cache,
    and its setting is restored."""
    from osgeo import gdal

    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    paths = []
    for date in range(6):
        path = tmp_path / f"s2_2021-0{date + 1}-01.tif"
        with rasterio.open(path, "w", driver="GTiff", width=512, height=512, count=10,
                           dtype="uint16", tiled=True, blockxsize=512, blockysize=512,
                           compress="deflate", crs="EPSG:32631",
                           transform=from_origin(500000.0, 5000000.0, 10.0, 10.0)) as dst:
            dst.write(np.full((10, 512, 512), 1000 + date, dtype=np.uint16))
        paths.append(str(path))
    before = gdal.GetCacheMax()
    gdal.SetCacheMax(0)  # empties the cache
    setting = 256 << 20  # room for every block read, as GDAL's default of 5 % of the RAM
    gdal.SetCacheMax(setting)
    try:
        with TimeSeries(SeriesSpec(tuple(paths))).open() as reader:
            values = sample_values(reader, np.random.default_rng(0))
            assert gdal.GetCacheUsed() <= MIN_BLOCK_CACHE
        assert values.shape[0] == 60 and values[0].min() == 1000
        assert gdal.GetCacheMax() == setting
    finally:
        gdal.SetCacheMax(before)
