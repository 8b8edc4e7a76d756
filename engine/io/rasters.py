"""Raster facts and windowed raster I/O with rasterio."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from ..errors import LcfusionError

#: Creation options of every GeoTIFF the engine writes.
GTIFF_OPTIONS = {
    "driver": "GTiff",
    "tiled": True,
    "blockxsize": 256,
    "blockysize": 256,
    "compress": "deflate",
    "bigtiff": "if_safer",
}


#: The least block cache set while classifying (GDAL's setting, if lower, is kept).
MIN_BLOCK_CACHE = 16 << 20
_block_cache_shares: dict[object, tuple[list[rasterio.io.DatasetReader
                                             | rasterio.io.DatasetWriter], Window | None]] = {}


@contextlib.contextmanager
def block_cache_share(datasets: Sequence[rasterio.io.DatasetReader | rasterio.io.DatasetWriter],
                      covering: Window | None = None) -> Iterator[None]:
    """While open, `datasets` count in the block cache `strip_reading` gives; they cover
    the window `covering` of the grid classified (default: all of it)."""
    share = object()
    _block_cache_shares[share] = (list(datasets), covering)
    try:
        yield
    finally:
        del _block_cache_shares[share]


def window_blocks(window: Window, scale: tuple[float, float], blocks: tuple[int, int],
                  size: tuple[int, int]) -> list[tuple[int, int]]:
    """The (row, column) blocks of a raster of `size` (rows, cols) with `blocks` (rows, cols)
    that `window`, on a grid `scale` (rows, cols) times finer, touches once clipped to the
    raster (where a window's edges are read mirrored from)."""
    spans = []
    for start, length, factor, block, extent in (
            (window.row_off, window.height, scale[0], blocks[0], size[0]),
            (window.col_off, window.width, scale[1], blocks[1], size[1])):
        first = min(max(0, math.floor(start / factor)), extent - 1)
        last = min(max(0, math.ceil((start + length) / factor) - 1), extent - 1)
        spans.append(range(first // block, last // block + 1))
    return [(row, col) for row in spans[0] for col in spans[1]]


def blocks_reused_within(strips: Sequence[Sequence[Window]], scale: tuple[float, float],
                         blocks: tuple[int, int], size: tuple[int, int]) -> int:
    """How many of a raster's blocks GDAL's least-recently-used block cache must hold so that
    reading the windows of each strip in order decodes each block once within the strip: for
    every block read again, the blocks of the windows from the one that last read it to this
    one. As every raster of a classification is read window by window, one after the other,
    the rasters' counts add up (each over the same windows). A block shared by two strips is
    decoded by each (holding it would take a strip's worth of blocks)."""
    needed = 1
    for strip in strips:
        touched = [set(window_blocks(window, scale, blocks, size)) for window in strip]
        last: dict[tuple[int, int], int] = {}
        for index, current in enumerate(touched):
            since = min((last[block] for block in current if block in last), default=index)
            if since < index:
                needed = max(needed, len(set().union(*touched[since: index + 1])))
            last.update(dict.fromkeys(current, index))
    return needed


def on_raster(dataset: rasterio.io.DatasetReader | rasterio.io.DatasetWriter,
              strips: Sequence[Sequence[Window]], covering: Window
              ) -> tuple[list[list[Window]], tuple[float, float], int]:
    """The windows of `strips` (on a grid of which `dataset` covers the window `covering`,
    on a grid as fine or coarser) shifted to the raster's origin, how many times finer the
    grid is (rows, columns), and the bytes of one of the raster's blocks in all its bands."""
    blocks = dataset.block_shapes[0]
    scale = (covering.height / dataset.height, covering.width / dataset.width)
    shifted = [[Window(w.col_off - covering.col_off, w.row_off - covering.row_off, w.width,
                       w.height) for w in strip] for strip in strips]
    block_bytes = blocks[0] * blocks[1] * dataset.count * np.dtype(dataset.dtypes[0]).itemsize
    return shifted, scale, block_bytes


def strip_cache_bytes(dataset: rasterio.io.DatasetReader | rasterio.io.DatasetWriter,
                      strips: Sequence[Sequence[Window]], covering: Window) -> int:
    """The block cache `dataset` needs while windows of a grid, of which it covers the window
    `covering` (on a grid as fine or coarser), are read strip by strip
    (`blocks_reused_within`)."""
    shifted, scale, block_bytes = on_raster(dataset, strips, covering)
    size = (dataset.height, dataset.width)
    return blocks_reused_within(shifted, scale, dataset.block_shapes[0], size) * block_bytes


class RowCarry:
    """Reading the windows of strips one window wide, each raster's rows that the next window
    down the strip reads again stay decoded here instead of in GDAL's block cache: a read
    goes on to the end of the row of blocks its window ends in (each block decoded once,
    not once for this window and again for the next), and the rows from `keep[dataset]`
    above the window's bottom to there are kept for the next read of the same columns. A
    row of blocks as wide as the window stays decoded, not the blocks of two windows."""

    def __init__(self, keep: dict[object, int]):
        self.keep = keep
        self.carried: dict[object, tuple[int, int, int, np.ndarray]] = {}

    def read(self, dataset: rasterio.io.DatasetReader, window: Window) -> np.ndarray:
        """`window` (inside the raster) of all of `dataset`'s bands; the array may be a
        read-only view of the rows kept."""
        keep = self.keep.get(dataset)
        if keep is None:
            return dataset.read(window=window)
        row0, col0 = int(window.row_off), int(window.col_off)
        rows, cols = int(window.height), int(window.width)
        have = None
        if dataset in self.carried:
            kept_col, kept_cols, first, kept = self.carried.pop(dataset)
            if (kept_col, kept_cols) == (col0, cols) and first <= row0 <= first + kept.shape[1]:
                have = kept[:, row0 - first:]
        start = row0 + (0 if have is None else have.shape[1])
        block = dataset.block_shapes[0][0]
        end = max(start, min(dataset.height, -(-(row0 + rows) // block) * block))
        data = have
        if end > start:
            new = dataset.read(window=Window(col0, start, cols, end - start))
            data = new if have is None else np.concatenate([have, new], axis=1)
        kept_from = max(0, rows - keep)
        carried = data[:, kept_from:].copy()
        carried.setflags(write=False)
        self.carried[dataset] = (col0, cols, row0 + kept_from, carried)
        return data[:, :rows]


_row_carry: RowCarry | None = None


def read_window(dataset: rasterio.io.DatasetReader, window: Window,
                out: np.ndarray | None = None) -> np.ndarray:
    """`window` (inside the raster) of `dataset`, through the rows kept while classifying
    (`strip_reading`), into `out` if given; without `out` the array may be read-only."""
    carry = _row_carry
    if carry is None:
        return dataset.read(window=window, out=out)
    data = carry.read(dataset, window)
    if out is None:
        return data
    out[...] = data
    return out


@contextlib.contextmanager
def strip_reading(strips: Sequence[Sequence[Window]], height: int, width: int
                  ) -> Iterator[None]:
    """While the windows of `strips` (vertical strips of a `height` x `width` grid, each read
    row by row) are read, what the order of reading reads again stays decoded, whatever the
    size of the map. Where every strip is one window wide, the GeoTIFFs read keep the rows
    the next window reads again (`RowCarry`), and GDAL's block cache holds the blocks of
    their largest read (`read_cache_bytes`). Where a strip is wider, its windows share
    blocks side by side as well, which are cheaper kept in the cache; and a VRT's blocks
    are not what GDAL decodes (its sources' are), so reading on to its block edges would
    not save decoding: for those the cache holds what each raster's strips reuse
    (`strip_cache_bytes`). The cache also holds what the maps written
    reuse, at least 16 MB, at most GDAL's setting, instead of GDAL's default of 5 % of the
    RAM, which keeps whole rasters decoded and makes memory grow with them; afterwards both
    are restored. A GDAL_CACHEMAX set by the user is left alone."""
    global _row_carry
    whole = Window(0, 0, width, height)
    overlap = max((overlap_rows(strip) for strip in strips), default=0)
    one_wide = all(len({(w.col_off, w.width) for w in strip}) == 1 for strip in strips)
    keep: dict[object, int] = {}
    reused = read = 0
    for datasets, covering in _block_cache_shares.values():
        covering = covering or whole
        for dataset in datasets:
            if dataset.mode == "r" and dataset.driver == "GTiff" and one_wide and overlap:
                keep[dataset] = math.ceil(overlap * dataset.height / covering.height) + 1
                read = max(read, read_cache_bytes(dataset, strips, covering))
            else:
                reused += strip_cache_bytes(dataset, strips, covering)
    before_carry, _row_carry = _row_carry, RowCarry(keep) if keep else None
    try:
        with block_cache_at_most(max(MIN_BLOCK_CACHE, reused + read)):
            yield
    finally:
        _row_carry = before_carry


@contextlib.contextmanager
def block_cache_at_most(size: int) -> Iterator[None]:
    """While open, GDAL's block cache holds at most `size` bytes (a lower setting stays, and
    a GDAL_CACHEMAX set by the user is left alone); afterwards the setting is restored."""
    if "GDAL_CACHEMAX" in os.environ:
        yield
        return
    from osgeo import gdal  # rasterio has no getter; both use the one libgdal

    before = gdal.GetCacheMax()
    gdal.SetCacheMax(min(before, size))
    try:
        yield
    finally:
        gdal.SetCacheMax(before)


def overlap_rows(strip: Sequence[Window]) -> int:
    """The most rows a window of `strip` shares with the one before it of the same columns."""
    last: dict[tuple[int, int], Window] = {}
    overlap = 0
    for window in strip:
        key = (int(window.col_off), int(window.width))
        if key in last:
            above = last[key]
            overlap = max(overlap, int(above.row_off + above.height - window.row_off))
        last[key] = window
    return overlap


def read_cache_bytes(dataset: rasterio.io.DatasetReader, strips: Sequence[Sequence[Window]],
                     covering: Window) -> int:
    """The bytes of the blocks of `dataset` that the largest of its reads decodes (a window
    and the rest of its last row of blocks, which are the window's blocks), so that reading
    its bands one after another decodes each block once."""
    shifted, scale, block_bytes = on_raster(dataset, strips, covering)
    size = (dataset.height, dataset.width)
    most = max((len(window_blocks(w, scale, dataset.block_shapes[0], size))
                for strip in shifted for w in strip), default=0)
    return most * block_bytes


@dataclass(frozen=True)
class Grid:
    """A pixel grid: CRS (WKT), affine transform (GDAL order) and size."""

    crs_wkt: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int

    @property
    def pixel_width(self) -> float:
        return self.transform[1]

    @property
    def pixel_height(self) -> float:
        return -self.transform[5]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) of a north-up grid."""
        x0, dx, _, y0, _, dy = self.transform
        xs = (x0, x0 + dx * self.width)
        ys = (y0, y0 + dy * self.height)
        return min(xs), min(ys), max(xs), max(ys)

    def affine(self) -> rasterio.Affine:
        return rasterio.Affine.from_gdal(*self.transform)

    def same_as(self, other: Grid, tolerance: float = 1e-3) -> bool:
        """Equal CRS and size, origins and pixel sizes within `tolerance` pixels."""
        if (self.width, self.height) != (other.width, other.height):
            return False
        if not same_crs(self.crs_wkt, other.crs_wkt):
            return False
        px = abs(self.pixel_width)
        py = abs(self.pixel_height)
        a, b = self.transform, other.transform
        return (abs(a[0] - b[0]) <= tolerance * px and abs(a[3] - b[3]) <= tolerance * py
                and abs(a[1] - b[1]) * self.width <= tolerance * px
                and abs(a[5] - b[5]) * self.height <= tolerance * py
                and abs(a[2] - b[2]) < 1e-12 and abs(a[4] - b[4]) < 1e-12)

    def describe(self) -> str:
        w, s, e, n = self.bounds
        return (f"{self.width} x {self.height} pixels of {self.pixel_width:g} x "
                f"{self.pixel_height:g}, extent ({w:.2f}, {s:.2f}, {e:.2f}, {n:.2f}), "
                f"CRS {crs_name(self.crs_wkt)}")


@dataclass(frozen=True)
class RasterInfo:
    """What the engine needs to know about one raster file (`nodata` per band)."""

    path: Path
    grid: Grid
    count: int
    dtype: str
    nodata: tuple[float | None, ...]
    descriptions: tuple[str, ...]


def same_crs(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return rasterio.crs.CRS.from_wkt(a) == rasterio.crs.CRS.from_wkt(b)
    except rasterio.errors.CRSError:
        return False


def crs_name(wkt: str) -> str:
    if not wkt:
        return "(none)"
    try:
        crs = rasterio.crs.CRS.from_wkt(wkt)
    except rasterio.errors.CRSError:
        return "(unreadable CRS)"
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_string()[:60]


def read_info(path: str | Path, parameter: str) -> RasterInfo:
    """Open a raster's header; a clear error names the parameter when it cannot be read."""
    path = Path(path)
    if not path.exists():
        raise LcfusionError(f"the raster {path} does not exist", parameter)
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise LcfusionError(
                    f"the raster {path.name} has no coordinate reference system; assign one "
                    "(Raster > Projections > Assign Projection) and try again", parameter)
            transform = src.transform
            if transform.b != 0 or transform.d != 0:
                raise LcfusionError(
                    f"the raster {path.name} is rotated; warp it to a north-up grid first",
                    parameter)
            grid = Grid(src.crs.to_wkt(), transform.to_gdal(), src.width, src.height)
            descriptions = tuple(d or "" for d in src.descriptions)
            return RasterInfo(path, grid, src.count, src.dtypes[0], tuple(src.nodatavals),
                              descriptions)
    except rasterio.errors.RasterioIOError as exc:
        raise LcfusionError(f"cannot read the raster {path}: {exc}", parameter) from exc


def iter_windows(width: int, height: int, rows: int, cols: int | None = None
                 ) -> Iterator[Window]:
    """Row-major windows of `rows` x `cols` (default square; smaller at the right and bottom
    edges)."""
    cols = cols or rows
    for row in range(0, height, rows):
        for col in range(0, width, cols):
            yield Window(col, row, min(cols, width - col), min(rows, height - row))


def block_size_for(width: int, height: int) -> tuple[int, int]:
    """GeoTIFF tile size: 256, or the smallest multiple of 16 covering a small raster."""
    def fit(n: int) -> int:
        return min(256, max(16, int(math.ceil(n / 16.0)) * 16))
    return fit(width), fit(height)


def write_profile(grid: Grid, count: int, dtype: str, nodata: float | None) -> dict:
    """A rasterio profile for a tiled, compressed GeoTIFF on `grid`."""
    bx, by = block_size_for(grid.width, grid.height)
    profile = dict(GTIFF_OPTIONS)
    profile.update(
        blockxsize=bx, blockysize=by, width=grid.width, height=grid.height, count=count,
        dtype=dtype, crs=rasterio.crs.CRS.from_wkt(grid.crs_wkt), transform=grid.affine(),
        nodata=nodata,
    )
    if np.dtype(dtype).kind == "f":
        profile["predictor"] = 3
    else:
        profile["predictor"] = 2
    return profile


def reflect_indices(start: int, count: int, size: int) -> np.ndarray:
    """Indices ``start .. start + count - 1`` mirrored into ``0 .. size - 1`` about the edge
    pixels (numpy's ``reflect``; repeated for windows reaching further than the raster)."""
    indices = np.arange(start, start + count)
    if size == 1:
        return np.zeros(count, dtype=np.int64)
    period = 2 * (size - 1)
    indices = np.mod(indices, period)
    return np.where(indices < size, indices, period - indices)


def read_reflect(datasets: Sequence[rasterio.io.DatasetReader], window: Window,
                 height: int, width: int) -> Iterator[np.ndarray]:
    """Read `window` from each dataset, one dataset as each array is taken (so a caller that
    copies each out holds one raw array at a time, not one per dataset); where the window
    leaves the raster, the raster is mirrored about its edge pixels, so a pixel's value does
    not depend on the window it is read in."""
    row0, col0 = int(window.row_off), int(window.col_off)
    rows, cols = int(window.height), int(window.width)
    inside = row0 >= 0 and col0 >= 0 and row0 + rows <= height and col0 + cols <= width
    if inside:
        return (read_window(ds, window) for ds in datasets)
    row_index = reflect_indices(row0, rows, height)
    col_index = reflect_indices(col0, cols, width)
    r0, c0 = int(row_index.min()), int(col_index.min())
    inner = Window(c0, r0, int(col_index.max()) - c0 + 1, int(row_index.max()) - r0 + 1)
    return (mirror(read_window(ds, inner), row_index - r0, col_index - c0)
            for ds in datasets)


def mirror(data: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """`data[:, rows][:, :, cols]`, by numpy's reflect padding where the indices are a plain
    mirror about the edges (one pass), else by indexing."""
    height, width = data.shape[1:]
    pads = []
    for index, size in ((rows, height), (cols, width)):
        before = int(np.argmax(index == 0)) if index[0] != 0 else 0
        after = index.size - before - size
        plain = (0 <= after < size and before < size
                 and np.array_equal(index, reflect_indices(-before, index.size, size)))
        if not plain:
            return data[:, rows][:, :, cols]
        pads.append((before, after))
    return np.pad(data, ((0, 0), *pads), mode="reflect") if any(map(any, pads)) else data
