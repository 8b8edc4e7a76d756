"""Classifying a raster: a reader thread loads the next tile while this one computes, the
classifying context sizes GDAL's cache for it, and the class map (+ confidence) is written
block by block and given overviews, or only the tiles holding given pixels are predicted."""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import rasterio
from rasterio.windows import Window

from ..io.outputs import RasterOutput, atomic_output, checked_raster_writes
from ..io.overviews import CLASS_RESAMPLING, CONFIDENCE_RESAMPLING, MapFile, finish_maps
from ..io.rasters import Grid, block_cache_share, rows_block_cache, write_profile
from ..progress import Reporter
from ..reference.classes import ClassTable
from .tiles import TilePredictor, tiles_holding

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
def classifying(predictor: TilePredictor, reader: Any, items: Iterable[T],
                core_of: Callable[[T], Window] = lambda item: item
                ) -> Iterator[Iterator[tuple[T, np.ndarray, np.ndarray]]]:
    """(item, probabilities, valid mask) of each item's core, in order: the reader thread loads
    the next core while this one computes, with GDAL's block cache sized for classifying; the
    thread has stopped when the context ends, before the caller closes its rasters."""
    with rows_block_cache(), contextlib.closing(
            prefetched(lambda item: predictor.load(reader, core_of(item)), items)) as loaded:
        yield ((item, *predictor.infer(tile)) for item, tile in loaded)


#: The share of a classification's progress taken by the overviews and Cloud Optimized
#: GeoTIFF copies of its maps (a few seconds for a 10,980-pixel square).
FINISH_SHARE = 0.02


#: Writes a classification's maps to their temporary files (`outputs[0]` the class map,
#: `outputs[1]` the confidence if asked for) and closes them, reporting to the reporter.
MapFiller = Callable[[list[RasterOutput], Reporter], None]


def write_maps(grid: Grid, class_map: Path, confidence: Path | None, fill: MapFiller,
               reporter: Reporter, cog: bool = False) -> float:
    """Write the class map (+ `confidence`) on `grid` with `fill`, then add their overviews
    (and with `cog` make them Cloud Optimized GeoTIFFs); both files are checked once closed,
    before either replaces an existing file. Returns the seconds the overviews (and copies)
    took."""
    shape = (1, grid.height, grid.width)
    with contextlib.ExitStack() as stack:
        map_tmp = stack.enter_context(atomic_output(class_map, "OUTPUT"))
        maps = [MapFile(RasterOutput(map_tmp, class_map, "OUTPUT", shape), CLASS_RESAMPLING)]
        if confidence:
            conf_tmp = stack.enter_context(atomic_output(confidence, "OUTPUT_CONFIDENCE"))
            maps.append(MapFile(RasterOutput(conf_tmp, confidence, "OUTPUT_CONFIDENCE", shape),
                                CONFIDENCE_RESAMPLING))
        outputs = [each.output for each in maps]
        with checked_raster_writes(*outputs):
            fill(outputs, reporter.span(0.0, 1.0 - FINISH_SHARE))
        with checked_raster_writes(*outputs):
            return finish_maps(maps, cog, reporter.span(1.0 - FINISH_SHARE, 1.0))


def write_class_map(predictor: TilePredictor, reader: Any, grid: Grid, classes: ClassTable,
                    class_map: Path, confidence: Path | None, reporter: Reporter,
                    tags: dict[str, str] | None = None, cog: bool = False) -> float:
    """Classify `grid` from `reader` into `class_map` (+ `confidence`), tile by tile (see
    `write_maps`). Returns the seconds the overviews (and copies) took."""
    def fill(outputs: list[RasterOutput], span: Reporter) -> None:
        classify_into(predictor, reader, grid, classes, outputs, tags, span)

    return write_maps(grid, class_map, confidence, fill, reporter, cog)


def open_maps(stack: contextlib.ExitStack, grid: Grid, classes: ClassTable,
              paths: list[Path], tags: dict[str, str] | None) -> list[Any]:
    """The class map (`paths[0]`) and the confidence map (`paths[1]`, if given) opened for
    writing on `grid` in `stack`, described, with GDAL's block cache shared between them."""
    dtype, nodata = classes.map_dtype(), classes.map_nodata()
    opened = [stack.enter_context(rasterio.open(paths[0], "w",
                                                **write_profile(grid, 1, dtype, nodata)))]
    if len(paths) > 1:
        opened.append(stack.enter_context(rasterio.open(
            paths[1], "w", **write_profile(grid, 1, "float32", float("nan")))))
    describe_outputs(opened[0], opened[1] if len(opened) > 1 else None, classes, tags)
    stack.enter_context(block_cache_share(opened))
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
                  reporter: Reporter) -> None:
    """Write the class map (`outputs[0]`) and the confidence map (`outputs[1]`, if given) to
    their temporary files, tile by tile; the files are closed on return."""
    cores = list(predictor.cores(grid.height, grid.width))
    with contextlib.ExitStack() as stack:
        opened = open_maps(stack, grid, classes, [each.temporary for each in outputs], tags)
        inferred = stack.enter_context(classifying(predictor, reader, cores))
        for done, (core, probs, valid) in enumerate(inferred, start=1):
            for band, values in zip(opened, map_values(probs, valid, classes), strict=False):
                band.write(values, 1, window=core)
            reporter.progress(done / len(cores), "classifying")


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


def predict_pixels(predictor: TilePredictor, reader: Any, grid: Grid, rows: np.ndarray,
                   cols: np.ndarray, reporter: Reporter) -> np.ndarray:
    """Predicted class indices at the given pixels, running only tiles that contain some;
    -1 at pixels without data (nodata in the class map)."""
    predicted = np.full(rows.size, -1, dtype=np.int64)
    selected = tiles_holding(predictor.cores(grid.height, grid.width), rows, cols)
    with classifying(predictor, reader, selected, core_of=lambda item: item[0]) as inferred:
        for done, ((core, members), probs, valid) in enumerate(inferred, start=1):
            local_r = rows[members] - int(core.row_off)
            local_c = cols[members] - int(core.col_off)
            predicted[members] = np.where(valid[local_r, local_c],
                                          probs[:, local_r, local_c].argmax(axis=0), -1)
            reporter.progress(done / len(selected), "evaluating")
    return predicted
