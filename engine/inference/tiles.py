"""Tiles of a raster, without torch: which windows are computed, the margins around them and
the reading of a tile, shared by the PyTorch predictors (`tiling`) and the ONNX ones."""

from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
from rasterio.windows import Window

from ..errors import LcfusionError
from ..io.normalization import PercentileNormalizer
from ..io.rasters import GTIFF_OPTIONS, iter_windows
from ..io.series import SeriesReader

T = TypeVar("T")


def any_finite(data: np.ndarray, chunk: int = 16) -> np.ndarray:
    """Whether each pixel of (channels, rows, cols) `data` has a finite value, `chunk`
    channels at a time (no mask as large as the data)."""
    valid = np.zeros(data.shape[1:], dtype=bool)
    for start in range(0, data.shape[0], chunk):
        valid |= np.isfinite(data[start: start + chunk]).any(axis=0)
    return valid


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


class TilePredictor(ABC):
    """Class probabilities by windows ("cores") of a grid. `load` reads and prepares a core's
    input (it runs in a reader thread, ahead of the computation); `infer` computes."""

    tile_size: int
    #: Buffers of at least this many bytes are mapped from the system on their own while
    #: classifying (glibc's M_MMAP_THRESHOLD), so freed ones leave no holes in the heap to
    #: raise the next tile's peak; None keeps glibc's own threshold.
    mapped_buffers: int | None = None

    #: Pixels read on each side of a core beside it (margins, the halves of patches).
    halo: int = 0

    def cores(self, height: int, width: int) -> Iterator[Window]:
        """The windows whose probabilities are computed, covering the raster once."""
        return iter_windows(width, height, self.tile_size)

    def window(self, core: Window) -> Window:
        """The window `load` reads for `core`: the core and its `halo`."""
        return Window(int(core.col_off) - self.halo, int(core.row_off) - self.halo,
                      int(core.width) + 2 * self.halo, int(core.height) + 2 * self.halo)

    @abstractmethod
    def load(self, reader: Any, core: Window) -> Any:
        """The input of `core`, read from `reader` and ready for `infer`."""

    @abstractmethod
    def infer(self, tile: Any) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (classes, h, w) of a loaded core and its mask of pixels with data."""

    def infer_values(self, tile: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`infer`'s probabilities and mask, with the per-pixel values (bands, h, w) the
        predictor computes beside them in the same pass (TWINNS's attention); a predictor
        without any refuses."""
        raise NotImplementedError(f"{type(self).__name__} computes no per-pixel values")

    def predict(self, reader: Any, core: Window) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (classes, h, w) of `core` and its mask of pixels with data."""
        return self.infer(self.load(reader, core))


def balanced_steps(size: int, tile: int, margin: int, multiple: int) -> int:
    """The core side along an axis: as few tiles as `tile` allows, of equal sides (a multiple of
    `multiple`), so no last tile is computed almost empty."""
    count = -(-size // (tile - 2 * margin))
    return round_up(-(-size // count), multiple)


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


#: The widest strip of cores a classification visits at once, in map pixels (unless one core
#: is wider): what a strip reads again stays decoded, not a row of the map (`strip_reading`).
STRIP_WIDTH = 512


def strip_width(halo: int) -> int:
    """How wide a classification's strips are: one core wide where the tiles overlap (a
    halo), so the rows the next tile down reads again are all that stays decoded."""
    return 1 if halo else STRIP_WIDTH


def strip_bounds(starts: Sequence[int], end: int, width: int, align: int) -> list[int]:
    """Where strips of columns starting at `starts` (sorted core origins) up to `end` begin, at
    most `width` apart where the cores allow; a strip ends on a multiple of `align` (the map's
    block width) where one of the cores' origins lies, so its blocks are written whole."""
    bounds = [starts[0]]
    index = 1
    while True:
        left = bounds[-1]
        if end - left <= width:
            return bounds
        reachable = []
        while index < len(starts) and starts[index] - left <= width:
            reachable.append(starts[index])
            index += 1
        if not reachable:
            if index == len(starts):  # the last column of cores is wider than a strip
                return bounds
            reachable.append(starts[index])
            index += 1
        aligned = [start for start in reachable if start % align == 0]
        bounds.append((aligned or reachable)[-1])
        index = starts.index(bounds[-1]) + 1


def in_strips(items: Iterable[T], core_of: Callable[[T], Window] = lambda item: item,
              width: int | None = None, align: int = GTIFF_OPTIONS["blockxsize"]
              ) -> list[list[T]]:
    """`items` (cores, or what `core_of` gives a core of) cut into vertical strips at most
    `width` (default `STRIP_WIDTH`) wide, at least one column of cores, from left to right;
    each strip's items in their given order (row by row)."""
    width = width or STRIP_WIDTH
    items = list(items)
    if not items:
        return []
    cores = [core_of(item) for item in items]
    starts = sorted({int(core.col_off) for core in cores})
    end = max(int(core.col_off) + int(core.width) for core in cores)
    bounds = strip_bounds(starts, end, width, align)
    strips: list[list[T]] = [[] for _ in bounds]
    for item, core in zip(items, cores, strict=True):
        strips[bisect.bisect_right(bounds, int(core.col_off)) - 1].append(item)
    return strips


#: The 8 symmetries of a square (dihedral group D4): quarter turns, each with and without a
#: transpose. Test-time augmentation averages a network's probabilities over them.
DIHEDRAL = tuple((turns, transpose) for turns in range(4) for transpose in (False, True))


class MarginTiling:
    """Tiles of at most `tile_size` whose outer `margin` pixels are discarded; edges of the
    raster are reflect-padded by the reader.

    Tiles along an axis have equal sides, the fewest `tile_size` allows. Tile origins fall on
    multiples of `size_multiple`, so every tile pools on the grid of the whole image."""

    def __init__(self, size_multiple: int, normalizer: PercentileNormalizer,
                 tile_size: int = 512, margin: int = 20):
        check_tiling(tile_size, margin, size_multiple)
        self.size_multiple, self.normalizer = size_multiple, normalizer
        self.tile_size, self.margin = tile_size, margin

    @property
    def halo(self) -> int:
        return self.margin

    def steps(self, height: int, width: int) -> tuple[int, int]:
        """Core sides (rows, columns) for a raster."""
        return (balanced_steps(height, self.tile_size, self.margin, self.size_multiple),
                balanced_steps(width, self.tile_size, self.margin, self.size_multiple))

    def cores(self, height: int, width: int) -> Iterator[Window]:
        step_h, step_w = self.steps(height, width)
        return iter_windows(width, height, step_h, step_w)

    def tile_window(self, core: Window, height: int, width: int) -> Window:
        """The window read for `core` of a raster of `height` x `width`: the core's tile with
        its margins (beyond the raster's edges where it reaches them)."""
        step_h, step_w = self.steps(height, width)
        return Window(int(core.col_off) - self.margin, int(core.row_off) - self.margin,
                      step_w + 2 * self.margin, step_h + 2 * self.margin)

    def read_tile(self, reader: SeriesReader, core: Window
                  ) -> tuple[np.ndarray, np.ndarray, Window]:
        """The tile around `core` (with its margins), normalised, (1, channels, rows, cols),
        and the core's mask of pixels with any valid input."""
        series = reader.series
        data = reader.read(self.tile_window(core, series.height, series.width))
        h, w = int(core.height), int(core.width)
        valid = any_finite(data[:, self.margin: self.margin + h, self.margin: self.margin + w])
        return self.normalizer.apply(data)[np.newaxis], valid, core

    def core_of(self, probs: Any, core: Window) -> Any:
        """The core's part of a tile's probabilities (classes, rows, cols)."""
        h, w = int(core.height), int(core.width)
        return probs[:, self.margin: self.margin + h, self.margin: self.margin + w]


class ArrayTiledPredictor(MarginTiling, TilePredictor):
    """`MarginTiling` with a network given as a function of numpy arrays: (1, channels, rows,
    cols) to class probabilities (1, classes, rows, cols); an ONNX session, for one."""

    def __init__(self, probabilities: Callable[[np.ndarray], np.ndarray], size_multiple: int,
                 normalizer: PercentileNormalizer, tile_size: int = 512, margin: int = 20,
                 tta: bool = False):
        super().__init__(size_multiple, normalizer, tile_size, margin)
        self.probabilities, self.tta = probabilities, tta

    def load(self, reader: SeriesReader, core: Window) -> tuple[np.ndarray, np.ndarray, Window]:
        return self.read_tile(reader, core)

    def infer(self, tile: tuple[np.ndarray, np.ndarray, Window]
              ) -> tuple[np.ndarray, np.ndarray]:
        data, valid, core = tile
        if not self.tta:
            return self.core_of(self.probabilities(data)[0], core).astype(np.float32), valid
        total = None
        for turns, transpose in DIHEDRAL:
            turned = np.rot90(data, turns, axes=(-2, -1))
            turned = np.ascontiguousarray(turned.swapaxes(-2, -1) if transpose else turned)
            probs = self.probabilities(turned)[0]
            probs = probs.swapaxes(-2, -1) if transpose else probs
            probs = np.rot90(probs, -turns, axes=(-2, -1))
            total = probs if total is None else total + probs
        return self.core_of(total / len(DIHEDRAL), core).astype(np.float32), valid
