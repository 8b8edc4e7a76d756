"""Figure 6: the engine's tile reader over a multi-date stack (the windows FG-UNET classifies,
with their margins, and the block cache classifying uses; float32 with nodata as NaN) against
a plain sequential rasterio read of the same files (GDAL's default cache), each timing with
freshly opened files (no decoded block cached)."""

from __future__ import annotations

import statistics
import time

import numpy as np
import rasterio
from rasterio.windows import Window

from benchmarks.config import BenchConfig
from benchmarks.scenes import SceneFiles
from lcfusion.engine.families.fgunet.commands import FGUNetClassifyConfig
from lcfusion.engine.families.fgunet.network import FGUNet
from lcfusion.engine.inference.tiles import MarginTiling, in_strips, strip_width
from lcfusion.engine.io.normalization import PercentileNormalizer
from lcfusion.engine.io.rasters import iter_windows, strip_reading
from lcfusion.engine.io.series import SeriesSpec, TimeSeries


def plain_read(scene: SceneFiles) -> int:
    """Every file read whole, one after the other; the bytes read."""
    total = 0
    for path in scene.s2:
        with rasterio.open(path) as src:
            total += src.read().nbytes
    return total


def tile_windows(series: TimeSeries, tile_size: int, margin: int) -> list[list[Window]]:
    """The windows FG-UNET's classification reads (its `MarginTiling`), by strips in its order
    (one core wide, as its tiles overlap): each core with its margins."""
    unscaled = PercentileNormalizer(np.zeros(series.n_channels), np.ones(series.n_channels))
    tiling = MarginTiling(FGUNet.size_multiple, unscaled, tile_size, margin)
    strips = in_strips(tiling.cores(series.height, series.width),
                       width=strip_width(tiling.halo))
    return [[tiling.tile_window(core, series.height, series.width) for core in strip]
            for strip in strips]


def engine_read(spec: SeriesSpec, strips: list[list[Window]]) -> None:
    """The windows read as classifying reads them (with its GDAL block cache for strips)."""
    series = TimeSeries(spec)
    with series.open() as reader, strip_reading(strips, series.height, series.width):
        for strip in strips:
            for window in strip:
                reader.read(window)


def reading_figures(scene: SceneFiles, config: BenchConfig) -> dict:
    spec = SeriesSpec(tuple(str(p) for p in scene.s2))
    series = TimeSeries(spec)
    classify = FGUNetClassifyConfig()
    windows = tile_windows(series, classify.tile_size, classify.margin)
    cores = in_strips(iter_windows(series.width, series.height, 512))
    timings: dict[str, list[float]] = {"plain": [], "engine_tiles": [], "engine_cores": []}
    plain_read(scene)
    for _ in range(max(config.repeats, 1) + 1):
        for name, read in (("plain", lambda: plain_read(scene)),
                           ("engine_tiles", lambda: engine_read(spec, windows)),
                           ("engine_cores", lambda: engine_read(spec, cores))):
            started = time.perf_counter()
            read()
            timings[name].append(time.perf_counter() - started)
    median = {name: statistics.median(values[1:]) for name, values in timings.items()}
    read_pixels = sum(int(w.width) * int(w.height) for strip in windows for w in strip)
    megabytes = sum(p.stat().st_size for p in scene.s2) / 2 ** 20
    return {
        "side": scene.side, "dates": series.n_dates, "bands_per_date": series.bands_per_date,
        "files_mb": megabytes, "tiles": sum(map(len, windows)),
        "tile_side": int(windows[0][0].width), "overlap": read_pixels / (series.width
                                                                      * series.height),
        "seconds": median,
        "ratio": median["engine_tiles"] / median["plain"],
        "ratio_without_margins": median["engine_cores"] / median["plain"],
    }
