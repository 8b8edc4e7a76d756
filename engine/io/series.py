"""Time series of rasters: a list of single-date files, or one stack with bands per date."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import rasterio
from rasterio.windows import Window

from ..errors import LcfusionError
from ..progress import Reporter
from ..wording import counted
from .gapfill import date_positions, day_number, fill_gaps
from .rasters import (
    Grid,
    RasterInfo,
    block_cache_share,
    crs_name,
    read_info,
    read_reflect,
    read_window,
    same_crs,
)

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


#: The largest distance in the season, in days, between a date and the model's date it stands
#: for when the dates are not the model's (another year): about two months.
MAX_SEASON_SHIFT = 62


def season_shift(first: str, second: str) -> int:
    """Days between two dates' places in the year, whatever their years (0 to 183)."""
    days = abs(date.fromordinal(day_number(first)).timetuple().tm_yday
               - date.fromordinal(day_number(second)).timetuple().tm_yday)
    return min(days, 366 - days)


def chronological(dates: Sequence[str]) -> list[int]:
    """Indices of `dates` from the earliest to the latest."""
    return sorted(range(len(dates)), key=lambda i: day_number(dates[i]))


@dataclass(frozen=True)
class SeriesSpec:
    """How a time series is given in a job: files in date order, or one stack.

    `masks`: optional mask rasters (one single-band raster per date, or one stack with a band
    per date; non-zero = cloud or otherwise invalid) whose dates are treated as missing.
    `gapfill`: fill missing values by temporal interpolation (see `gapfill.fill_gaps`).
    `fill_value`: a value that marks fill (no data) where every band of a date holds it.
    `names`: the layer names the user sees, one per path (a date in them dates the layer).
    """

    paths: tuple[str, ...]
    bands_per_date: int | None = None
    masks: tuple[str, ...] = ()
    gapfill: bool = False
    fill_value: float | None = None
    names: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: dict) -> SeriesSpec:
        def paths_of(key: str) -> tuple[str, ...]:
            paths = data.get(key) or ()
            return (paths,) if isinstance(paths, str) else tuple(str(p) for p in paths)

        bands = data.get("bands_per_date")
        fill = data.get("fill_value")
        return cls(paths_of("paths"), int(bands) if bands else None, paths_of("masks"),
                   bool(data.get("gapfill", False)), None if fill is None else float(fill),
                   paths_of("names"))

    def with_gapfill(self, gapfill: bool) -> SeriesSpec:
        return dataclasses.replace(self, gapfill=gapfill)


class TimeSeries:
    """A multi-date raster input on one grid, read by windows as float32 (nodata -> NaN).

    Channels are date-major: all bands of the first date, then the second date, and so on.
    The dates are used in `order` (indices into the given dates, `given_dates`): the given
    order until `sort_by_date` or `match_dates` sets it; masks move with their dates.
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
        self.given_dates = self._dates(spec.names)
        self.order = tuple(range(self.n_dates))
        self.gapfill = spec.gapfill
        self.fill_value = spec.fill_value
        self.mask_infos = self._masks(spec.masks)
        self.mask_order = self._mask_order()

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

    def _dates(self, names: Sequence[str]) -> list[str | None]:
        """The date of each date as given: from the file name, the layer name or the band
        descriptions of each raster, or from the first band's description of each date of a
        stack."""
        if len(self.infos) > 1 or self.n_dates == 1:
            names = list(names)[: len(self.infos)] + [""] * (len(self.infos) - len(names))
            return [parse_date(i.path.name) or parse_date(name)
                    or parse_date("/".join(d or "" for d in i.descriptions))
                    for i, name in zip(self.infos, names, strict=True)]
        descriptions = self.infos[0].descriptions
        return [parse_date(descriptions[d * self.bands_per_date] or "") for d in
                range(self.n_dates)]

    @property
    def dates(self) -> list[str | None]:
        """The dates in the order they are used."""
        return [self.given_dates[i] for i in self.order]

    def _given_names(self) -> list[str]:
        """How each given date is named in messages: its file, or its bands in a stack."""
        if len(self.infos) > 1 or self.n_dates == 1:
            return [info.path.name for info in self.infos]
        bands = self.bands_per_date
        return [f"bands {d * bands + 1}-{d * bands + bands}" if bands > 1 else f"band {d + 1}"
                for d in range(self.n_dates)]

    def _mask_dates(self) -> list[str | None]:
        """The date of each mask band, from its raster's name or the band's description."""
        dates: list[str | None] = []
        for info in self.mask_infos:
            if info.count == 1:
                dates.append(parse_date(info.path.name) or parse_date(info.descriptions[0] or ""))
            else:
                dates.extend(parse_date(d or "") for d in info.descriptions)
        return dates

    def _mask_order(self) -> tuple[int, ...]:
        """The mask band of each given date: matched by date when both the masks and the
        layers carry dates, else in the given order."""
        in_order = tuple(range(self.n_dates))
        mask_dates = self._mask_dates() if self.mask_infos else []
        if not mask_dates or not all(mask_dates) or not all(self.given_dates):
            return in_order
        # A month (YYYY-MM) on either side: compare months.
        length = min(len(str(d)) for d in [*mask_dates, *self.given_dates])
        given = [str(d)[:length] for d in self.given_dates]
        mask_dates = [str(d)[:length] for d in mask_dates]
        if mask_dates == given or len(set(given)) < len(given):
            return in_order
        if sorted(mask_dates) != sorted(given):
            raise LcfusionError(
                f"the masks' dates ({', '.join(mask_dates)}) are not the dates of the layers "
                f"({', '.join(given)}); give one mask per date of the layers",
                f"{self.parameter}_MASK")
        return tuple(mask_dates.index(d) for d in given)

    def _dates_checked(self, reporter: Reporter, trained: Sequence[str | None] = ()) -> bool:
        """Whether every given date is known (else say that the order could not be checked,
        unless there is one date and so no order); a date given twice is refused."""
        given, names = self.given_dates, self._given_names()
        if not all(given) and self.n_dates == 1:
            return False
        if not all(given):
            undated = [n for n, d in zip(names, given, strict=True) if not d]
            expected = (f" (the model's dates: {', '.join(map(str, trained))})"
                        if trained and all(trained) else "")
            reporter.warning(
                f"[{self.parameter}] no date in the layer names or band descriptions of "
                f"{', '.join(undated[:4])}{' ...' if len(undated) > 4 else ''}; the layers are "
                f"used in the given order, which could not be checked{expected}")
            return False
        seen: dict[str, str] = {}
        for name, day in zip(names, given, strict=True):
            if day in seen:
                raise LcfusionError(
                    f"the date {day} is given twice ({seen[day]} and {name}); give each date "
                    "once", self.parameter)
            seen[str(day)] = name
        return True

    def _use_order(self, order: Sequence[int], reporter: Reporter) -> None:
        """Use the dates in `order`, and say so when it is not the given order."""
        self.order = tuple(order)
        if self.order == tuple(range(self.n_dates)):
            return
        dates = [str(d) for d in self.dates]
        how = ("date order" if chronological(dates) == list(range(self.n_dates))
               else "the order of the model's dates")
        reporter.info(f"[{self.parameter}] the layers are not in date order; they are used in "
                      f"{how}: {', '.join(dates)}")

    def sort_by_date(self, reporter: Reporter) -> None:
        """For training: use the dates from the earliest to the latest (said when that is
        not the given order); a date given twice is refused."""
        if self._dates_checked(reporter):
            self._use_order(chronological(self.given_dates), reporter)

    def warn_unmasked(self, trained: dict, reporter: Reporter) -> None:
        """Warn when the model was trained with cloud masks (`trained`: its record of the
        series) but none are given: clouds then count as values."""
        if trained.get("masked") and not self.mask_infos:
            reporter.warning(f"[{self.parameter}_MASK] the model was trained with a cloud mask "
                             "but none is given; masked dates are read as they are: give the "
                             "masks of these dates to classify as in training")

    def match_dates(self, trained: Sequence[str | None], reporter: Reporter) -> None:
        """For classification: use the given dates in the order of the model's `trained`
        dates. The same dates are matched exactly; other dates (another year) by their order
        in the season, with a warning, unless one lies more than `MAX_SEASON_SHIFT` days
        from its model date in the season, which is refused."""
        if not self._dates_checked(reporter, trained):
            return
        given = [str(d) for d in self.given_dates]
        if not trained or not all(trained):
            self._use_order(chronological(given), reporter)
            reporter.warning(f"[{self.parameter}] the model records no dates, so the dates "
                             "could not be matched to those of training; they are used from the "
                             "earliest to the latest")
            return
        model_dates = [str(d) for d in trained]
        if sorted(given) == sorted(model_dates):
            self._use_order([given.index(d) for d in model_dates], reporter)
            return
        order = [0] * self.n_dates
        for position, index in zip(chronological(model_dates), chronological(given),
                                   strict=True):
            order[position] = index
        self._use_order(order, reporter)
        used = [str(d) for d in self.dates]
        shifts = [season_shift(a, b) for a, b in zip(used, model_dates, strict=True)]
        worst = max(range(self.n_dates), key=shifts.__getitem__)
        listing = f"the dates {', '.join(used)}; the model's {', '.join(model_dates)}"
        if shifts[worst] > MAX_SEASON_SHIFT:
            raise LcfusionError(
                f"the dates cannot be matched to the model's dates ({listing}): "
                f"{used[worst]} would stand for {model_dates[worst]}, {shifts[worst]} days "
                f"away in the season (at most {MAX_SEASON_SHIFT}); give the dates the model "
                "was trained on, or dates of the same season in another year", self.parameter)
        reporter.warning(
            f"[{self.parameter}] the dates are not the model's; they are matched to the model's "
            f"dates by their order in the season (at most {max(shifts)} days apart): {listing}")

    def match_model(self, expected: dict, reporter: Reporter, source: str = "") -> None:
        """For classification: the layers must give the dates and bands of the model's record
        of this series (`expected`; `source`, such as "Sentinel-2", names its dates in the
        error); their dates are then put in the model's order (`match_dates`)."""
        dates, bands = int(expected["n_dates"]), int(expected["bands_per_date"])
        if (self.n_dates, self.bands_per_date) != (dates, bands):
            model_dates = counted(dates, f"{source} date" if source else "date")
            raise LcfusionError(
                f"the model expects {model_dates} x {counted(bands, 'band')} "
                f"({counted(dates * bands, 'channel')}) but the layers give "
                f"{counted(self.n_dates, 'date')} x {counted(self.bands_per_date, 'band')} "
                f"({counted(self.n_channels, 'channel')}); give the same dates and bands, in "
                "the same order, as for training", self.parameter)
        self.match_dates(expected.get("dates") or [], reporter)

    def channel_label(self, channel: int) -> str:
        """How messages name a channel: its band and date ("B04 of 2021-06-01")."""
        return date_channel_label(self.band_names, self.dates, channel)

    def describe(self) -> str:
        kind = ("one stack" if len(self.infos) == 1
                else f"{len(self.infos)} single-date rasters")
        dates = [d for d in self.dates if d]
        span = ""
        if len(dates) == self.n_dates:
            span = (f", dates {', '.join(dates)}" if len(dates) <= 24
                    else f", dates {dates[0]} .. {dates[-1]}")
        matched = (" (matched by date)" if self.mask_order != tuple(range(self.n_dates))
                   else "")
        steps = "".join((", masked by " + ", ".join(self._mask_names()) + matched
                         if self.mask_infos else "",
                         ", gaps filled by temporal interpolation"
                         if self.gapfill and self.n_dates > 1 else "",
                         f", {self.fill_value:g} in every band of a date read as nodata"
                         if self.fill_value is not None else ""))
        return (f"{counted(self.n_dates, 'date')} x {self.bands_per_date} bands ({kind}){span}"
                f"{steps}; "
                f"{self.grid.describe()}")

    def _mask_names(self) -> list[str]:
        """The mask rasters in the order their dates are used (one per date), else as given."""
        if len(self.mask_infos) != self.n_dates or any(i.count != 1 for i in self.mask_infos):
            return [info.path.name for info in self.mask_infos]
        return [self.mask_infos[self.mask_order[i]].path.name for i in self.order]

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
                read_window(dataset, window, block)
                to_nan(block, block, info.nodata, info.dtype)
            else:
                if data is None:
                    data = read_window(dataset, window)
                block[...] = data
                to_nan(block, data, info.nodata, info.dtype)
            channel += info.count
        by_date = out.reshape(series.n_dates, series.bands_per_date, *out.shape[1:])
        if self.masks:
            masked = np.concatenate(list(read_reflect(
                self.masks, window, series.height, series.width)))[list(series.mask_order)] != 0
            by_date[np.broadcast_to(masked[:, None], by_date.shape)] = np.nan
        if series.fill_value is not None:
            mask_fill(by_date, series.fill_value)
        if series.order != tuple(range(series.n_dates)):
            by_date[...] = by_date[list(series.order)]
        if series.gapfill:
            fill_gaps(by_date, self.positions)
        return out


def date_channel_label(names: Sequence[str], dates: Sequence[str | None], channel: int) -> str:
    """The band (of `names`, per date) and date of a date-major channel."""
    date = channel // len(names)
    return f"{names[channel % len(names)]} of {dates[date] or f'date {date + 1}'}"


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

