"""Training patches: class-balanced sampling of labelled pixels and reading of patches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.windows import Window

from ..io.normalization import PercentileNormalizer
from ..io.pack import Boxes, WindowReader


class ClassBalancedPatchSampler:
    """Top-left corners of patches: a class uniformly among those present, then a labelled
    pixel of that class, shifted by up to `max_shift` pixels, the patch clipped inside the image.
    """

    def __init__(self, rows: np.ndarray, cols: np.ndarray, classes: np.ndarray, patch: int,
                 max_shift: int, height: int, width: int):
        self.patch, self.max_shift = patch, max_shift
        self.height, self.width = height, width
        self.by_class = [np.flatnonzero(classes == c) for c in np.unique(classes)]
        self.rows, self.cols = rows, cols

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """`count` x 2 array of (row, col) top-left corners."""
        picks = rng.integers(0, len(self.by_class), size=count)
        corners = np.empty((count, 2), dtype=np.int64)
        for i, which in enumerate(picks):
            members = self.by_class[which]
            pixel = members[rng.integers(0, members.size)]
            shift = rng.integers(-self.max_shift, self.max_shift + 1, size=2)
            row = self.rows[pixel] - self.patch // 2 + shift[0]
            col = self.cols[pixel] - self.patch // 2 + shift[1]
            corners[i, 0] = np.clip(row, 0, self.height - self.patch)
            corners[i, 1] = np.clip(col, 0, self.width - self.patch)
        return corners


    def boxes(self, rows: np.ndarray, cols: np.ndarray) -> Boxes:
        """The pixels that patches sampled around (rows, cols) can cover."""
        first_row = np.clip(rows - self.patch // 2 - self.max_shift, 0, self.height - self.patch)
        last_row = np.clip(rows - self.patch // 2 + self.max_shift, 0, self.height - self.patch)
        first_col = np.clip(cols - self.patch // 2 - self.max_shift, 0, self.width - self.patch)
        last_col = np.clip(cols - self.patch // 2 + self.max_shift, 0, self.width - self.patch)
        return Boxes(first_row, last_row + self.patch - 1, first_col,
                     last_col + self.patch - 1)


class BandReader:
    """Windows of the first band of a raster, as a (1, rows, cols) array (a `WindowReader`)."""

    def __init__(self, path: str):
        self.dataset = rasterio.open(path)
        self.height, self.width, self.n_channels = self.dataset.height, self.dataset.width, 1

    @property
    def series(self) -> BandReader:
        return self

    def read(self, window: Window) -> np.ndarray:
        return self.dataset.read(1, window=window, boundless=True, fill_value=0)[None]

    def close(self) -> None:
        self.dataset.close()


@dataclass
class PatchSource:
    """Normalised input patches and their object ids, from memory when the scene fits the
    memory budget, otherwise read by windows (from the files, or from a sample pack)."""

    reader: WindowReader
    normalizer: PercentileNormalizer
    objects: WindowReader
    memory_limit_bytes: int

    def __post_init__(self) -> None:
        shape = self.reader.series
        needed = shape.n_channels * shape.height * shape.width * 4
        self._image = self._labels = None
        if needed + shape.height * shape.width * 4 <= self.memory_limit_bytes:
            self._image, self._labels = self._read(Window(0, 0, shape.width, shape.height))

    @property
    def in_memory(self) -> bool:
        return self._image is not None

    def read(self, row: int, col: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(channels, size, size) float32 input and (size, size) int32 object ids."""
        if self._image is not None:
            return (self._image[:, row: row + size, col: col + size].copy(),
                    self._labels[row: row + size, col: col + size].copy())
        return self._read(Window(col, row, size, size))

    def _read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """The normalised input of `window` and its object ids, 0 (no object) on pixels
        without any data, so that nodata and fill inside polygons are not trained on."""
        data = self.reader.read(window)
        objects = self.objects.read(window)[0].astype(np.int32)
        objects[np.isnan(data).all(axis=0)] = 0
        return self.normalizer.apply(data), objects


def augment(x: np.ndarray, y: np.ndarray, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    """Random transpose, horizontal and vertical flips (p = 0.5 each), same for input and labels."""
    if rng.random() < 0.5:
        x, y = x.transpose(0, 2, 1), y.T
    if rng.random() < 0.5:
        x, y = x[:, :, ::-1], y[:, ::-1]
    if rng.random() < 0.5:
        x, y = x[:, ::-1, :], y[::-1, :]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)
