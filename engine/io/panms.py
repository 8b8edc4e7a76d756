"""A PAN + MS pair: grid checks, windowed reading and normalisation (MRFusion's patch pairs and
dense prediction are in `families.mrfusion.patches`).

Patch convention (d even): the PAN patch of pixel (i, j) spans rows i - d/2 .. i + d/2 - 1 and
the same columns, so the pixel sits just below and right of the patch centre. Its MS patch is
the d/r x d/r block of MS pixels whose ground is the PAN patch's ground: it starts at the MS
pixel edge nearest to the PAN patch's edge, so the two coincide exactly when that edge lies on
an MS pixel edge and are offset by at most half an MS pixel otherwise; nothing is resampled.
Outside the rasters, both images are mirrored about their edge pixels.

With ``align_ms`` (see `alignment.plan_ms_alignment`) an MS off the PAN grid is resampled onto
it and an overhanging PAN cropped, through GDAL virtual rasters (VRT files read window by
window, so nothing is held in memory) in a temporary folder that lives as long as the pair.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import LcfusionError
from .alignment import ALIGN_METHODS, PanMsAlignment, align_pan_ms, plan_ms_alignment
from .inputscale import check_input_scale
from .normalization import PercentileNormalizer
from .rasters import Grid, crs_name, same_crs
from .series import SeriesReader, SeriesSpec, TimeSeries


def _gdal_error(exc: RuntimeError, what: str) -> LcfusionError:
    return LcfusionError(f"GDAL could not {what}: {exc}", "MS")


def crop_vrt(path: Path, window: tuple[int, int, int, int], target: Path) -> Path:
    """A VRT of the (column, row, width, height) window of a raster."""
    from osgeo import gdal

    gdal.UseExceptions()
    try:
        gdal.Translate(str(target), str(path), format="VRT", srcWin=list(window))
    except RuntimeError as exc:
        raise _gdal_error(exc, f"crop the PAN {path.name}") from exc
    return target


def warp_vrt(path: Path, transform: tuple, size: tuple[int, int], method: str,
             target: Path) -> Path:
    """A warped VRT of a raster on the north-up grid (`transform`, `size`) of its own CRS,
    resampled with GDAL's `method`; band descriptions are kept."""
    from osgeo import gdal

    x0, dx, _, y0, _, dy = transform
    bounds = (x0, y0 + dy * size[1], x0 + dx * size[0], y0)
    gdal.UseExceptions()
    try:
        warped = gdal.Warp(str(target), str(path), format="VRT", outputBounds=bounds,
                           width=size[0], height=size[1], resampleAlg=method)
        source = gdal.Open(str(path))
        for band in range(1, warped.RasterCount + 1):
            warped.GetRasterBand(band).SetDescription(source.GetRasterBand(band).GetDescription())
        warped = source = None
    except RuntimeError as exc:
        raise _gdal_error(exc, f"resample the MS {path.name}") from exc
    return target


class PanMsPair:
    """A single-band PAN raster and an MS raster whose grid is a whole multiple of the PAN's.

    `align_ms` (one of `ALIGN_METHODS`): ``none`` refuses an MS off the PAN grid; otherwise
    the MS is resampled onto it with that method and an overhanging PAN cropped."""

    def __init__(self, pan: SeriesSpec, ms: SeriesSpec, align_ms: str = "none"):
        if align_ms not in ALIGN_METHODS:
            raise LcfusionError(f"unknown MS alignment {align_ms!r}; use one of "
                                f"{', '.join(ALIGN_METHODS)}", "ALIGN_MS")
        for spec, name, what in ((pan, "PAN", "panchromatic"), (ms, "MS", "multispectral")):
            if len(spec.paths) != 1:
                raise LcfusionError(f"give exactly one {what} raster (got {len(spec.paths)})",
                                    name)
        self.pan = TimeSeries(pan, "PAN")
        self.ms = TimeSeries(ms, "MS")
        if self.pan.n_channels != 1:
            raise LcfusionError(
                f"the PAN raster {self.pan.infos[0].path.name} has {self.pan.n_channels} bands; "
                "give a single-band panchromatic image (Raster > Extraction or a band of a "
                "virtual raster)", "PAN")
        if not same_crs(self.pan.grid.crs_wkt, self.ms.grid.crs_wkt):
            raise LcfusionError(
                f"CRS mismatch: the PAN is in {crs_name(self.pan.grid.crs_wkt)} but the MS is in "
                f"{crs_name(self.ms.grid.crs_wkt)}; warp the MS into the PAN's CRS with a pixel "
                "size that is a whole multiple of the PAN's, aligned with the PAN grid", "MS")
        self.align_ms = align_ms
        changes = self._align(pan, ms) if align_ms != "none" else ()
        alignment = align_pan_ms(self.pan.grid.transform, (self.pan.width, self.pan.height),
                                 self.ms.grid.transform, (self.ms.width, self.ms.height))
        self.alignment: PanMsAlignment = replace(alignment, notes=changes + alignment.notes)

    def _align(self, pan: SeriesSpec, ms: SeriesSpec) -> tuple[str, ...]:
        """Resample the MS onto the PAN grid and crop the PAN as `plan_ms_alignment` plans,
        into VRTs that replace `self.pan` and `self.ms`; what was done, for the log."""
        plan = plan_ms_alignment(self.pan.grid.transform, (self.pan.width, self.pan.height),
                                 self.ms.grid.transform, (self.ms.width, self.ms.height),
                                 self.align_ms)
        if not plan.notes:
            return ()
        folder = Path(tempfile.mkdtemp(prefix="lcfusion-align-"))
        weakref.finalize(self, shutil.rmtree, folder, True)
        if plan.crops_pan:
            source = self.pan.infos[0].path
            path = crop_vrt(source, plan.pan_window, folder / f"{source.stem}-cropped.vrt")
            self.pan = TimeSeries(replace(pan, paths=(str(path),)), "PAN")
        if plan.ms_transform is not None:
            source = self.ms.infos[0].path
            path = warp_vrt(source, plan.ms_transform, plan.ms_size, self.align_ms,
                            folder / f"{source.stem}-aligned.vrt")
            self.ms = TimeSeries(replace(ms, paths=(str(path),)), "MS")
        return plan.notes

    @property
    def grid(self) -> Grid:
        """The PAN grid: the grid of the labels and of the class map."""
        return self.pan.grid

    @property
    def ratio(self) -> int:
        return self.alignment.ratio

    @property
    def ms_bands(self) -> int:
        return self.ms.n_channels

    def describe(self) -> str:
        return (f"PAN {self.pan.infos[0].path.name}: {self.pan.grid.describe()}; MS "
                f"{self.ms.infos[0].path.name}: {self.ms_bands} bands "
                f"({', '.join(self.ms.band_names)}), {self.ms.width} x {self.ms.height} pixels; "
                f"ratio {self.ratio}")

    def to_json(self) -> dict:
        return {"pan": {"band_names": self.pan.band_names, "dates": self.pan.dates},
                "ms": {"bands": self.ms_bands, "band_names": self.ms.band_names,
                       "dates": self.ms.dates},
                "alignment": self.alignment.to_json(), "align_ms": self.align_ms}

    def check_model(self, expected: dict, ratio: int, reporter) -> None:
        """The pair must give what a model was trained on: MS bands and ratio."""
        bands = int(expected["ms"]["bands"])
        if self.ms_bands != bands:
            raise LcfusionError(
                f"the model expects an MS image of {bands} bands "
                f"({', '.join(expected['ms']['band_names'])}) but this one has {self.ms_bands} "
                f"({', '.join(self.ms.band_names)}); give the same bands, in the same order, as "
                "for training", "MS")
        if self.ratio != ratio:
            raise LcfusionError(
                f"the model was trained on a PAN/MS ratio of {ratio} but this pair has a ratio "
                f"of {self.ratio}; its MS patches would cover other ground. Train a model on "
                "pairs of this ratio", "MS")
        if self.ms.band_names != expected["ms"]["band_names"]:
            reporter.warning(f"MS band names differ from training "
                             f"({', '.join(self.ms.band_names)} vs "
                             f"{', '.join(expected['ms']['band_names'])})")

    @contextlib.contextmanager
    def open(self) -> Iterator[PanMsReader]:
        with self.pan.open() as pan, self.ms.open() as ms:
            yield PanMsReader(self, pan, ms)


def classification_alignment(chosen: str, trained: dict, reporter) -> str:
    """The MS alignment to classify with: the model's (`trained` inputs) when `chosen` is
    ``model``, else `chosen`, with a warning when it differs from the model's."""
    recorded = trained.get("align_ms", "none")
    if chosen == "model":
        return recorded
    if chosen != recorded:
        reporter.warning(f"the MS is aligned with '{chosen}' but the model was trained with "
                         f"'{recorded}'; its MS patches may look different from training")
    return chosen


@dataclass
class PanMsReader:
    """Open PAN and MS rasters; windows are read as float32 with NaN for nodata."""

    pair: PanMsPair
    pan: SeriesReader
    ms: SeriesReader


@dataclass(frozen=True)
class PanMsNormalizer:
    pan: PercentileNormalizer
    ms: PercentileNormalizer

    @classmethod
    def fit(cls, reader: PanMsReader, rng: np.random.Generator) -> PanMsNormalizer:
        return cls(PercentileNormalizer.fit(reader.pan, rng),
                   PercentileNormalizer.fit(reader.ms, rng))

    def to_json(self) -> dict:
        return {"pan": self.pan.to_json(), "ms": self.ms.to_json()}

    def check_scale(self, reader: PanMsReader, reporter) -> None:
        """Warn when the PAN or the MS is on another scale than in training."""
        check_input_scale(reader.pan, self.pan, reporter)
        check_input_scale(reader.ms, self.ms, reporter)

    @classmethod
    def from_json(cls, data: dict) -> PanMsNormalizer:
        return cls(PercentileNormalizer.from_json(data["pan"]),
                   PercentileNormalizer.from_json(data["ms"]))
