"""Tiled inference: overlapping tiles, only each tile's centre kept, streamed by windows."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from .classes import ClassTable
from .errors import LcfusionError
from .normalization import PercentileNormalizer
from .outputs import atomic_output
from .progress import Reporter
from .rasters import Grid, write_profile
from .series import SeriesReader


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def check_tiling(tile_size: int, margin: int, size_multiple: int) -> None:
    """Tiles must pool on the image's grid and keep a centre; clear errors otherwise."""
    if tile_size % size_multiple:
        raise LcfusionError(f"the tile size must be a multiple of {size_multiple}, got "
                            f"{tile_size}", "TILE_SIZE")
    if margin % size_multiple or margin < 0:
        raise LcfusionError(
            f"the margin must be a multiple of {size_multiple} (so that every tile pools on the "
            f"same grid), got {margin}", "MARGIN")
    if tile_size - 2 * margin < size_multiple:
        raise LcfusionError(
            f"the tile size ({tile_size}) must exceed twice the margin ({margin}); raise the "
            "tile size or lower the margin", "TILE_SIZE")


@dataclass
class TiledPredictor:
    """Class probabilities by tiles of `tile_size` (network input side) whose outer `margin`
    pixels are discarded; edges of the raster are reflect-padded.

    Tile origins fall on multiples of `size_multiple`, so every tile pools on the grid of the
    whole image. With a margin as wide as the network's receptive field (28 pixels for
    FG-UNET) the tiled result equals a single pass over the whole image; a narrower margin
    (the paper's 20) leaves small differences along tile seams.
    """

    model: torch.nn.Module
    normalizer: PercentileNormalizer
    device: torch.device
    tile_size: int = 512
    margin: int = 20

    @property
    def size_multiple(self) -> int:
        """Input sides must be multiples of this (the network's pooling)."""
        return getattr(self.model, "size_multiple", 1)

    def __post_init__(self) -> None:
        check_tiling(self.tile_size, self.margin, self.size_multiple)
        self.model.eval()

    def tile_shape(self, height: int, width: int) -> tuple[int, int]:
        """Input tile sides for a raster: no larger than the raster plus its margins needs."""
        m = self.size_multiple
        return (min(self.tile_size, round_up(height + 2 * self.margin, m)),
                min(self.tile_size, round_up(width + 2 * self.margin, m)))

    def cores(self, height: int, width: int) -> Iterator[Window]:
        """The kept centre windows, covering the raster once."""
        tile_h, tile_w = self.tile_shape(height, width)
        step_h, step_w = tile_h - 2 * self.margin, tile_w - 2 * self.margin
        for row in range(0, height, step_h):
            for col in range(0, width, step_w):
                yield Window(col, row, min(step_w, width - col), min(step_h, height - row))

    def predict(self, reader: SeriesReader, core: Window) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (classes, h, w) for `core` and a mask of pixels with any valid input."""
        series = reader.series
        tile_h, tile_w = self.tile_shape(series.height, series.width)
        window = Window(int(core.col_off) - self.margin, int(core.row_off) - self.margin,
                        tile_w, tile_h)
        data = reader.read(window)
        h, w = int(core.height), int(core.width)
        inner = data[:, self.margin: self.margin + h, self.margin: self.margin + w]
        valid = np.isfinite(inner).any(axis=0)
        tensor = torch.from_numpy(self.normalizer.apply(data)).unsqueeze(0).to(self.device)
        try:
            with torch.inference_mode():
                probs = torch.softmax(self.model(tensor), dim=1)[0]
        except torch.cuda.OutOfMemoryError as exc:
            raise LcfusionError("the GPU ran out of memory; lower the tile size",
                                "TILE_SIZE") from exc
        probs = probs[:, self.margin: self.margin + h, self.margin: self.margin + w]
        return probs.float().cpu().numpy(), valid


class TileClassifier(Protocol):
    """Class probabilities by windows of a grid: `TiledPredictor` and the dense predictors."""

    def cores(self, height: int, width: int) -> Iterator[Window]: ...

    def predict(self, reader: Any, core: Window) -> tuple[np.ndarray, np.ndarray]: ...


def write_class_map(predictor: TileClassifier, reader: Any, grid: Grid, classes: ClassTable,
                    class_map: Path, confidence: Path | None, reporter: Reporter,
                    tags: dict[str, str] | None = None) -> None:
    """Classify `grid` from `reader` into `class_map` (+ `confidence`), tile by tile."""
    codes = np.asarray(classes.codes, dtype=np.int64)
    dtype, nodata = classes.map_dtype(), classes.map_nodata()
    cores = list(predictor.cores(grid.height, grid.width))
    with contextlib.ExitStack() as stack:
        map_tmp = stack.enter_context(atomic_output(class_map, "OUTPUT"))
        conf_tmp = (stack.enter_context(atomic_output(confidence, "OUTPUT_CONFIDENCE"))
                    if confidence else None)
        out_map = stack.enter_context(rasterio.open(map_tmp, "w",
                                                    **write_profile(grid, 1, dtype, nodata)))
        out_conf = (stack.enter_context(rasterio.open(
            conf_tmp, "w", **write_profile(grid, 1, "float32", float("nan"))))
            if conf_tmp else None)
        for done, core in enumerate(cores, start=1):
            probs, valid = predictor.predict(reader, core)
            labels = codes[probs.argmax(axis=0)].astype(dtype)
            labels[~valid] = nodata
            out_map.write(labels, 1, window=core)
            if out_conf is not None:
                conf = probs.max(axis=0).astype(np.float32)
                conf[~valid] = np.nan
                out_conf.write(conf, 1, window=core)
            reporter.progress(done / len(cores), "classifying")
        out_map.write_colormap(1, {c.code: (*c.rgb(), 255) for c in classes})
        out_map.update_tags(LCFUSION_CLASSES=json.dumps(classes.to_json()), **(tags or {}))
        out_map.set_band_description(1, "class")
        if out_conf is not None:
            out_conf.set_band_description(1, "confidence (maximum class probability)")


def tiles_holding(cores: Iterable[Window], rows: np.ndarray, cols: np.ndarray
                  ) -> list[tuple[Window, np.ndarray]]:
    """The tiles that hold some of the pixels (rows, cols), each with the indices of its
    pixels."""
    selected = []
    for core in cores:
        r0, c0 = int(core.row_off), int(core.col_off)
        inside = ((rows >= r0) & (rows < r0 + int(core.height)) & (cols >= c0)
                  & (cols < c0 + int(core.width)))
        if inside.any():
            selected.append((core, np.flatnonzero(inside)))
    return selected


def predict_pixels(predictor: TileClassifier, reader: Any, grid: Grid, rows: np.ndarray,
                   cols: np.ndarray, reporter: Reporter) -> np.ndarray:
    """Predicted class indices at the given pixels, running only tiles that contain some."""
    predicted = np.full(rows.size, -1, dtype=np.int64)
    selected = tiles_holding(predictor.cores(grid.height, grid.width), rows, cols)
    for done, (core, members) in enumerate(selected, start=1):
        probs, _ = predictor.predict(reader, core)
        local_r = rows[members] - int(core.row_off)
        local_c = cols[members] - int(core.col_off)
        predicted[members] = probs[:, local_r, local_c].argmax(axis=0)
        reporter.progress(done / len(selected), "evaluating")
    return predicted
