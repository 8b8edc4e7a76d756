"""A PAN + MS pair: grid checks, windowed reading, patch pairs and dense tiled prediction.

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
import torch
from numpy.lib.stride_tricks import sliding_window_view
from rasterio.windows import Window

from .alignment import ALIGN_METHODS, PanMsAlignment, align_pan_ms, plan_ms_alignment
from .devices import autocast
from .errors import LcfusionError
from .normalization import PercentileNormalizer
from .pack import Boxes, WindowReader
from .rasters import Grid, crs_name, same_crs
from .series import SeriesReader, SeriesSpec, TimeSeries
from .tiling import TilePredictor, inference_copy, memory_format


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

    @classmethod
    def from_json(cls, data: dict) -> PanMsNormalizer:
        return cls(PercentileNormalizer.from_json(data["pan"]),
                   PercentileNormalizer.from_json(data["ms"]))


class PatchPairs:
    """Normalised PAN and MS patch pairs for given PAN pixels, from memory when both images
    fit the memory budget, otherwise read by windows. `pan` and `ms` read windows (file
    readers, or the arrays of a sample pack)."""

    def __init__(self, pan: WindowReader, ms: WindowReader, alignment: PanMsAlignment,
                 normalizer: PanMsNormalizer, patch_size: int, memory_limit_bytes: int):
        self.pan, self.ms, self.alignment = pan, ms, alignment
        self.normalizer = normalizer
        self.size, self.ms_size = patch_size, patch_size // alignment.ratio
        self.half = patch_size // 2
        pan_shape, ms_shape = pan.series, ms.series
        self.pad_pan = patch_size
        self.pad_ms = self.ms_size + 1
        needed = 4 * ((pan_shape.height + 2 * self.pad_pan) * (pan_shape.width + 2 * self.pad_pan)
                      + ms_shape.n_channels * (ms_shape.height + 2 * self.pad_ms)
                      * (ms_shape.width + 2 * self.pad_ms))
        self._pan = self._ms = None
        if needed <= memory_limit_bytes:
            self._pan = normalizer.pan.apply(pan.read(Window(
                -self.pad_pan, -self.pad_pan, pan_shape.width + 2 * self.pad_pan,
                pan_shape.height + 2 * self.pad_pan)))
            self._ms = normalizer.ms.apply(ms.read(Window(
                -self.pad_ms, -self.pad_ms, ms_shape.width + 2 * self.pad_ms,
                ms_shape.height + 2 * self.pad_ms)))

    @classmethod
    def of(cls, reader: PanMsReader, normalizer: PanMsNormalizer, patch_size: int,
           memory_limit_bytes: int) -> PatchPairs:
        """Patch pairs read from the files of an open PAN + MS pair."""
        return cls(reader.pan, reader.ms, reader.pair.alignment, normalizer, patch_size,
                   memory_limit_bytes)

    def pan_boxes(self, rows: np.ndarray, cols: np.ndarray) -> Boxes:
        """The PAN pixels the patches of (rows, cols) read."""
        shape = self.pan.series
        return Boxes.around(rows, cols, self.half, self.size - self.half - 1, shape.height,
                            shape.width)

    def ms_boxes(self, rows: np.ndarray, cols: np.ndarray) -> Boxes:
        """The MS pixels the patches of (rows, cols) read."""
        shape = self.ms.series
        return Boxes.around(self.alignment.patch_start(rows - self.half, 0),
                            self.alignment.patch_start(cols - self.half, 1), 0,
                            self.ms_size - 1, shape.height, shape.width)

    @property
    def in_memory(self) -> bool:
        return self._pan is not None

    def read(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """PAN (N, 1, d, d) and MS (N, c, d/r, d/r) patches of the PAN pixels (rows, cols)."""
        pan_rows, pan_cols = rows - self.half, cols - self.half
        alignment = self.alignment
        ms_rows = alignment.patch_start(pan_rows, 0)
        ms_cols = alignment.patch_start(pan_cols, 1)
        if self._pan is not None:
            d, m = self.size, self.ms_size
            pan = sliding_window_view(self._pan, (d, d), axis=(1, 2))[
                :, pan_rows + self.pad_pan, pan_cols + self.pad_pan]
            ms = sliding_window_view(self._ms, (m, m), axis=(1, 2))[
                :, ms_rows + self.pad_ms, ms_cols + self.pad_ms]
            return (np.ascontiguousarray(pan.transpose(1, 0, 2, 3)),
                    np.ascontiguousarray(ms.transpose(1, 0, 2, 3)))
        pans, mss = [], []
        for pr, pc, mr, mc in zip(pan_rows, pan_cols, ms_rows, ms_cols, strict=True):
            pans.append(self.normalizer.pan.apply(self.pan.read(
                Window(int(pc), int(pr), self.size, self.size))))
            mss.append(self.normalizer.ms.apply(self.ms.read(
                Window(int(mc), int(mr), self.ms_size, self.ms_size))))
        return np.stack(pans), np.stack(mss)


def augment_pairs(pan: np.ndarray, ms: np.ndarray, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The same random 90-degree rotation and transpose for each PAN patch and its MS patch."""
    turns = rng.integers(0, 4, size=pan.shape[0])
    flips = rng.random(pan.shape[0]) < 0.5
    for i in range(pan.shape[0]):
        p, m = np.rot90(pan[i], turns[i], axes=(1, 2)), np.rot90(ms[i], turns[i], axes=(1, 2))
        if flips[i]:
            p, m = p.transpose(0, 2, 1), m.transpose(0, 2, 1)
        pan[i], ms[i] = p, m
    return pan, ms


class DensePanMsPredictor(TilePredictor):
    """Class probabilities of every PAN pixel, tile by tile, each equal to the per-patch answer.

    Every tile reads the PAN with a halo of the patch size and the MS pixels of all its patches;
    the model's `dense_logits` shares the convolutions between the overlapping patches.
    """

    size_multiple = 1

    def __init__(self, model: torch.nn.Module, normalizer: PanMsNormalizer,
                 device: torch.device, tile_size: int = 256):
        if tile_size < 1:
            raise LcfusionError(f"the tile size must be above 0, got {tile_size}", "TILE_SIZE")
        self.model, self.normalizer, self.device = inference_copy(model, device), normalizer, device
        self.tile_size = tile_size
        self.size = model.config.patch_size
        self.ms_size = model.config.ms_patch_size
        self.half = self.size // 2

    def _ms_window(self, reader: PanMsReader, start: int, count: int, axis: int
                   ) -> tuple[int, int, np.ndarray, np.ndarray]:
        """First MS index and count to read along an axis for PAN pixels start..start+count-1,
        with each pixel's MS patch start and containing MS pixel relative to it."""
        pixels = np.arange(start, start + count)
        alignment = reader.pair.alignment
        starts = alignment.patch_start(pixels - self.half, axis)
        containing = alignment.ms_index(pixels, axis)
        first = int(min(starts[0], containing[0]))
        last = int(max(starts[-1] + self.ms_size, containing[-1] + 1))
        return first, last - first, starts - first, containing - first

    def load(self, reader: PanMsReader, core: Window) -> dict:
        """The PAN with a halo of the patch size and the MS pixels of all the core's patches,
        normalised, with each output row's and column's MS patch start."""
        row0, col0, h, w = int(core.row_off), int(core.col_off), int(core.height), int(core.width)
        pan = reader.pan.read(Window(col0 - self.half, row0 - self.half, w + self.size - 1,
                                     h + self.size - 1))
        r_first, r_count, r_starts, r_pixel = self._ms_window(reader, row0, h, 0)
        c_first, c_count, c_starts, c_pixel = self._ms_window(reader, col0, w, 1)
        ms = reader.ms.read(Window(c_first, r_first, c_count, r_count))
        valid = (np.isfinite(pan[0, self.half: self.half + h, self.half: self.half + w])
                 & np.isfinite(ms).any(axis=0)[np.ix_(r_pixel, c_pixel)])
        return {"pan": torch.from_numpy(self.normalizer.pan.apply(pan))[None],
                "ms": torch.from_numpy(self.normalizer.ms.apply(ms))[None],
                "rows": torch.from_numpy(r_starts), "cols": torch.from_numpy(c_starts),
                "height": h, "width": w, "valid": valid}

    def infer(self, tile: dict) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (classes, h, w) of a loaded core and the mask of pixels with PAN and
        MS data."""
        logits = self.tile_logits(tile)
        return torch.softmax(logits, dim=0).float().cpu().numpy(), tile["valid"]

    def tile_logits(self, tile: dict) -> torch.Tensor:
        """Class scores (classes, h, w) of a loaded core."""
        device, layout = self.device, memory_format(self.device)
        try:
            with torch.inference_mode(), autocast(device):
                logits = self.model.dense_logits(
                    tile["pan"].to(device).contiguous(memory_format=layout),
                    tile["ms"].to(device).contiguous(memory_format=layout),
                    tile["rows"].to(device), tile["cols"].to(device), tile["height"],
                    tile["width"])
        except torch.cuda.OutOfMemoryError as exc:
            raise LcfusionError("the GPU ran out of memory; lower the tile size",
                                "TILE_SIZE") from exc
        return logits[0].float()

    def patch_logits(self, pairs: PatchPairs, rows: np.ndarray, cols: np.ndarray,
                     batch_size: int = 64) -> np.ndarray:
        """Class scores (N, classes) of PAN pixels, one patch pair at a time through the
        network's per-patch `forward` (the reference the dense path must equal)."""
        out = []
        with torch.inference_mode():
            for start in range(0, rows.size, batch_size):
                pan, ms = pairs.read(rows[start: start + batch_size],
                                     cols[start: start + batch_size])
                out.append(self.model(torch.from_numpy(pan).to(self.device),
                                      torch.from_numpy(ms).to(self.device)).float().cpu())
        return torch.cat(out).numpy()
