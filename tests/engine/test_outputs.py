"""Outputs appear complete or not at all; failures keep existing files; temporary files name
the process that writes them; a full disk is a clear error naming the output."""

import os

import numpy as np
import pytest
import rasterio
import torch
from fault_helpers import fill_disk, small_tmpfs
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.transform import from_origin

from lcfusion.engine.errors import CancelledError, LcfusionError
from lcfusion.engine.inference.classifying import write_class_map
from lcfusion.engine.inference.tiles import TilePredictor
from lcfusion.engine.io.outputs import (
    DiskFullError,
    RasterOutput,
    atomic_output,
    checked_raster_writes,
    partial_files,
    partial_path,
)
from lcfusion.engine.io.rasters import Grid
from lcfusion.engine.modelfile.storage import save_model
from lcfusion.engine.progress import NullReporter
from lcfusion.engine.reference.classes import ClassTable

NO_SPACE_MESSAGE = ("no space left on device while writing {}: free space or choose another "
                    "output folder")


def test_success_replaces_the_target(tmp_path):
    target = tmp_path / "map.tif"
    target.write_text("old")
    with atomic_output(target, "OUTPUT") as temporary:
        assert temporary.parent == tmp_path and temporary.suffix == ".tif"
        temporary.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["map.tif"]


@pytest.mark.parametrize("new_sidecar", [False, True])
def test_the_old_files_statistics_go_with_it(tmp_path, new_sidecar):
    target = tmp_path / "map.tif"
    target.write_text("old")
    (tmp_path / "map.tif.aux.xml").write_text("<PAMDataset>old statistics</PAMDataset>")
    with atomic_output(target, "OUTPUT") as temporary:
        temporary.write_text("new")
        if new_sidecar:
            (tmp_path / f"{temporary.name}.aux.xml").write_text("<PAMDataset>new</PAMDataset>")
    names = sorted(p.name for p in tmp_path.iterdir())
    if new_sidecar:
        assert names == ["map.tif", "map.tif.aux.xml"]
        assert "new" in (tmp_path / "map.tif.aux.xml").read_text()
    else:
        assert names == ["map.tif"]


def test_failure_keeps_the_old_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "map.tif"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(target, "OUTPUT") as temporary:
        temporary.write_text("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["map.tif"]


def test_missing_folder_or_a_folder_as_target(tmp_path):
    with pytest.raises(LcfusionError, match="does not exist") as info:
        with atomic_output(tmp_path / "no" / "map.tif", "OUTPUT"):
            pass
    assert info.value.parameter == "OUTPUT"
    (tmp_path / "map.tif").mkdir()
    with pytest.raises(LcfusionError, match="is a folder"):
        with atomic_output(tmp_path / "map.tif", "OUTPUT"):
            pass


def test_temporary_names_carry_the_writing_process(tmp_path):
    target = tmp_path / "map.tif"
    with atomic_output(target, "OUTPUT") as temporary:
        assert temporary.name.startswith(f"map.lcfusion-partial-{os.getpid()}-")
        assert temporary.suffix == ".tif"
        temporary.write_text("new")
        assert partial_files(target, os.getpid()) == [temporary]


def test_partial_files_finds_what_partial_path_names(tmp_path):
    target = tmp_path / "map.tif"
    mine = [partial_path(target), partial_path(target)]
    theirs = [partial_path(target, 1), partial_path(target, os.getpid() * 10)]
    for path in mine + theirs + [tmp_path / "map.qml", partial_path(tmp_path / "other.tif")]:
        path.write_text("x")
    assert partial_files(target, os.getpid()) == sorted(mine)
    assert partial_files(target, 1) == [theirs[0]]
    assert partial_files(target) == sorted(mine + theirs)


def test_a_full_disk_is_a_clear_error_and_keeps_the_old_file(tmp_path):
    with small_tmpfs(tmp_path / "disk", "64k") as disk:
        target = disk / "table.csv"
        target.write_text("old")
        with pytest.raises(DiskFullError) as info:
            with atomic_output(target, "OUTPUT") as temporary:
                temporary.write_bytes(b"x" * (1 << 20))
        assert str(info.value) == "OUTPUT: " + NO_SPACE_MESSAGE.format(target)
        assert info.value.parameter == "OUTPUT"
        assert [p.name for p in disk.iterdir()] == ["table.csv"]
        assert target.read_text() == "old"


def test_a_full_disk_while_saving_a_model_names_the_model_file(tmp_path):
    with small_tmpfs(tmp_path / "disk", "64k") as disk:
        model = disk / "model.lcfusion"
        with pytest.raises(DiskFullError) as info:
            save_model(model, {"family": "fgunet"}, {"weight": torch.ones(256, 1024)})
        assert info.value.message == NO_SPACE_MESSAGE.format(model)
        assert info.value.parameter == "OUTPUT_MODEL"
        assert list(disk.iterdir()) == []


PROFILE = {"driver": "GTiff", "width": 1024, "height": 1024, "count": 1, "dtype": "uint8",
           "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate",
           "crs": "EPSG:32631", "transform": from_origin(500000, 5000000, 10, 10)}
SHAPE = (1, 1024, 1024)
NOISE = np.random.default_rng(0).integers(0, 255, (1024, 1024), dtype=np.uint8)


def test_a_raster_that_does_not_fit_is_a_clear_error_not_a_truncated_file(tmp_path):
    """GDAL writes the cached blocks when the raster is closed, and rasterio lets the errors of
    that pass (1.3) or raises some of them itself (1.4): either becomes the full-disk error."""
    with small_tmpfs(tmp_path / "disk", "128k") as disk:
        target = disk / "map.tif"
        with pytest.raises(DiskFullError) as info:
            with atomic_output(target, "OUTPUT") as temporary, \
                    checked_raster_writes(RasterOutput(temporary, target, "OUTPUT", SHAPE)), \
                    rasterio.open(temporary, "w", **PROFILE) as ds:
                ds.write(NOISE, 1)
        assert info.value.message == NO_SPACE_MESSAGE.format(target)
        assert list(disk.iterdir()) == []


def test_a_raster_cut_short_without_a_word_is_an_error_and_keeps_the_old_file(tmp_path):
    """A file rasterio closed without saying that its last writes failed (as rasterio 1.4
    does on a full disk) never replaces the existing output."""
    target = tmp_path / "map.tif"
    target.write_bytes(b"old map")
    with pytest.raises(LcfusionError) as info:
        with atomic_output(target, "OUTPUT") as temporary, \
                checked_raster_writes(RasterOutput(temporary, target, "OUTPUT", SHAPE)):
            with rasterio.open(temporary, "w", **PROFILE) as ds:
                ds.write(NOISE, 1)
            os.truncate(temporary, 4096)
    assert not isinstance(info.value, DiskFullError)  # this disk has room
    assert info.value.parameter == "OUTPUT"
    assert info.value.message.startswith(f"could not write {target}: the written file is "
                                         "incomplete (")
    assert target.read_bytes() == b"old map"
    assert [p.name for p in tmp_path.iterdir()] == ["map.tif"]


def test_a_raster_with_a_block_never_written_or_another_shape_is_incomplete(tmp_path):
    target = tmp_path / "map.tif"
    with pytest.raises(LcfusionError, match=r"block 3, 2 of band 1 is missing"):
        with atomic_output(target, "OUTPUT") as temporary, \
                checked_raster_writes(RasterOutput(temporary, target, "OUTPUT", SHAPE)), \
                rasterio.open(temporary, "w", sparse_ok=True, **PROFILE) as ds:
            ds.write(NOISE[:768], 1, window=((0, 768), (0, 1024)))
            ds.write(NOISE[768:, :512], 1, window=((768, 1024), (0, 512)))
    with pytest.raises(LcfusionError, match=r"1 x 1024 x 1024 instead of 2 x 1024 x 1024"):
        with atomic_output(target, "OUTPUT_CONFIDENCE") as temporary, \
                checked_raster_writes(RasterOutput(temporary, target, "OUTPUT_CONFIDENCE",
                                                   (2, 1024, 1024))), \
                rasterio.open(temporary, "w", **PROFILE) as ds:
            ds.write(NOISE, 1)
    assert list(tmp_path.iterdir()) == []


def test_rasterios_own_write_errors_name_the_output(tmp_path):
    """rasterio 1.4 raises "Write failed" itself (GDAL's error handler never sees it)."""
    target = tmp_path / "map.tif"
    with pytest.raises(LcfusionError) as info:
        with atomic_output(target, "OUTPUT") as temporary, \
                checked_raster_writes(RasterOutput(temporary, target, "OUTPUT", SHAPE)):
            try:
                raise OSError("TIFFAppendToStrip:Write error at scanline 56")
            except OSError as exc:
                raise RasterioIOError("Write failed. See previous exception for details.") \
                    from exc
    assert info.value.parameter == "OUTPUT"
    assert info.value.message == (f"could not write {target}: Write failed. See previous "
                                  "exception for details.; TIFFAppendToStrip:Write error at "
                                  "scanline 56")
    assert list(tmp_path.iterdir()) == []


def test_other_errors_while_writing_a_raster_pass_unchanged(tmp_path):
    target = tmp_path / "map.tif"
    with pytest.raises(RasterioIOError, match="Read failed"):
        with atomic_output(target, "OUTPUT") as temporary, \
                checked_raster_writes(RasterOutput(temporary, target, "OUTPUT", SHAPE)):
            raise RasterioIOError("Read failed. See previous exception for details.")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("full", [True, False])
def test_a_gdal_error_without_a_word_of_writing_is_a_full_disk_only_on_a_full_disk(tmp_path,
                                                                                    full):
    """After a failed write libtiff may report only what followed it (GDAL 3.10, overviews)."""
    unworded = "TIFFReadDirectory:Failed to read directory at offset 7596"
    with small_tmpfs(tmp_path / "disk", "8m") as disk:
        target = disk / "map.tif"
        target.write_bytes(b"old map")
        if full:
            fill_disk(disk, 0)
        with pytest.raises(DiskFullError if full else RuntimeError) as info:
            with atomic_output(target, "OUTPUT") as temporary, \
                    checked_raster_writes(RasterOutput(temporary, target, "OUTPUT", SHAPE)):
                raise RuntimeError(unworded)
        assert info.value.parameter == "OUTPUT" if full else str(info.value) == unworded
        assert target.read_bytes() == b"old map"


class NoisePredictor(TilePredictor):
    """Random classes and confidences, which compress badly: the writer alone is under test.
    Its tiles are not GeoTIFF blocks, so GDAL caches the blocks and writes them on closing."""

    tile_size = 48

    def load(self, reader, core):
        return core

    def infer(self, tile):
        rng = np.random.default_rng(int(tile.row_off) * 7919 + int(tile.col_off))
        probs = rng.random((4, int(tile.height), int(tile.width)), dtype=np.float32)
        return probs, np.ones(probs.shape[1:], dtype=bool)


@pytest.mark.parametrize("leave", [0, 8 << 10, 96 << 10])
def test_a_class_map_that_does_not_fit_keeps_the_existing_maps(tmp_path, leave):
    """The data-loss bug of rasterio 1.4: on a full disk the run seemed to succeed and replaced
    the existing map with an unreadable file of a few KB. Room is left for nothing, for the
    header only, or for some of the blocks."""
    classes = ClassTable.build([1, 2, 3, 4], {1: "water", 2: "forest", 3: "crops", 4: "urban"},
                               {1: "#1f78b4", 2: "#33a02c", 3: "#ffff99", 4: "#e31a1c"})
    grid = Grid(CRS.from_epsg(32631).to_wkt(), (600000.0, 10.0, 0.0, 5600000.0, 0.0, -10.0),
                640, 640)
    with small_tmpfs(tmp_path / "disk", "512k") as disk:
        class_map, confidence = disk / "map.tif", disk / "confidence.tif"
        class_map.write_bytes(b"old map")
        confidence.write_bytes(b"old confidence")
        fill_disk(disk, leave)
        with pytest.raises(DiskFullError) as info:
            write_class_map(NoisePredictor(), None, grid, classes, class_map, confidence,
                            NullReporter())
        assert info.value.parameter == "OUTPUT"
        assert info.value.message == NO_SPACE_MESSAGE.format(class_map)
        assert sorted(p.name for p in disk.iterdir()) == ["confidence.tif", "filler.bin",
                                                           "map.tif"]
        assert class_map.read_bytes() == b"old map"
        assert confidence.read_bytes() == b"old confidence"


def test_a_cancel_while_the_disk_is_full_stays_a_cancel(tmp_path):
    with small_tmpfs(tmp_path / "disk", "64k") as disk:
        with pytest.raises(CancelledError):
            with atomic_output(disk / "table.csv", "OUTPUT") as temporary:
                try:
                    temporary.write_bytes(b"x" * (1 << 20))
                except OSError:
                    raise CancelledError() from None
        assert list(disk.iterdir()) == []
