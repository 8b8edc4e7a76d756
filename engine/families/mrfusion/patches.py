"""MRFusion's patch pairs: normalised PAN and MS patches of given PAN pixels for training, their
augmentation, and dense tiled prediction of every PAN pixel (see `io.panms` for the patch
convention)."""

from __future__ import annotations

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from rasterio.windows import Window

from ...inference.precision import CheckedPrecision
from ...inference.tiling import inference_copy, memory_format
from ...io.alignment import PanMsAlignment
from ...io.pack import Boxes, WindowReader
from ...io.panms import PanMsNormalizer, PanMsReader
from .tiles import PATCH_SYMMETRIES, DensePanMsTiles


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


def symmetric_tile(tile: dict, ms_size: int, flip_rows: bool, flip_cols: bool,
                   transpose: bool) -> dict:
    """A loaded tile (see `DensePanMsPredictor.load`) with its PAN and MS blocks flipped and
    transposed, and the MS patch starts moved with them, so every output pixel's patch pair
    becomes its mirror image; `restore_symmetry` puts the dense scores back in place."""
    pan, ms, rows, cols = tile["pan"], tile["ms"], tile["rows"], tile["cols"]
    height, width = tile["height"], tile["width"]
    if flip_rows:
        pan, ms = pan.flip(-2), ms.flip(-2)
        rows = (ms.shape[-2] - ms_size - rows).flip(0)
    if flip_cols:
        pan, ms = pan.flip(-1), ms.flip(-1)
        cols = (ms.shape[-1] - ms_size - cols).flip(0)
    if transpose:
        pan, ms = pan.transpose(-2, -1), ms.transpose(-2, -1)
        rows, cols, height, width = cols, rows, width, height
    return {**tile, "pan": pan, "ms": ms, "rows": rows, "cols": cols, "height": height,
            "width": width}


def restore_symmetry(scores: torch.Tensor, flip_rows: bool, flip_cols: bool,
                     transpose: bool) -> torch.Tensor:
    """Scores (..., rows, cols) of a `symmetric_tile` back on the original tile's pixels."""
    if transpose:
        scores = scores.transpose(-2, -1)
    if flip_cols:
        scores = scores.flip(-1)
    return scores.flip(-2) if flip_rows else scores


class DensePanMsPredictor(CheckedPrecision, DensePanMsTiles):
    """Class probabilities of every PAN pixel, tile by tile, each equal to the per-patch answer.

    Every tile reads the PAN with a halo of the patch size and the MS pixels of all its patches;
    the model's `dense_logits` shares the convolutions between the overlapping patches. With
    `tta`, the probabilities are the mean over the 8 flips and rotations of every patch pair.
    """

    def __init__(self, model: torch.nn.Module, normalizer: PanMsNormalizer,
                 device: torch.device, tile_size: int = 256, tta: bool = False):
        super().__init__(normalizer, model.config.patch_size, model.config.ms_patch_size,
                         tile_size)
        self.model, self.device = inference_copy(model, device), device
        self.tta = tta
        self.start_precision(device)

    def load(self, reader: PanMsReader, core: Window) -> dict:
        """The tile of `read_tile`, its arrays as tensors."""
        tile = self.read_tile(reader, core)
        return {**tile, **{key: torch.from_numpy(tile[key])
                           for key in ("pan", "ms", "rows", "cols")}}

    def infer(self, tile: dict) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (classes, h, w) of a loaded core and the mask of pixels with PAN and
        MS data."""
        if self.bfloat16 is None:
            return self.check_precision(self.infer, tile)
        if not self.tta:
            return torch.softmax(self.tile_logits(tile), dim=0).cpu().numpy(), tile["valid"]
        total = sum(restore_symmetry(torch.softmax(self.tile_logits(
            symmetric_tile(tile, self.ms_size, *symmetry)), dim=0), *symmetry)
            for symmetry in PATCH_SYMMETRIES)
        return (total / len(PATCH_SYMMETRIES)).cpu().numpy(), tile["valid"]

    def tile_logits(self, tile: dict) -> torch.Tensor:
        """Class scores (classes, h, w) of a loaded core."""
        device, layout = self.device, memory_format(self.device)
        with self.computing():
            logits = self.model.dense_logits(
                tile["pan"].to(device).contiguous(memory_format=layout),
                tile["ms"].to(device).contiguous(memory_format=layout),
                tile["rows"].to(device), tile["cols"].to(device), tile["height"],
                tile["width"])
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
