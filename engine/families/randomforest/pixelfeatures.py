"""Per-pixel feature vectors for the Random Forest: stacks of input channels on one grid,
features of a pixel (its channels, or a patch around it flattened or summarised), feature
vectors at given pixels, and class probabilities of whole tiles.

Patches have an odd side p and are centred on their pixel; outside the rasters the images are
mirrored about their edge pixels (as every reader of the engine does).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from rasterio.windows import Window

from ...errors import LcfusionError
from ...inference.tiles import TilePredictor, any_finite, tiles_holding
from ...io.panms import PanMsReader
from ...io.rasters import iter_windows, reflect_indices
from ...io.sources import FeatureReader
from ...progress import Reporter
from .forest import Forest, block_rows

#: pixel: the pixel's channels; patch_flat: every value of the p x p patch; patch_stats: per
#: channel mean, standard deviation, minimum and maximum over the patch.
FEATURE_KINDS = ("pixel", "patch_flat", "patch_stats")
STATISTICS = ("mean", "std", "min", "max")


class ChannelStack(Protocol):
    """Reads (channels, rows, cols) float32 windows of a grid; NaN where data are missing."""

    def read(self, window: Window) -> np.ndarray: ...


@dataclass
class SeriesStack:
    """The channels of several feature readers on one grid, one after the other."""

    readers: Sequence[FeatureReader]

    def read(self, window: Window) -> np.ndarray:
        return np.concatenate([reader.read(window) for reader in self.readers])


@dataclass
class PanMsStack:
    """On the PAN grid: the PAN value of each PAN pixel and the bands of the MS pixel that
    contains it (nothing resampled: each MS value repeats over its r x r PAN pixels)."""

    reader: PanMsReader

    def read(self, window: Window) -> np.ndarray:
        pair = self.reader.pair
        pan = self.reader.pan.read(window)
        rows = pair.alignment.ms_index(reflect_indices(int(window.row_off), int(window.height),
                                                       pair.pan.height), 0)
        cols = pair.alignment.ms_index(reflect_indices(int(window.col_off), int(window.width),
                                                       pair.pan.width), 1)
        r0, c0 = int(rows.min()), int(cols.min())
        ms = self.reader.ms.read(Window(c0, r0, int(cols.max()) - c0 + 1,
                                        int(rows.max()) - r0 + 1))
        return np.concatenate([pan, ms[:, rows - r0][:, :, cols - c0]])


@dataclass(frozen=True)
class PixelFeatures:
    """How a pixel's feature vector is made from the channels around it."""

    kind: str = "pixel"
    patch_size: int = 5

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise LcfusionError(f"unknown features {self.kind!r}; use one of "
                                f"{', '.join(FEATURE_KINDS)}", "FEATURES")
        if self.patch_size < 1 or self.patch_size % 2 == 0:
            raise LcfusionError(f"must be odd so that a patch is centred on its pixel, got "
                                f"{self.patch_size}", "PATCH_SIZE")

    @property
    def size(self) -> int:
        """The side of the neighbourhood read around a pixel."""
        return 1 if self.kind == "pixel" else self.patch_size

    @property
    def half(self) -> int:
        return self.size // 2

    def names(self, channels: Sequence[str]) -> list[str]:
        """One name per feature, in the order of the feature vector."""
        if self.kind == "pixel":
            return list(channels)
        if self.kind == "patch_stats":
            return [f"{name} {stat}" for name in channels for stat in STATISTICS]
        offsets = range(-self.half, self.half + 1)
        return [f"{name} [{dr:+d},{dc:+d}]" for name in channels for dr in offsets
                for dc in offsets]

    def count(self, n_channels: int) -> int:
        per_channel = {"pixel": 1, "patch_stats": len(STATISTICS)}.get(self.kind,
                                                                        self.size ** 2)
        return n_channels * per_channel

    def at(self, data: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Feature vectors (pixels, features) of the pixels (rows, cols) of a block `data`
        (channels, rows, cols) read with a halo of `half` pixels on every side."""
        if self.kind == "pixel":
            return np.ascontiguousarray(data[:, rows, cols].T)
        patches = sliding_window_view(data, (self.size, self.size), axis=(1, 2))[:, rows, cols]
        patches = patches.transpose(1, 0, 2, 3)  # (pixels, channels, p, p)
        if self.kind == "patch_flat":
            return np.ascontiguousarray(patches.reshape(patches.shape[0], -1))
        flat = patches.reshape(*patches.shape[:2], -1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-missing patches give NaN
            stats = np.stack([np.nanmean(flat, axis=2), np.nanstd(flat, axis=2),
                              np.nanmin(flat, axis=2), np.nanmax(flat, axis=2)], axis=2)
        return stats.reshape(stats.shape[0], -1).astype(np.float32)


def read_with_halo(stack: ChannelStack, core: Window, half: int) -> np.ndarray:
    return stack.read(Window(int(core.col_off) - half, int(core.row_off) - half,
                             int(core.width) + 2 * half, int(core.height) + 2 * half))


def features_at(stack: ChannelStack, features: PixelFeatures, rows: np.ndarray,
                cols: np.ndarray, height: int, width: int, tile_size: int,
                reporter: Reporter) -> tuple[np.ndarray, np.ndarray]:
    """Feature vectors (pixels, features) of the pixels (rows, cols), read tile by tile, and
    whether each pixel has any data of its own (a finite channel value)."""
    vectors: np.ndarray | None = None
    has_data = np.zeros(rows.size, dtype=bool)
    selected = tiles_holding(iter_windows(width, height, tile_size), rows, cols)
    for done, (core, members) in enumerate(selected, start=1):
        data = read_with_halo(stack, core, features.half)
        local_r = rows[members] - int(core.row_off)
        local_c = cols[members] - int(core.col_off)
        values = features.at(data, local_r, local_c)
        if vectors is None:
            vectors = np.empty((rows.size, values.shape[1]), dtype=np.float32)
        vectors[members] = values
        centre = data[:, local_r + features.half, local_c + features.half]
        has_data[members] = np.isfinite(centre).any(axis=0)
        reporter.progress(done / len(selected), "reading the training pixels")
    if vectors is None:
        vectors = np.empty((0, 0), dtype=np.float32)
    return vectors, has_data


class ForestTilePredictor(TilePredictor):
    """Class probabilities of every pixel of a tile: the tile is read once
    with the halo the patches need, and its pixels' feature vectors go through the forest in
    batches of rows (at most `batch_size` pixels, or two of the forest's blocks per thread
    where that is more, and patches of at most `batch_bytes`), on `threads` threads. Pixels
    without any data of their own are marked invalid."""

    def __init__(self, forest: Forest, features: PixelFeatures, tile_size: int = 128,
                 threads: int = 1, batch_size: int = 8192, batch_bytes: int = 64 << 20):
        if tile_size < 1:
            raise LcfusionError(f"the tile size must be above 0, got {tile_size}", "TILE_SIZE")
        self.forest, self.features, self.threads = forest, features, threads
        self.halo = features.half
        self.tile_size, self.batch_size, self.batch_bytes = tile_size, batch_size, batch_bytes

    def load(self, stack: ChannelStack, core: Window) -> tuple[np.ndarray, Window]:
        return read_with_halo(stack, core, self.features.half), core

    def infer(self, tile: tuple[np.ndarray, Window]) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (classes, h, w) of a loaded core and the mask of pixels with data."""
        data, core = tile
        h, w, half = int(core.height), int(core.width), self.features.half
        valid = any_finite(data[:, half: half + h, half: half + w])
        probs = np.empty((h * w, self.forest.n_classes), dtype=np.float32)
        patch_bytes = data.shape[0] * self.features.size ** 2 * 4
        pixels = max(self.batch_size,
                     2 * self.threads * block_rows(self.forest.n_features))
        rows_per_batch = max(1, min(pixels, self.batch_bytes // patch_bytes) // w)
        for top in range(0, h, rows_per_batch):
            rows, cols = np.divmod(np.arange(top * w, min(h, top + rows_per_batch) * w), w)
            vectors = self.forest.fill_missing(self.features.at(data, rows, cols))
            probs[rows * w + cols] = self.forest.predict_proba(vectors, self.threads)
        return probs.T.reshape(-1, h, w), valid
