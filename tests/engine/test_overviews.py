"""Class maps get mode overviews (never an average of class codes), confidence maps and value
maps (TWINNS's attention) average ones, optionally as Cloud Optimized GeoTIFFs; the maps keep
their grid, palette, classes and nodata; a cancel (SIGTERM) or a full disk while GDAL builds
them, or a cancel while classifying, leaves the existing outputs as they were."""

import json
import os
import signal

import numpy as np
import pytest
import rasterio
from fault_helpers import fill_disk, small_tmpfs
from helpers import RecordingReporter
from osgeo_utils.samples.validate_cloud_optimized_geotiff import validate
from rasterio.crs import CRS

from lcfusion.engine.cli import _cancel
from lcfusion.engine.errors import CancelledError, LcfusionError
from lcfusion.engine.families.mapsteps import MapOutputs, map_outputs, written_wording
from lcfusion.engine.inference.classifying import ValueMap, write_class_map
from lcfusion.engine.inference.tiles import TilePredictor
from lcfusion.engine.io.outputs import DiskFullError
from lcfusion.engine.io.overviews import overview_factors
from lcfusion.engine.io.rasters import Grid
from lcfusion.engine.jobs import Job
from lcfusion.engine.progress import NullReporter, Reporter
from lcfusion.engine.reference.classes import ClassTable

#: The checkerboard's classes (confidence 0.9 and 0.7): a 2 x 2 average of the codes would be
#: 5, of the confidences 0.8 (a nearest pick 0.9 or 0.7).
CODES = (3, 7)
#: 520 pixels: overviews of 260 and 130 pixels (the first is still over 256).
SIDE = 520
GRID = Grid(CRS.from_epsg(32631).to_wkt(), (600000.0, 10.0, 0.0, 5600000.0, 0.0, -10.0),
            SIDE, SIDE)


class CheckerboardPredictor(TilePredictor):
    """Class 3 where row + column is even, class 7 where it is odd; no data in the last row."""

    tile_size = 128

    def load(self, reader, core):
        return core

    def infer(self, tile):
        rows, cols = np.indices((int(tile.height), int(tile.width)))
        odd = (rows + int(tile.row_off) + cols + int(tile.col_off)) % 2 == 1
        probs = np.where(odd, [[[0.3]], [[0.7]]], [[[0.9]], [[0.1]]]).astype(np.float32)
        valid = (rows + int(tile.row_off)) < SIDE - 1
        return probs, valid


class ValuedCheckerboard(CheckerboardPredictor):
    """The checkerboard with two bands of values per pixel: 0.25 on the class-3 squares and
    0.75 on the class-7 ones, and their complements (a 2 x 2 average: 0.5)."""

    def infer_values(self, tile):
        probs, valid = self.infer(tile)
        first = np.where(probs[0] > 0.5, 0.25, 0.75).astype(np.float32)
        return probs, valid, np.stack([first, 1 - first])


def value_map(target) -> ValueMap:
    return ValueMap(target, "OUTPUT_VALUES", ("first", "second"),
                    ({"WHICH": "one"}, {"WHICH": "two"}), {"WHAT": "test"})


class AtStage(Reporter):
    """Sends this process `stop` (SIGTERM: the plugin's cancel) when the run reaches `stage`;
    with `disk`, fills that disk instead. Once."""

    def __init__(self, stage: str, disk=None, stop=signal.SIGTERM):
        self.stage, self.disk, self.stop, self.done = stage, disk, stop, False

    def progress(self, fraction, stage=""):
        if stage == self.stage and not self.done:
            self.done = True
            if self.disk is None:
                os.kill(os.getpid(), self.stop)
            else:
                fill_disk(self.disk, 0)

    def log(self, message, level="info"):
        return None

    def result(self, outputs):
        return None


@pytest.fixture
def engine_sigterm():
    """SIGTERM handled as the engine handles it: `CancelledError`."""
    previous = signal.signal(signal.SIGTERM, _cancel)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def python_sigint():
    """SIGINT handled as Python handles it when started from a terminal (`KeyboardInterrupt`),
    also where the suite was started in the background, with SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="module")
def classes() -> ClassTable:
    return ClassTable.build(list(CODES), {3: "water", 7: "forest"},
                            {3: "#1f78b4", 7: "#33a02c"})


def written(folder, classes, cog: bool) -> tuple:
    class_map, confidence = folder / "map.tif", folder / "confidence.tif"
    write_class_map(CheckerboardPredictor(), None, GRID, classes, class_map, confidence,
                    NullReporter(), tags={"LCFUSION_FAMILY": "test"}, cog=cog)
    return class_map, confidence


@pytest.fixture(scope="module", params=[False, True], ids=["gtiff", "cog"])
def maps(request, tmp_path_factory, classes):
    folder = tmp_path_factory.mktemp("cog" if request.param else "gtiff")
    return (*written(folder, classes, request.param), request.param)


def test_the_smallest_overview_is_one_tile_across():
    assert overview_factors(10980, 10980) == [2, 4, 8, 16, 32, 64]
    assert overview_factors(SIDE, 300) == [2, 4]
    assert overview_factors(256, 256) == []


def test_class_overviews_hold_only_class_codes(maps):
    class_map, _, _ = maps
    with rasterio.open(class_map) as full:
        assert full.overviews(1) == [2, 4]
    for level in (0, 1):
        with rasterio.open(class_map, overview_level=level) as overview:
            values = set(np.unique(overview.read(1)).tolist())
        assert values & set(CODES) and values <= {*CODES, 255}  # never 5, their mean


def test_confidence_overviews_average(maps):
    _, confidence, _ = maps
    with rasterio.open(confidence) as full:
        assert full.overviews(1) == [2, 4]
    with rasterio.open(confidence, overview_level=0) as overview:
        data = overview.read(1)
    assert np.allclose(data[:-1], 0.8, rtol=0, atol=1e-6)


def test_the_maps_keep_their_grid_palette_classes_and_nodata(maps, classes):
    class_map, confidence, _ = maps
    with rasterio.open(class_map) as ds:
        assert ds.crs.to_epsg() == 32631 and ds.transform.to_gdal() == GRID.transform
        assert (ds.width, ds.height, ds.nodata, ds.descriptions) == (SIDE, SIDE, 255, ("class",))
        assert ds.colorinterp[0].name == "palette"
        assert ds.colormap(1)[7][:3] == (0x33, 0xA0, 0x2C)
        assert json.loads(ds.tags()["LCFUSION_CLASSES"]) == classes.to_json()
        assert ds.tags()["LCFUSION_FAMILY"] == "test"
        assert (ds.read(1)[-1] == 255).all()
    with rasterio.open(confidence) as ds:
        assert np.isnan(ds.nodata) and ds.transform.to_gdal() == GRID.transform
    assert sorted(p.name for p in class_map.parent.iterdir()) == ["confidence.tif", "map.tif"]


def test_the_cog_option_writes_valid_cogs(maps):
    class_map, confidence, cog = maps
    for path in (class_map, confidence):
        _, errors, _ = validate(str(path), full_check=True)
        assert (errors == []) == cog, errors
        with rasterio.open(path) as ds:
            assert (ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG") == cog


@pytest.mark.parametrize("stage, stop, error", [
    ("overviews", signal.SIGTERM, CancelledError),
    ("cloud optimized GeoTIFF", signal.SIGTERM, CancelledError),
    ("overviews", signal.SIGINT, KeyboardInterrupt)])
def test_a_cancel_while_gdal_works_keeps_the_existing_maps(tmp_path, classes, capfd,
                                                           engine_sigterm, python_sigint, stage,
                                                           stop, error):
    class_map, confidence = tmp_path / "map.tif", tmp_path / "confidence.tif"
    class_map.write_bytes(b"old map")
    with pytest.raises(error):
        write_class_map(CheckerboardPredictor(), None, GRID, classes, class_map, confidence,
                        AtStage(stage, stop=stop), cog=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.tif"]
    assert class_map.read_bytes() == b"old map"
    assert "Traceback" not in capfd.readouterr().err


# Before GDAL 3.8 (no Dataset.Close) the bindings raise in the destructor of the dataset the
# failed COG copy returns, which Python can only report as unraisable.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("stage", ["overviews", "cloud optimized GeoTIFF"])
def test_a_disk_filled_while_gdal_works_is_reported_and_keeps_the_existing_map(
        tmp_path, classes, stage):
    with small_tmpfs(tmp_path / "disk", "2m") as disk:
        class_map = disk / "map.tif"
        class_map.write_bytes(b"old map")
        with pytest.raises(DiskFullError) as info:
            write_class_map(CheckerboardPredictor(), None, GRID, classes, class_map, None,
                            AtStage(stage, disk), cog=True)
        assert info.value.parameter == "OUTPUT"
        assert sorted(p.name for p in disk.iterdir()) == ["filler.bin", "map.tif"]
        assert class_map.read_bytes() == b"old map"


def test_a_value_map_has_its_bands_average_overviews_and_the_cog_option(tmp_path, classes):
    target = tmp_path / "values.tif"
    written = write_class_map(ValuedCheckerboard(), None, GRID, classes, tmp_path / "map.tif",
                              None, NullReporter(), cog=True, value_map=value_map(target))
    assert written.value_statistics.means == pytest.approx((0.5, 0.5), abs=1e-6)
    assert written.value_statistics.maxima == (0.75, 0.75)
    assert written.value_statistics.minima == (0.25, 0.25)
    with rasterio.open(target) as ds:
        assert (ds.count, ds.descriptions, ds.dtypes) == (2, ("first", "second"),
                                                          ("float32", "float32"))
        assert ds.transform.to_gdal() == GRID.transform and np.isnan(ds.nodata)
        assert ds.tags()["WHAT"] == "test" and ds.tags(2)["WHICH"] == "two"
        assert float(ds.tags(1)["LCFUSION_MEAN"]) == pytest.approx(0.5, abs=1e-6)
        assert float(ds.tags(2)["LCFUSION_MAX"]) == 0.75
        data = ds.read()
        assert np.isnan(data[:, -1]).all() and set(np.unique(data[0, :-1])) == {0.25, 0.75}
        assert ds.overviews(1) == ds.overviews(2) == [2, 4]
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    with rasterio.open(target, overview_level=0) as overview:
        assert np.allclose(overview.read()[:, :-1], 0.5, rtol=0, atol=1e-6)
    assert validate(str(target), full_check=True)[1] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.tif", "values.tif"]


def test_a_cancel_while_classifying_keeps_an_existing_value_map(tmp_path, classes,
                                                                engine_sigterm):
    target = tmp_path / "values.tif"
    target.write_bytes(b"old values")
    with pytest.raises(CancelledError):
        write_class_map(ValuedCheckerboard(), None, GRID, classes, tmp_path / "map.tif", None,
                        AtStage("classifying"), value_map=value_map(target))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["values.tif"]
    assert target.read_bytes() == b"old values"


@pytest.mark.parametrize("cog", [False, True])
def test_a_map_too_small_for_overviews_says_so(tmp_path, classes, cog):
    grid = Grid(GRID.crs_wkt, GRID.transform, 200, 120)
    log = RecordingReporter()
    class_map = tmp_path / "map.tif"
    written = write_class_map(CheckerboardPredictor(), None, grid, classes, class_map, None,
                              log, cog=cog)
    with rasterio.open(class_map) as dataset:
        assert dataset.overviews(1) == []
    assert "overviews" not in log.stages and log.stages[-1] == ("cloud optimized GeoTIFF"
                                                               if cog else "")
    maps = MapOutputs(class_map, tmp_path / "confidence.tif", cog=cog)
    paths, note = written_wording(maps, grid, written.finish_seconds)
    assert paths == f"{class_map}, confidence {tmp_path / 'confidence.tif'}"
    copy = f"Cloud Optimized GeoTIFF {written.finish_seconds:.1f} s, " if cog else ""
    assert note == copy + "no overviews at 200 x 120 pixels"
    assert written_wording(maps, GRID, 1.25)[1] == (
        "overviews and Cloud Optimized GeoTIFF 1.2 s" if cog else "overviews 1.2 s")


def test_the_cog_option_is_true_or_false(tmp_path):
    job = Job("classify-fgunet", {"outputs": {"class_map": "map.tif", "cog": True}}, tmp_path)
    assert map_outputs(job) == MapOutputs(tmp_path / "map.tif", None, True)
    job.data["outputs"]["cog"] = "yes"
    with pytest.raises(LcfusionError) as info:
        map_outputs(job)
    assert info.value.parameter == "COG"
    assert "must be true or false, got 'yes'" in info.value.message
