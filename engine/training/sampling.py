"""Training patches: class-balanced (or class- and polygon-balanced) sampling of labelled
pixels and reading of patches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.windows import Window

from ..errors import LcfusionError
from ..io.normalization import PercentileNormalizer
from ..io.pack import Boxes, WindowReader


def polygon_balanced(classes: np.ndarray, objects: np.ndarray, count: int,
                     rng: np.random.Generator) -> np.ndarray:
    """`count` indices into `classes`: a class uniformly among those present, then one of its
    polygons (`objects`: each pixel's polygon id) uniformly, then one of its pixels
    uniformly."""
    order = np.lexsort((objects, classes))
    sorted_classes, sorted_objects = classes[order], objects[order]
    starts = np.flatnonzero(np.r_[True, (sorted_classes[1:] != sorted_classes[:-1])
                                  | (sorted_objects[1:] != sorted_objects[:-1])])
    lengths = np.diff(np.r_[starts, order.size])
    _, first, polygons = np.unique(sorted_classes[starts], return_index=True, return_counts=True)
    picked = rng.integers(0, first.size, size=count)
    segment = first[picked] + (rng.random(count) * polygons[picked]).astype(np.int64)
    return order[starts[segment] + (rng.random(count) * lengths[segment]).astype(np.int64)]


class ClassBalancedPatchSampler:
    """Top-left corners of patches: a class uniformly among those present, then a labelled
    pixel of that class (with `objects`, the pixels' polygon ids: one of the class's polygons
    uniformly, then one of its pixels), shifted by up to `max_shift` pixels, the patch clipped
    inside the image."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, classes: np.ndarray, patch: int,
                 max_shift: int, height: int, width: int, objects: np.ndarray | None = None):
        self.patch, self.max_shift = patch, max_shift
        self.height, self.width = height, width
        self.classes, self.objects = classes, objects
        self.by_class = [np.flatnonzero(classes == c) for c in np.unique(classes)]
        self.rows, self.cols = rows, cols

    def _pixels(self, count: int, rng: np.random.Generator) -> Iterator[int]:
        """The labelled pixels (indices) the patches are drawn around, lazily: each pixel of
        the class-balanced draw comes from the generator after the previous patch's shift."""
        if self.objects is not None:
            yield from polygon_balanced(self.classes, self.objects, count, rng)
            return
        for which in rng.integers(0, len(self.by_class), size=count):
            yield self.by_class[which][rng.integers(0, self.by_class[which].size)]

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """`count` x 2 array of (row, col) top-left corners."""
        corners = np.empty((count, 2), dtype=np.int64)
        for i, pixel in enumerate(self._pixels(count, rng)):
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


@dataclass(frozen=True)
class ChannelPerturbation:
    """Augmentation of a normalised time-series input's values: each channel's gain
    1 + N(0, `jitter`) and offset N(0, `jitter`) (atmosphere, sensor and phenology differ
    between scenes and years), and each date dropped (set to 0, what a normalised missing
    value is) with probability `date_dropout`, never every date (clouds and gaps)."""

    jitter: float
    date_dropout: float
    bands_per_date: int

    @property
    def active(self) -> bool:
        return self.jitter > 0 or self.date_dropout > 0

    def check(self) -> None:
        """Errors naming the setting (a family's JITTER and DATE_DROPOUT parameters)."""
        if self.jitter < 0:
            raise LcfusionError(f"must be 0 or more, got {self.jitter}", "JITTER")
        if not 0 <= self.date_dropout < 1:
            raise LcfusionError(f"must lie in [0, 1), got {self.date_dropout}", "DATE_DROPOUT")

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """`x` (channels, ...) with channels date-major, changed in place and returned."""
        channels = x.shape[0]
        view = x.reshape(channels, -1)
        if self.jitter > 0:
            gain = 1.0 + self.jitter * rng.standard_normal(channels, dtype=np.float32)
            offset = self.jitter * rng.standard_normal(channels, dtype=np.float32)
            view *= gain[:, None]
            view += offset[:, None]
        if self.date_dropout > 0:
            dates = channels // self.bands_per_date
            dropped = rng.random(dates) < self.date_dropout
            if dropped.all():
                dropped[rng.integers(dates)] = False
            view[np.repeat(dropped, self.bands_per_date)] = 0.0
        return x


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
