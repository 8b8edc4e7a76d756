"""MRFusion's dense tiles without torch: each core's PAN with the patch halo, the MS pixels of
all its patches and each output row's and column's MS patch start (shared by the PyTorch and
ONNX predictors), and the 8 symmetries of a tile's patch pairs for test-time augmentation."""

from __future__ import annotations

import numpy as np
from rasterio.windows import Window

from ...errors import LcfusionError
from ...inference.tiles import TilePredictor
from ...io.panms import PanMsNormalizer, PanMsReader


class DensePanMsTiles(TilePredictor):
    """Reading the dense tiles of every PAN pixel's patch pair (see `read_tile`)."""

    size_multiple = 1

    def __init__(self, normalizer: PanMsNormalizer, patch_size: int, ms_patch_size: int,
                 tile_size: int = 256):
        if tile_size < 1:
            raise LcfusionError(f"the tile size must be above 0, got {tile_size}", "TILE_SIZE")
        self.normalizer, self.tile_size = normalizer, tile_size
        self.size, self.ms_size = patch_size, ms_patch_size
        self.half = self.halo = self.size // 2

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

    def read_tile(self, reader: PanMsReader, core: Window) -> dict:
        """The PAN with a halo of the patch size and the MS pixels of all the core's patches,
        normalised (1, bands, rows, cols), with each output row's and column's MS patch start
        (int64) and the core's mask of pixels with PAN and MS data."""
        row0, col0, h, w = int(core.row_off), int(core.col_off), int(core.height), int(core.width)
        pan = reader.pan.read(Window(col0 - self.half, row0 - self.half, w + self.size - 1,
                                     h + self.size - 1))
        r_first, r_count, r_starts, r_pixel = self._ms_window(reader, row0, h, 0)
        c_first, c_count, c_starts, c_pixel = self._ms_window(reader, col0, w, 1)
        ms = reader.ms.read(Window(c_first, r_first, c_count, r_count))
        valid = (np.isfinite(pan[0, self.half: self.half + h, self.half: self.half + w])
                 & np.isfinite(ms).any(axis=0)[np.ix_(r_pixel, c_pixel)])
        return {"pan": self.normalizer.pan.apply(pan)[None],
                "ms": self.normalizer.ms.apply(ms)[None],
                "rows": np.asarray(r_starts, dtype=np.int64),
                "cols": np.asarray(c_starts, dtype=np.int64),
                "height": h, "width": w, "valid": valid}


#: The 8 symmetries of a square patch as (flip the rows, flip the columns, then transpose).
PATCH_SYMMETRIES = tuple((rows, cols, transpose) for rows in (False, True)
                         for cols in (False, True) for transpose in (False, True))


def symmetric_arrays(tile: dict, ms_size: int, flip_rows: bool, flip_cols: bool,
                     transpose: bool) -> dict:
    """`read_tile`'s tile with its PAN and MS blocks flipped and transposed, and the MS patch
    starts moved with them, so every output pixel's patch pair becomes its mirror image."""
    pan, ms, rows, cols = tile["pan"], tile["ms"], tile["rows"], tile["cols"]
    height, width = tile["height"], tile["width"]
    if flip_rows:
        pan, ms = pan[..., ::-1, :], ms[..., ::-1, :]
        rows = (ms.shape[-2] - ms_size - rows)[::-1]
    if flip_cols:
        pan, ms = pan[..., ::-1], ms[..., ::-1]
        cols = (ms.shape[-1] - ms_size - cols)[::-1]
    if transpose:
        pan, ms = pan.swapaxes(-2, -1), ms.swapaxes(-2, -1)
        rows, cols, height, width = cols, rows, width, height
    return {**tile, "pan": pan, "ms": ms, "rows": rows, "cols": cols, "height": height,
            "width": width}


def restore_arrays(scores: np.ndarray, flip_rows: bool, flip_cols: bool,
                   transpose: bool) -> np.ndarray:
    """Scores (..., rows, cols) of a `symmetric_arrays` tile back on the tile's pixels."""
    if transpose:
        scores = scores.swapaxes(-2, -1)
    if flip_cols:
        scores = scores[..., ::-1]
    return scores[..., ::-1, :] if flip_rows else scores
