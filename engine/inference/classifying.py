"""Classifying a raster: a reader thread loads the next tile while this one computes, the
classifying context keeps what the next tile reads again, and the class map (+ confidence,
+ a map of per-pixel values such as TWINNS's attention) is written block by block and given
overviews, or only the tiles holding given pixels are predicted."""

from __future__ import annotations

import collections
import contextlib
import ctypes
import itertools
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import rasterio
from rasterio.windows import Window

from ..io.outputs import RasterOutput, atomic_output, checked_raster_writes
from ..io.overviews import CLASS_RESAMPLING, CONFIDENCE_RESAMPLING, MapFile, finish_maps
from ..io.rasters import Grid, block_cache_share, strip_reading, write_profile
from ..progress import Reporter
from ..reference.classes import ClassTable
from .tiles import TilePredictor, in_strips, strip_width, tiles_holding

T = TypeVar("T")
U = TypeVar("U")


def prefetched(load: Callable[[T], U], items: Iterable[T], depth: int = 1
               ) -> Iterator[tuple[T, U]]:
    """(item, load(item)) in order; a reader thread loads up to `depth` items ahead, so reading
    overlaps computing. An error of `load` is raised here, for its item."""
    items = iter(items)
    pending: collections.deque = collections.deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lcfusion-reader") as pool:
        try:
            for item in itertools.islice(items, depth):
                pending.append((item, pool.submit(load, item)))
            while pending:
                item, future = pending.popleft()
                following = next(items, _END)
                if following is not _END:
                    pending.append((following, pool.submit(load, following)))
                yield item, future.result()
        finally:
            for _, future in pending:
                future.cancel()


_END = object()


@contextlib.contextmanager
def classifying(predictor: TilePredictor, reader: Any, items: Iterable[T], height: int,
                width: int, core_of: Callable[[T], Window] = lambda item: item,
                values: bool = False, infer: Callable[[T, Any], tuple] | None = None
                ) -> Iterator[Iterator[tuple[Any, ...]]]:
    """(item, probabilities, valid mask) of each item's core (with `values`, also the
    predictor's per-pixel values: `TilePredictor.infer_values`) on a `height` x `width` grid,
    visited by vertical strips of cores (`in_strips`), row by row in each, so that what a
    strip's order of reading reuses stays decoded (`strip_reading`) whatever the size of the
    map. Where tiles overlap (a predictor with a halo), a strip is one core wide, so what
    stays decoded is the rows the next tile down reads again, not the blocks of a strip
    several tiles wide. The reader thread loads the next core while this one computes; the
    thread has stopped when the context ends, before the caller closes its rasters.
    `infer(item, tile)` replaces the predictor's own."""
    if infer is None:
        tile_infer = predictor.infer_values if values else predictor.infer

        def infer(item, tile):
            return tile_infer(tile)
    strips = in_strips(items, core_of, width=strip_width(predictor.halo))
    ordered = [item for strip in strips for item in strip]
    read = [[predictor.window(core_of(item)) for item in strip] for strip in strips]
    if predictor.mapped_buffers is not None:
        map_large_buffers(predictor.mapped_buffers)
    trim = FreedMemoryTrim()
    with strip_reading(read, height, width), contextlib.closing(
            prefetched(lambda item: predictor.load(reader, core_of(item)), ordered)) as loaded:
        yield ((item, *infer(item, tile)) for item, tile in trim.after_each(loaded))


def _glibc(function: str) -> Callable[..., int] | None:
    """A function of glibc's malloc, or None on another C library."""
    try:
        return getattr(ctypes.CDLL(None), function)
    except (OSError, AttributeError):
        return None


#: mallopt's parameter for the size from which malloc maps buffers on their own.
M_MMAP_THRESHOLD = -3


def map_large_buffers(threshold: int) -> bool:
    """From now on in this process, glibc maps buffers of at least `threshold` bytes on their
    own and unmaps them when freed (unless MALLOC_MMAP_THRESHOLD_ is set: the user's choice);
    whether it was set."""
    mallopt = _glibc("mallopt")
    if mallopt is None or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))


class FreedMemoryTrim:
    """glibc keeps the pages of freed tile buffers, scattered between live ones, so a process
    classifying many tiles grows by hundreds of MB; `malloc_trim` gives them back. Called
    between tiles, at most every `interval` seconds (each call makes the next buffers fault
    their pages in again), instead of a low mmap threshold for every family, which mapped and
    unmapped every buffer: 1 MB halved the speed of TWINNS and the Random Forest, 8 MB slowed
    the forest by a quarter (FG-UNET's predictor maps its large buffers: `mapped_buffers`)."""

    function = _glibc("malloc_trim")

    def __init__(self, interval: float = 0.25):
        self.interval, self.last = interval, time.monotonic()

    def after_each(self, items: Iterable[T]) -> Iterator[T]:
        """`items`, trimming before each is taken (the previous tile's buffers freed)."""
        for item in items:
            if self.function is not None and time.monotonic() - self.last >= self.interval:
                self.function(0)
                self.last = time.monotonic()
            yield item


@dataclass(frozen=True)
class ValueMap:
    """A float32 map of the values a predictor computes per pixel beside the class
    probabilities (`TilePredictor.infer_values`), NaN where the class map has no data: its
    output file and parameter, one description and tags per band, and the file's tags. Its
    overviews average it, as the confidence map's."""

    target: Path
    parameter: str
    descriptions: tuple[str, ...]
    band_tags: tuple[dict[str, str], ...]
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.band_tags) != len(self.descriptions):
            raise ValueError(f"{len(self.descriptions)} band descriptions but "
                             f"{len(self.band_tags)} sets of band tags")

    @property
    def bands(self) -> int:
        return len(self.descriptions)


#: The band tags of a value map that hold the band's mean and maximum over the pixels with
#: data.
MEAN_TAG, MIN_TAG, MAX_TAG = "LCFUSION_MEAN", "LCFUSION_MIN", "LCFUSION_MAX"


class BandStatistics(NamedTuple):
    """The mean, minimum and maximum of each band of a value map over the pixels with data
    (NaN where no pixel has data)."""

    means: tuple[float, ...] = ()
    minima: tuple[float, ...] = ()
    maxima: tuple[float, ...] = ()


class WrittenMaps(NamedTuple):
    """What writing the maps measured: the seconds the overviews (and COG copies) took, and
    the statistics of the value map's bands (empty without one)."""

    finish_seconds: float
    value_statistics: BandStatistics = BandStatistics()


#: The share of a classification's progress taken by the overviews and Cloud Optimized
#: GeoTIFF copies of its maps (a few seconds for a 10,980-pixel square).
FINISH_SHARE = 0.02


#: Writes a classification's maps to their temporary files (`outputs[0]` the class map,
#: `outputs[1]` the confidence if asked for; the value map's, if any, apart) and closes them,
#: reporting to the reporter; returns the value map's band statistics.
MapFiller = Callable[[list[RasterOutput], RasterOutput | None, Reporter], BandStatistics]


def write_maps(grid: Grid, class_map: Path, confidence: Path | None, fill: MapFiller,
               reporter: Reporter, cog: bool = False,
               value_map: ValueMap | None = None) -> WrittenMaps:
    """Write the class map (+ `confidence`, + `value_map`) on `grid` with `fill`, then add
    their overviews (and with `cog` make them Cloud Optimized GeoTIFFs); every file is checked
    once closed, before any replaces an existing file."""
    shape = (1, grid.height, grid.width)
    with contextlib.ExitStack() as stack:
        map_tmp = stack.enter_context(atomic_output(class_map, "OUTPUT"))
        maps = [MapFile(RasterOutput(map_tmp, class_map, "OUTPUT", shape), CLASS_RESAMPLING)]
        if confidence:
            conf_tmp = stack.enter_context(atomic_output(confidence, "OUTPUT_CONFIDENCE"))
            maps.append(MapFile(RasterOutput(conf_tmp, confidence, "OUTPUT_CONFIDENCE", shape),
                                CONFIDENCE_RESAMPLING))
        class_outputs = [each.output for each in maps]
        values = None
        if value_map is not None:
            values_tmp = stack.enter_context(atomic_output(value_map.target,
                                                           value_map.parameter))
            values = RasterOutput(values_tmp, value_map.target, value_map.parameter,
                                  (value_map.bands, grid.height, grid.width))
            maps.append(MapFile(values, CONFIDENCE_RESAMPLING))
        outputs = [each.output for each in maps]
        with checked_raster_writes(*outputs):
            statistics = fill(class_outputs, values, reporter.span(0.0, 1.0 - FINISH_SHARE))
        with checked_raster_writes(*outputs):
            return WrittenMaps(finish_maps(maps, cog, reporter.span(1.0 - FINISH_SHARE, 1.0)),
                               statistics)


def write_class_map(predictor: TilePredictor, reader: Any, grid: Grid, classes: ClassTable,
                    class_map: Path, confidence: Path | None, reporter: Reporter,
                    tags: dict[str, str] | None = None, cog: bool = False,
                    value_map: ValueMap | None = None) -> WrittenMaps:
    """Classify `grid` from `reader` into `class_map` (+ `confidence`, + `value_map`), tile by
    tile (see `write_maps`)."""
    def fill(outputs: list[RasterOutput], values: RasterOutput | None,
             span: Reporter) -> BandStatistics:
        return classify_into(predictor, reader, grid, classes, outputs, tags, span,
                             None if values is None else (values, value_map))

    return write_maps(grid, class_map, confidence, fill, reporter, cog, value_map)


def open_maps(stack: contextlib.ExitStack, grid: Grid, classes: ClassTable,
              paths: list[Path], tags: dict[str, str] | None,
              covering: Window | None = None) -> list[Any]:
    """The class map (`paths[0]`) and the confidence map (`paths[1]`, if given) opened for
    writing on `grid` in `stack`, described, with GDAL's block cache shared between them
    (`covering`: the window of the grid classified that `grid` is, if not all of it)."""
    dtype, nodata = classes.map_dtype(), classes.map_nodata()
    opened = [stack.enter_context(rasterio.open(paths[0], "w",
                                                **write_profile(grid, 1, dtype, nodata)))]
    if len(paths) > 1:
        opened.append(stack.enter_context(rasterio.open(
            paths[1], "w", **write_profile(grid, 1, "float32", float("nan")))))
    describe_outputs(opened[0], opened[1] if len(opened) > 1 else None, classes, tags)
    stack.enter_context(block_cache_share(opened, covering))
    return opened


def map_values(probs: np.ndarray, valid: np.ndarray, classes: ClassTable
               ) -> tuple[np.ndarray, np.ndarray]:
    """The class codes (nodata where `valid` is false) and the confidence (the largest
    probability; NaN there) of a core's probabilities (classes, h, w)."""
    codes = np.asarray(classes.codes, dtype=np.int64)
    labels = codes[probs.argmax(axis=0)].astype(classes.map_dtype())
    labels[~valid] = classes.map_nodata()
    conf = probs.max(axis=0).astype(np.float32)
    conf[~valid] = np.nan
    return labels, conf


def classify_into(predictor: TilePredictor, reader: Any, grid: Grid, classes: ClassTable,
                  outputs: list[RasterOutput], tags: dict[str, str] | None,
                  reporter: Reporter,
                  values: tuple[RasterOutput, ValueMap] | None = None) -> BandStatistics:
    """Write the class map (`outputs[0]`), the confidence map (`outputs[1]`, if given) and the
    value map (`values`, if given) to their temporary files, tile by tile; the files are
    closed on return. Returns the statistics of the value map's bands (also written as their
    tags)."""
    cores = list(predictor.cores(grid.height, grid.width))
    with contextlib.ExitStack() as stack:
        value_writer = None
        if values is not None:
            out_values = stack.enter_context(rasterio.open(
                values[0].temporary, "w",
                **write_profile(grid, values[1].bands, "float32", float("nan"))))
            value_writer = ValueMapWriter(out_values, values[1])
            stack.enter_context(block_cache_share([out_values]))
        opened = [WholeBlockColumns(dataset) for dataset in
                  open_maps(stack, grid, classes, [each.temporary for each in outputs], tags)]
        inferred = stack.enter_context(classifying(predictor, reader, cores, grid.height,
                                                   grid.width, values=value_writer is not None))
        for done, (core, probs, valid, *per_pixel) in enumerate(inferred, start=1):
            for band, data in zip(opened, map_values(probs, valid, classes), strict=False):
                band.write(data[np.newaxis], core)
            if value_writer is not None:
                value_writer.write(per_pixel[0], valid, core)
            reporter.progress(done / len(cores), "classifying")
        for band in opened:
            band.finish()
        return value_writer.finish() if value_writer else BandStatistics()


class WholeBlockColumns:
    """Writes windows to a dataset so that each of its blocks is written by one window: the
    part of a window that ends inside a column of blocks is held until the window that
    continues it (the same rows, starting where it ends) comes, and is written with it.
    Classifying by strips otherwise writes a block straddling two strips half by each: GDAL
    flushes the half-written block, and the whole one written later leaves the first copy as
    dead space in the GeoTIFF. What is held is less than a block wide, a strip's height."""

    def __init__(self, dataset: Any):
        self.dataset = dataset
        self.block_width = dataset.block_shapes[0][1]
        self.held: dict[tuple[int, int, int], tuple[int, np.ndarray]] = {}

    def write(self, data: np.ndarray, window: Window) -> None:
        """`data` (bands, rows, cols) of `window`."""
        row, col, height = int(window.row_off), int(window.col_off), int(window.height)
        held = self.held.pop((row, height, col), None)
        if held is not None:
            col, before = held
            data = np.concatenate([before, data], axis=2)
        end = col + data.shape[2]
        if end < self.dataset.width and end % self.block_width:
            cut = max(col, end - end % self.block_width)
            self.held[(row, height, end)] = (cut, data[:, :, cut - col:].copy())
            data = data[:, :, :cut - col]
        self._write(data, row, col)

    def finish(self) -> None:
        """Write what is still held (nothing, when every window was continued)."""
        for (row, _, _), (col, data) in sorted(self.held.items()):
            self._write(data, row, col)
        self.held.clear()

    def _write(self, data: np.ndarray, row: int, col: int) -> None:
        if data.shape[2]:
            self.dataset.write(data, window=Window(col, row, data.shape[2], data.shape[1]))


class ValueMapWriter:
    """Writes a value map's tiles to its open dataset (descriptions and tags first; each block
    whole, `WholeBlockColumns`) and gathers each band's mean, minimum and maximum over the
    pixels with data, written as band tags by `finish`."""

    def __init__(self, dataset: Any, value_map: ValueMap):
        self.dataset, self.writer = dataset, WholeBlockColumns(dataset)
        dataset.update_tags(**value_map.tags)
        for band, (description, band_tags) in enumerate(
                zip(value_map.descriptions, value_map.band_tags, strict=True), start=1):
            dataset.set_band_description(band, description)
            dataset.update_tags(band, **band_tags)
        self.sums = np.zeros(value_map.bands, dtype=np.float64)
        self.minima = np.full(value_map.bands, np.nan)
        self.maxima = np.full(value_map.bands, np.nan)
        self.pixels = 0

    def write(self, values: np.ndarray, valid: np.ndarray, core: Window) -> None:
        """The values (bands, h, w) of `core`, NaN where `valid` is false."""
        values = values.astype(np.float32)
        values[:, ~valid] = np.nan
        self.writer.write(values, core)
        if valid.any():
            self.sums += values[:, valid].sum(axis=1, dtype=np.float64)
            self.minima = np.fmin(self.minima, values[:, valid].min(axis=1))
            self.maxima = np.fmax(self.maxima, values[:, valid].max(axis=1))
            self.pixels += int(valid.sum())

    def finish(self) -> BandStatistics:
        """The bands' statistics, also written as their tags (the tiles all written)."""
        self.writer.finish()
        means = self.sums / self.pixels if self.pixels else np.full_like(self.sums, np.nan)
        statistics = BandStatistics(*(tuple(float(m) for m in values)
                                      for values in (means, self.minima, self.maxima)))
        for band, (mean, minimum, maximum) in enumerate(zip(*statistics, strict=True),
                                                        start=1):
            self.dataset.update_tags(band, **{MEAN_TAG: f"{mean:.6g}", MIN_TAG: f"{minimum:.6g}",
                                              MAX_TAG: f"{maximum:.6g}"})
        return statistics


def describe_outputs(out_map: Any, out_conf: Any | None, classes: ClassTable,
                     tags: dict[str, str] | None) -> None:
    """The class map's colour table, class table and band names (+ the confidence's), set
    before any block is written: libtiff cannot change the photometric interpretation a
    colour table implies once GDAL has flushed a block (on a scene larger than its cache)."""
    out_map.write_colormap(1, {c.code: (*c.rgb(), 255) for c in classes})
    out_map.update_tags(LCFUSION_CLASSES=json.dumps(classes.to_json()), **(tags or {}))
    out_map.set_band_description(1, "class")
    if out_conf is not None:
        out_conf.set_band_description(1, "confidence (maximum class probability)")


def labels_of(probabilities: np.ndarray) -> np.ndarray:
    """The class ranked first at each pixel of (classes, pixels) `probabilities`, -1 at the
    pixels without data (NaN)."""
    if probabilities.shape[0] == 0:  # no pixel asked for
        return np.full(probabilities.shape[1], -1, dtype=np.int64)
    known = np.isfinite(probabilities).all(axis=0)
    return np.where(known, np.nan_to_num(probabilities).argmax(axis=0), -1)


def pixels_by_tile(predictor: TilePredictor, reader: Any, grid: Grid, rows: np.ndarray,
                   cols: np.ndarray, reporter: Reporter
                   ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """For each tile that holds some of the given pixels, in turn: their indices in `rows`,
    their class probabilities (classes, members) and whether each has data. Only those tiles
    run (a predictor with `infer_pixels`, such as TWINNS's patch classifier, computes only
    those pixels of each tile)."""
    selected = [(core, members, rows[members] - int(core.row_off),
                 cols[members] - int(core.col_off))
                for core, members in tiles_holding(predictor.cores(grid.height, grid.width),
                                                   rows, cols)]
    at_pixels = getattr(predictor, "infer_pixels", None)
    if at_pixels is None:  # every pixel of the tile, then those asked for
        def at_pixels(tile, local_r, local_c):
            probs, valid = predictor.infer(tile)
            return probs[:, local_r, local_c], valid[local_r, local_c]
    with classifying(predictor, reader, selected, grid.height, grid.width,
                     core_of=lambda item: item[0],
                     infer=lambda item, tile: at_pixels(tile, item[2], item[3])) as inferred:
        for done, ((_, members, _, _), probs, valid) in enumerate(inferred, start=1):
            yield members, probs, valid & np.isfinite(probs).all(axis=0)
            reporter.progress(done / len(selected), "evaluating")


def pixel_probabilities(predictor: TilePredictor, reader: Any, grid: Grid, rows: np.ndarray,
                        cols: np.ndarray, reporter: Reporter) -> np.ndarray:
    """Class probabilities (classes, pixels) at the given pixels, NaN at pixels without data."""
    found: np.ndarray | None = None
    for members, probs, valid in pixels_by_tile(predictor, reader, grid, rows, cols, reporter):
        if found is None:
            found = np.full((probs.shape[0], rows.size), np.nan, dtype=np.float32)
        found[:, members] = np.where(valid, probs, np.nan)
    return found if found is not None else np.full((0, rows.size), np.nan, dtype=np.float32)


def predict_pixels(predictor: TilePredictor, reader: Any, grid: Grid, rows: np.ndarray,
                   cols: np.ndarray, reporter: Reporter) -> np.ndarray:
    """The class ranked first at the given pixels, -1 at pixels without data: as `labels_of`
    of `pixel_probabilities`, without holding every pixel's probabilities at once."""
    labels = np.full(rows.size, -1, dtype=np.int64)
    for members, probs, valid in pixels_by_tile(predictor, reader, grid, rows, cols, reporter):
        labels[members] = labels_of(np.where(valid, probs, np.nan))
    return labels
