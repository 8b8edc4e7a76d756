"""Tiling: balanced tiles, the reader thread, GDAL's block cache while classifying."""

import threading

import numpy as np
import pytest
import rasterio
from helpers import write_raster
from osgeo import gdal
from rasterio.crs import CRS

from lcfusion.engine.inference.blocks import map_blocks
from lcfusion.engine.inference.classifying import prefetched, write_class_map
from lcfusion.engine.inference.tiles import TilePredictor, balanced_steps
from lcfusion.engine.io.rasters import (
    MIN_BLOCK_CACHE,
    Grid,
    block_cache_share,
    iter_windows,
    rows_block_cache,
)
from lcfusion.engine.progress import NullReporter
from lcfusion.engine.reference.classes import ClassTable


@pytest.mark.parametrize("size, tile, margin, expected", [
    (1024, 512, 20, 344),  # 3 tiles of 384, not 2 of 512 and one almost empty
    (944, 512, 20, 472),   # exactly 2 full tiles
    (256, 512, 20, 256),   # one tile no larger than the raster needs
    (96, 72, 28, 16),
])
def test_balanced_steps(size, tile, margin, expected):
    step = balanced_steps(size, tile, margin, 4)
    assert step == expected
    assert step % 4 == 0 and step + 2 * margin <= tile
    count = -(-size // step)
    assert count == -(-size // (tile - 2 * margin))  # no more tiles than full ones would need


def test_prefetched_keeps_the_order_and_reads_ahead_in_another_thread():
    threads = []

    def load(item: int) -> int:
        threads.append(threading.current_thread().name)
        return item * item

    got = list(prefetched(load, range(7)))
    assert got == [(i, i * i) for i in range(7)]
    assert all(name.startswith("lcfusion-reader") for name in threads)


def test_prefetched_raises_the_load_error_for_its_item_and_stops():
    loaded = []

    def load(item: int) -> int:
        loaded.append(item)
        if item == 2:
            raise ValueError("unreadable tile 2")
        return item

    got = []
    with pytest.raises(ValueError, match="tile 2"):
        for _, value in prefetched(load, range(100)):
            got.append(value)
    assert got == [0, 1]
    assert max(loaded) <= 3  # at most one tile read ahead of the failing one


def test_block_cache_holds_rows_of_blocks_while_classifying(tmp_path):
    path = write_raster(tmp_path / "a.tif", np.zeros((3, 64, 5000), dtype="uint16"))
    before = gdal.GetCacheMax()
    with rasterio.open(path) as src, block_cache_share([src]), rows_block_cache():
        rows = src.block_shapes[0][0]
        assert gdal.GetCacheMax() == min(before, max(MIN_BLOCK_CACHE, 4 * rows * 5000 * 3 * 2))
    assert gdal.GetCacheMax() == before


class ConstantPredictor(TilePredictor):
    """Class 2 everywhere: the writer alone is under test."""

    tile_size = 256

    def load(self, reader, core):
        return core

    def infer(self, tile):
        probs = np.zeros((2, int(tile.height), int(tile.width)), dtype=np.float32)
        probs[1] = 1.0
        return probs, np.ones(probs.shape[1:], dtype=bool)


def test_a_class_map_larger_than_the_block_cache_keeps_its_palette_quietly(
        tmp_path, monkeypatch, capfd):
    """GDAL flushes blocks of a large map before the end: the colour table must come first,
    or libtiff refuses it ("Cannot modify tag PhotometricInterpretation while writing")."""
    monkeypatch.setenv("GDAL_CACHEMAX", "0")  # the user's setting: left as it is
    before = gdal.GetCacheMax()
    gdal.SetCacheMax(0)
    try:
        classes = ClassTable.build([3, 7], {3: "water", 7: "forest"},
                                   {3: "#1f78b4", 7: "#33a02c"})
        grid = Grid(CRS.from_epsg(32631).to_wkt(), (600000.0, 10.0, 0.0, 5600000.0, 0.0, -10.0),
                    768, 768)
        class_map = tmp_path / "map.tif"
        write_class_map(ConstantPredictor(), None, grid, classes, class_map,
                        tmp_path / "confidence.tif", NullReporter())
    finally:
        gdal.SetCacheMax(before)
    assert "GDAL" not in capfd.readouterr().err
    with rasterio.open(class_map) as ds:
        assert ds.colorinterp[0].name == "palette"
        assert ds.colormap(1)[7][:3] == (0x33, 0xa0, 0x2c)
        assert ds.descriptions == ("class",)
        assert (ds.read(1) == 7).all()


def test_map_blocks_are_runs_of_cores_along_a_row_within_the_pixel_budget():
    cores = list(iter_windows(100, 70, 30))  # 4 x 3 cores, narrower at the right and bottom
    blocks = map_blocks(cores, max_pixels=1800)
    assert [tuple(int(v) for v in (b.window.col_off, b.window.row_off, b.window.width,
                                   b.window.height)) for b in blocks] == [
        (0, 0, 60, 30), (60, 0, 40, 30), (0, 30, 60, 30), (60, 30, 40, 30), (0, 60, 100, 10)]
    assert [core for block in blocks for core in block.cores] == cores
    assert [block.index for block in blocks] == list(range(5))
