"""Time series of rasters: a list of single-date files, or one stack with bands per date."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.windows import Window

from .errors import LcfusionError
from .gapfill import date_positions, fill_gaps
from .rasters import (
    Grid,
    RasterInfo,
    block_cache_share,
    crs_name,
    read_info,
    read_reflect,
    same_crs,
)
from .wording import counted

_DATE_PATTERNS = (
    re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)"),
    re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)"),
    re.compile(r"(?<!\d)(\d{4})-(\d{2})(?![\d-])"),
)


def parse_date(text: str) -> str | None:
    """An ISO date (or year-month) found in a file name or band description, else None."""
    for pattern in _DATE_PATTERNS:
        match = pattern.search(text)
        if not match:
            continue
        parts = match.groups()
        year, month = int(parts[0]), int(parts[1])
        day = int(parts[2]) if len(parts) == 3 else None
        if not (1900 < year < 2200 and 1 <= month <= 12 and (day is None or 1 <= day <= 31)):
            continue
        return f"{year:04d}-{month:02d}" + (f"-{day:02d}" if day else "")
    return None


@dataclass(frozen=True)
class SeriesSpec:
    """How a time series is given in a job: files in date order, or one stack.

    `masks`: optional mask rasters (one single-band raster per date, or one stack with a band
    per date; non-zero = cloud or otherwise invalid) whose dates are treated as missing.
    `gapfill`: fill missing values by temporal interpolation (see `gapfill.fill_gaps`).
    `fill_value`: a value that marks fill (no data) where every band of a date holds it.
    """

    paths: tuple[str, ...]
    bands_per_date: int | None = None
    masks: tuple[str, ...] = ()
    gapfill: bool = False
    fill_value: float | None = None

    @classmethod
    def from_json(cls, data: dict) -> SeriesSpec:
        def paths_of(key: str) -> tuple[str, ...]:
            paths = data.get(key) or ()
            return (paths,) if isinstance(paths, str) else tuple(str(p) for p in paths)

        bands = data.get("bands_per_date")
        fill = data.get("fill_value")
        return cls(paths_of("paths"), int(bands) if bands else None, paths_of("masks"),
                   bool(data.get("gapfill", False)), None if fill is None else float(fill))

    def with_gapfill(self, gapfill: bool) -> SeriesSpec:
        return dataclasses.replace(self, gapfill=gapfill)


class TimeSeries:
    """A multi-date raster input on one grid, read by windows as float32 (nodata -> NaN).

    Channels are date-major: all bands of the first date, then the second date, and so on.
    """

    def __init__(self, spec: SeriesSpec, parameter: str = "INPUT"):
        self.parameter = parameter
        if not spec.paths:
            raise LcfusionError("no raster given; add the layers of the time series", parameter)
        self.infos: tuple[RasterInfo, ...] = tuple(read_info(p, parameter) for p in spec.paths)
        self.grid: Grid = check_same_grid(self.infos, parameter)
        first = self.infos[0]
        if len(self.infos) == 1:
            bands = spec.bands_per_date or first.count
            if first.count % bands:
                raise LcfusionError(
                    f"the stack {first.path.name} has {first.count} bands, which is not a "
                    f"multiple of the bands per date ({bands}); set BANDS_PER_DATE to the number "
                    "of bands of one date", parameter)
            self.bands_per_date = bands
            self.n_dates = first.count // bands
        else:
            counts = {info.count for info in self.infos}
            if len(counts) > 1:
                listing = ", ".join(f"{i.path.name}: {i.count}" for i in self.infos)
                raise LcfusionError(
                    f"every date must have the same bands, but the band counts differ "
                    f"({listing})", parameter)
            if spec.bands_per_date and spec.bands_per_date != first.count:
                raise LcfusionError(
                    f"BANDS_PER_DATE is {spec.bands_per_date} but each of the {len(self.infos)} "
                    f"single-date rasters has {first.count} bands; leave it at 0 for a list of "
                    "single-date rasters", parameter)
            self.bands_per_date = first.count
            self.n_dates = len(self.infos)
        self.band_names = self._band_names()
        self.dates = self._dates()
        self.gapfill = spec.gapfill
        self.fill_value = spec.fill_value
        self.mask_infos = self._masks(spec.masks)

    def _masks(self, paths: tuple[str, ...]) -> tuple[RasterInfo, ...]:
        """Mask rasters on the series' grid with one band per date."""
        if not paths:
            return ()
        parameter = f"{self.parameter}_MASK"
        infos = tuple(read_info(p, parameter) for p in paths)
        check_same_grid((self.infos[0], *infos), parameter)
        bands = sum(info.count for info in infos)
        if bands != self.n_dates or (len(infos) > 1 and any(i.count != 1 for i in infos)):
            raise LcfusionError(
                f"the mask gives {counted(bands, 'band')} in {counted(len(infos), 'raster')} "
                f"but the series has {counted(self.n_dates, 'date')}; give one single-band "
                "mask per date, or one mask stack "
                "with one band per date, in the same order", parameter)
        return infos

    @property
    def n_channels(self) -> int:
        return self.n_dates * self.bands_per_date

    @property
    def width(self) -> int:
        return self.grid.width

    @property
    def height(self) -> int:
        return self.grid.height

    def _band_names(self) -> list[str]:
        descriptions = self.infos[0].descriptions[: self.bands_per_date]
        return [d or f"band {i + 1}" for i, d in enumerate(descriptions)]

    def _dates(self) -> list[str | None]:
        if len(self.infos) > 1:
            return [parse_date(i.path.name) or parse_date("/".join(i.descriptions)) for i in
                    self.infos]
        descriptions = self.infos[0].descriptions
        return [parse_date(descriptions[d * self.bands_per_date] or "") for d in
                range(self.n_dates)]

    def describe(self) -> str:
        kind = ("one stack" if len(self.infos) == 1
                else f"{len(self.infos)} single-date rasters")
        dates = [d for d in self.dates if d]
        span = ""
        if len(dates) == self.n_dates:
            span = (f", dates {', '.join(dates)}" if len(dates) <= 24
                    else f", dates {dates[0]} .. {dates[-1]}")
        steps = "".join((", masked by " + ", ".join(i.path.name for i in self.mask_infos)
                         if self.mask_infos else "",
                         ", gaps filled by temporal interpolation" if self.gapfill else "",
                         f", {self.fill_value:g} in every band of a date read as nodata"
                         if self.fill_value is not None else ""))
        return (f"{self.n_dates} dates x {self.bands_per_date} bands ({kind}){span}{steps}; "
                f"{self.grid.describe()}")

    def order_warning(self) -> str | None:
        """A warning when every date is known and they are not in increasing order."""
        dates = self.dates
        if all(dates) and any(a > b for a, b in zip(dates, dates[1:], strict=False)):
            return ("the dates read from the names are not in increasing order "
                    f"({', '.join(d for d in dates if d)}); the layers are used in the given "
                    "order — reorder them if that is not intended")
        return None

    def to_json(self) -> dict:
        return {
            "n_dates": self.n_dates,
            "bands_per_date": self.bands_per_date,
            "band_names": self.band_names,
            "dates": self.dates,
            "masked": bool(self.mask_infos),
            "gapfill": self.gapfill,
        }

    @contextlib.contextmanager
    def open(self) -> Iterator[SeriesReader]:
        datasets = [rasterio.open(info.path) for info in self.infos]
        masks = [rasterio.open(info.path) for info in self.mask_infos]
        try:
            with block_cache_share(datasets + masks):
                yield SeriesReader(self, datasets, masks)
        finally:
            for ds in datasets + masks:
                ds.close()


class SeriesReader:
    """Open datasets of a series; `read` returns (channels, rows, cols) float32 with NaN holes
    (nodata, and every band of a masked date), or gap-filled when the series says so."""

    def __init__(self, series: TimeSeries, datasets: Sequence[rasterio.io.DatasetReader],
                 masks: Sequence[rasterio.io.DatasetReader] = ()):
        self.series = series
        self.datasets = list(datasets)
        self.masks = list(masks)
        self.positions = date_positions(series.dates)

    def read(self, window: Window) -> np.ndarray:
        """Read a window; parts outside the raster are reflect-padded."""
        series = self.series
        out = np.empty((series.n_channels, int(window.height), int(window.width)),
                       dtype=np.float32)
        direct = (window.col_off >= 0 and window.row_off >= 0
                  and window.col_off + window.width <= series.width
                  and window.row_off + window.height <= series.height)
        arrays = (None,) * len(self.datasets) if direct else read_reflect(
            self.datasets, window, series.height, series.width)
        channel = 0
        for info, dataset, data in zip(series.infos, self.datasets, arrays, strict=True):
            block = out[channel: channel + info.count]
            if data is None and np.dtype(info.dtype) in EXACT_IN_FLOAT32:
                dataset.read(window=window, out=block)
                to_nan(block, block, info.nodata, info.dtype)
            else:
                if data is None:
                    data = dataset.read(window=window)
                block[...] = data
                to_nan(block, data, info.nodata, info.dtype)
            channel += info.count
        by_date = out.reshape(series.n_dates, series.bands_per_date, *out.shape[1:])
        if self.masks:
            masked = np.concatenate(read_reflect(self.masks, window, series.height,
                                                 series.width)) != 0
            by_date[np.broadcast_to(masked[:, None], by_date.shape)] = np.nan
        if series.fill_value is not None:
            mask_fill(by_date, series.fill_value)
        if series.gapfill:
            fill_gaps(by_date, self.positions)
        return out


def mask_fill(by_date: np.ndarray, value: float) -> None:
    """Set to NaN, in place, every date of a pixel whose bands (dates, bands, rows, cols) all
    hold the fill `value` (bands already NaN count as fill)."""
    fill = ((by_date == np.float32(value)) | np.isnan(by_date)).all(axis=1)
    by_date[np.broadcast_to(fill[:, None], by_date.shape)] = np.nan


#: Raster types whose every value float32 holds exactly: GDAL converts them while reading.
#: (Not int8: GDAL before 3.7 reads it as unsigned bytes.)
EXACT_IN_FLOAT32 = tuple(np.dtype(t) for t in ("uint8", "uint16", "int16", "float32"))


def to_nan(block: np.ndarray, data: np.ndarray, nodata: Sequence[float | None],
           dtype: str) -> None:
    """Set `block` (float32 copy of `data`) to NaN where `data` is its band's nodata value or
    not finite; integer rasters are always finite, and bands sharing a nodata value are masked
    in one pass."""
    values = {v for v in nodata if v is not None and not np.isnan(v)}
    if len(values) == 1 and all(v is not None and not np.isnan(v) for v in nodata):
        np.copyto(block, np.nan, where=data == values.pop())
    else:
        for band, value in enumerate(nodata):
            if value is not None and not np.isnan(value):
                block[band][data[band] == value] = np.nan
    if np.dtype(dtype).kind == "f":
        np.copyto(block, np.nan, where=~np.isfinite(block))


def check_same_grid(infos: Sequence[RasterInfo], parameter: str) -> Grid:
    """The common grid of `infos`, or a clear error naming the first raster that differs."""
    reference = infos[0]
    for info in infos[1:]:
        if info.grid.same_as(reference.grid):
            continue
        if not same_crs(info.grid.crs_wkt, reference.grid.crs_wkt):
            raise LcfusionError(
                f"CRS mismatch: {info.path.name} is in {crs_name(info.grid.crs_wkt)} but "
                f"{reference.path.name} is in {crs_name(reference.grid.crs_wkt)}; reproject the "
                "rasters to one CRS (Raster > Projections > Warp) so they share one grid",
                parameter)
        raise LcfusionError(
            f"the rasters are not on one grid: {reference.path.name} is "
            f"{reference.grid.describe()} but {info.path.name} is {info.grid.describe()}; "
            "resample them onto one grid (same extent, pixel size and size) first", parameter)
    return reference.grid

