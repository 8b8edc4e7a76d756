"""Fill areas without declared nodata: pixels that hold one value in every band (0 at the
edges of a Landsat or Sentinel-2 footprint, -9999, 65535), found on a decimated read, so the
cost and memory do not grow with the raster."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling

from ..jobs import Job
from ..progress import Reporter

#: The longest side of the decimated read a raster is checked on.
SAMPLE_SIDE = 512
#: A fill value covers at least this share of the edge pixels and of the whole sample.
MIN_EDGE_SHARE = 0.01
MIN_SHARE = 0.005
#: What the inputs of a job are called in messages.
INPUT_LABELS = {"series": "time series", "pan": "PAN", "ms": "MS", "s1": "Sentinel-1",
                "s2": "Sentinel-2"}
FILL_PARAMETER = "'Treat this value as nodata (all bands)' [FILL_VALUE]"


@dataclass(frozen=True)
class FillArea:
    """About `share` of the pixels of `path` (a date of it) hold `value` in every band."""

    path: Path
    value: float
    share: float


def decimated(dataset: rasterio.io.DatasetReader, indexes: list[int]) -> np.ndarray:
    """The bands `indexes`, read at most `SAMPLE_SIDE` pixels a side (nearest neighbour)."""
    factor = max(1, math.ceil(max(dataset.width, dataset.height) / SAMPLE_SIDE))
    shape = (len(indexes), math.ceil(dataset.height / factor),
             math.ceil(dataset.width / factor))
    return dataset.read(indexes, out_shape=shape, resampling=Resampling.nearest)


def fill_value_of(sample: np.ndarray, nodata: list[float | None]) -> tuple[float, float] | None:
    """(value, share) of a fill area in a (bands, rows, cols) sample: a value every band holds
    on some of the edge pixels, which is the sample's minimum or maximum (fill lies outside
    the data's range) and is not every band's declared nodata."""
    constant = (sample == sample[0]).all(axis=0)
    first = sample[0]
    edge = np.concatenate([first[0], first[-1], first[1:-1, 0], first[1:-1, -1]])
    edge_constant = np.concatenate([constant[0], constant[-1], constant[1:-1, 0],
                                    constant[1:-1, -1]])
    values, counts = np.unique(edge[edge_constant], return_counts=True)
    if not values.size or counts.max() < max(2, MIN_EDGE_SHARE * edge.size):
        return None
    value = values[counts.argmax()]
    if not np.isfinite(value) or all(v is not None and v == value for v in nodata):
        return None
    finite = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample
    if value not in (finite.min(), finite.max()):
        return None
    share = float(np.mean(constant & (first == value)))
    return (float(value), share) if share >= MIN_SHARE else None


def fill_areas(paths: list[Path], bands_per_date: int | None) -> Iterator[FillArea]:
    """The fill areas of each raster (each date of a stack); unreadable rasters are left to
    the checks of the family that reads them."""
    for path in paths:
        try:
            with rasterio.open(path) as dataset:
                per_date = bands_per_date if len(paths) == 1 and bands_per_date else (
                    dataset.count)
                if dataset.count % per_date:
                    continue
                for first in range(1, dataset.count + 1, per_date):
                    indexes = list(range(first, first + per_date))
                    found = fill_value_of(decimated(dataset, indexes),
                                          [dataset.nodatavals[i - 1] for i in indexes])
                    if found:
                        yield FillArea(path, *found)
        except (rasterio.errors.RasterioError, rasterio.errors.RasterioIOError):
            continue


def report_fill_areas(job: Job, reporter: Reporter) -> None:
    """Warn about fill areas the job's inputs hold without declared nodata and without a
    fill value (naming the value, its share and the parameter to set); with a fill value,
    say how much of each input it leaves out."""
    for key, entry in job.section("inputs").items():
        if not isinstance(entry, dict) or not entry.get("paths"):
            continue
        paths = [job.resolve(p) for p in ([entry["paths"]] if isinstance(entry["paths"], str)
                                          else entry["paths"])]
        areas = list(fill_areas(paths, entry.get("bands_per_date")))
        if not areas:
            continue
        label = INPUT_LABELS.get(key, key)
        fill = entry.get("fill_value")
        treated = [area for area in areas if fill is not None and area.value == float(fill)]
        untreated = [area for area in areas if area not in treated]
        if treated:
            largest = max(treated, key=lambda area: area.share)
            reporter.info(f"{label}: {largest.value:g} in every band is read as nodata (about "
                          f"{largest.share:.1%} of {largest.path.name}); these pixels are "
                          "nodata in the maps and give no training samples")
        if untreated:
            largest = max(untreated, key=lambda area: area.share)
            values = sorted({area.value for area in untreated})
            reporter.warning(
                f"{label}: about {largest.share:.1%} of the pixels of {largest.path.name} are "
                f"{' or '.join(f'{v:g}' for v in values)} in every band, a fill area without "
                "declared nodata; they are classified as land cover (and reference polygons "
                f"over them give training samples). Set {FILL_PARAMETER} to {largest.value:g}, "
                f"or declare {largest.value:g} as the rasters' nodata value")
