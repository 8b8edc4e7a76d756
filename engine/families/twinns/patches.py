"""TWINNS's patches: normalised p x p patches of every source around given pixels for training,
and batched patch prediction over tiles, with the attention weights when asked (see
`io.sources` for the patch convention)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from rasterio.windows import Window

from ...errors import LcfusionError
from ...inference.ensemble import Ensemble, log_mean_probabilities
from ...inference.precision import CheckedPrecision, tile_fits_gpu
from ...inference.tiles import TilePredictor, any_finite
from ...inference.tiling import dihedral_mean, inference_copy, memory_format
from ...io.normalization import PercentileNormalizer
from ...io.pack import Boxes
from ...io.sources import FeatureReader
from ...training.loop import logits_of
from .inputs import patch_batch


class GridPatches:
    """Normalised p x p patches of every source around given pixels, from memory when all
    sources fit the memory budget, otherwise read by windows."""

    def __init__(self, readers: Sequence[FeatureReader],
                 normalizers: Sequence[PercentileNormalizer], patch_size: int,
                 memory_limit_bytes: int):
        self.readers, self.normalizers = list(readers), list(normalizers)
        self.size, self.half = patch_size, patch_size // 2
        first = self.readers[0].series
        padded = (first.height + 2 * self.half) * (first.width + 2 * self.half)
        needed = 4 * padded * sum(r.series.n_channels for r in self.readers)
        self._images = None
        if needed <= memory_limit_bytes:
            window = Window(-self.half, -self.half, first.width + 2 * self.half,
                            first.height + 2 * self.half)
            self._images = [n.apply(r.read(window)) for r, n in zip(self.readers,
                                                                    self.normalizers,
                                                                    strict=True)]

    @property
    def in_memory(self) -> bool:
        return self._images is not None

    def boxes(self, rows: np.ndarray, cols: np.ndarray) -> Boxes:
        """The pixels the patches of (rows, cols) read (every source is on the same grid)."""
        shape = self.readers[0].series
        return Boxes.around(rows, cols, self.half, self.half, shape.height, shape.width)

    def read(self, rows: np.ndarray, cols: np.ndarray) -> list[np.ndarray]:
        """Per source, (N, channels, p, p) patches centred on the pixels (rows, cols)."""
        if self._images is not None:
            return [np.ascontiguousarray(sliding_window_view(
                image, (self.size, self.size), axis=(1, 2))[:, rows, cols].transpose(1, 0, 2, 3))
                for image in self._images]
        out = []
        for reader, normalizer in zip(self.readers, self.normalizers, strict=True):
            out.append(np.stack([normalizer.apply(reader.read(Window(
                int(c) - self.half, int(r) - self.half, self.size, self.size)))
                for r, c in zip(rows, cols, strict=True)]))
        return out


def scores_and_attention(model: torch.nn.Module, *inputs: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Class scores (B, classes) and the attention weights over the dates of each source with
    a ConvGRU branch, S1's then S2's (B, dates): for an ensemble the log of its members' mean
    probabilities and the mean of their weights (which still sums to 1 per source)."""
    if isinstance(model, Ensemble):
        outputs = [member(*inputs) for member in model.members]
        weights = torch.stack([torch.cat(list(o.attention.values()), dim=1) for o in outputs])
        return log_mean_probabilities([o.logits for o in outputs]), weights.mean(dim=0)
    output = model(*inputs)
    return output.logits, torch.cat(list(output.attention.values()), dim=1)


class BatchedPatchPredictor(CheckedPrecision, TilePredictor):
    """Class probabilities of every pixel of a tile from its patches, in batches: each tile is
    read once with a halo of p // 2, and its patches are cut from it as tensor views."""

    size_multiple = 1

    def __init__(self, model: torch.nn.Module, normalizers: Sequence[PercentileNormalizer],
                 device: torch.device, patch_size: int, tile_size: int = 128,
                 batch_size: int | None = None, tta: bool = False):
        if tile_size < 1:
            raise LcfusionError(f"the tile size must be above 0, got {tile_size}", "TILE_SIZE")
        self.model, self.device = inference_copy(model, device), device
        self.normalizers = list(normalizers)
        self.size, self.half = patch_size, patch_size // 2
        self.halo = self.half
        self.tile_size, self.tta = tile_size, tta
        self.batch_size = batch_size or patch_batch(device.type != "cpu")
        self.layout = memory_format(device)
        self.start_precision(device)

    def load(self, readers: Sequence[FeatureReader], core: Window
             ) -> tuple[list[torch.Tensor], np.ndarray, Window]:
        """Each source's tile with a halo of p // 2, normalised, and the mask of pixels with
        data."""
        h, w = int(core.height), int(core.width)
        window = self.window(core)
        tiles, valid = [], np.zeros((h, w), dtype=bool)
        for reader, normalizer in zip(readers, self.normalizers, strict=True):
            data = reader.read(window)
            valid |= any_finite(data[:, self.half: self.half + h, self.half: self.half + w])
            tiles.append(torch.from_numpy(normalizer.apply(data)))
        return tiles, valid, core

    def _batches(self, tiles: list[torch.Tensor], h: int, w: int,
                 forward: Callable[..., object] | None = None):
        """The outputs of `forward` (the model's by default) for the h x w pixels of the
        tiles, in row-major batches."""
        forward = forward or self.model
        rows_per_batch = max(1, self.batch_size // w)
        with self.computing():
            for top in range(0, h, rows_per_batch):
                rows = min(rows_per_batch, h - top)
                yield forward(*(self._patches(tile[:, top: top + rows + 2 * self.half])
                                for tile in tiles))

    def _patches(self, band: torch.Tensor) -> torch.Tensor:
        """The p x p patches of every pixel of a band of rows (channels, r + p - 1, w + p - 1)
        as (r * w, channels, p, p), copied once into the model's memory layout."""
        windows = band.unfold(1, self.size, 1).unfold(2, self.size, 1)  # (C, r, w, p, p)
        channels, rows, width = windows.shape[:3]
        if self.layout == torch.channels_last:
            return (windows.permute(1, 2, 3, 4, 0)
                    .reshape(rows * width, self.size, self.size, channels)
                    .permute(0, 3, 1, 2))
        return windows.permute(1, 2, 0, 3, 4).reshape(rows * width, channels, self.size,
                                                       self.size)

    def infer(self, tile: tuple[list[torch.Tensor], np.ndarray, Window]
              ) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (classes, h, w) of a loaded core and the mask of pixels with data."""
        if self.bfloat16 is None:
            return self.check_precision(self.infer, tile)
        tiles, valid, core = tile
        return self._on_device(self._probabilities, tiles).float().cpu().numpy(), valid

    def _on_device(self, compute: Callable[[list[torch.Tensor]], torch.Tensor],
                   tiles: list[torch.Tensor]) -> torch.Tensor:
        """`compute` on the tiles moved to the device; with test-time augmentation its mean
        over the 8 symmetries of each pixel's patches."""
        tiles = [t.to(self.device) for t in tiles]
        with tile_fits_gpu():
            return dihedral_mean(compute, tiles) if self.tta else compute(tiles)

    def infer_pixels(self, tile: tuple[list[torch.Tensor], np.ndarray, Window],
                     rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (classes, n) of the core's pixels (`rows`, `cols`, in the core) and
        their mask of data: the patches of those pixels only, as `infer` computes them for
        every pixel (with test-time augmentation, `infer`'s values at those pixels)."""
        if self.tta:
            probs, valid = self.infer(tile)
            return probs[:, rows, cols], valid[rows, cols]
        tiles, valid, core = tile
        selected = [torch.from_numpy(rows), torch.from_numpy(cols)]
        scores = []
        with self.computing():
            for start in range(0, rows.size, self.batch_size):
                at = [index[start: start + self.batch_size] for index in selected]
                scores.append(logits_of(self.model(*(self._pixel_patches(t, *at)
                                                      for t in tiles))).float())
        probs = torch.softmax(torch.cat(scores), dim=1).T if scores else torch.zeros(
            self.model.config.n_classes, 0)
        return probs.cpu().numpy(), valid[rows, cols]

    def _pixel_patches(self, tile: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
                       ) -> torch.Tensor:
        """The p x p patches (n, channels, p, p) of the core pixels (`rows`, `cols`) of a tile
        read with a halo of p // 2, in the model's memory layout."""
        windows = tile.to(self.device).unfold(1, self.size, 1).unfold(2, self.size, 1)
        patches = windows[:, rows.to(self.device), cols.to(self.device)].permute(1, 0, 2, 3)
        return patches.contiguous(memory_format=self.layout)

    def infer_values(self, tile: tuple[list[torch.Tensor], np.ndarray, Window]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`infer`'s probabilities and mask with the attention weights (dates of each source
        with a ConvGRU branch, S1's then S2's; h, w) of the same pass; with test-time
        augmentation both are the mean over the 8 symmetries of each pixel's patches."""
        if self.bfloat16 is None:
            return self.check_precision(self.infer_values, tile)
        tiles, valid, core = tile
        stacked = self._on_device(self._probabilities_and_attention,
                                  tiles).float().cpu().numpy()
        classes = self.model.config.n_classes
        return stacked[:classes], valid, stacked[classes:]

    def _probabilities_and_attention(self, tiles: list[torch.Tensor]) -> torch.Tensor:
        """The probabilities (classes, h, w) of `_probabilities` followed by the attention
        weights (dates, h, w)."""
        h, w = (side - 2 * self.half for side in tiles[0].shape[-2:])
        scores, weights = zip(*self._batches(tiles, h, w, lambda *patches: scores_and_attention(
            self.model, *patches)), strict=True)
        probs = torch.softmax(torch.cat(scores).float(), dim=1)
        return torch.cat([probs, torch.cat(weights).float()], dim=1).T.reshape(-1, h, w)

    def _probabilities(self, tiles: list[torch.Tensor]) -> torch.Tensor:
        """Probabilities (classes, h, w) of the pixels of tiles read with a halo of p // 2."""
        h, w = (side - 2 * self.half for side in tiles[0].shape[-2:])
        logits = torch.cat([logits_of(o).float() for o in self._batches(tiles, h, w)])
        return torch.softmax(logits, dim=1).T.reshape(-1, h, w)
