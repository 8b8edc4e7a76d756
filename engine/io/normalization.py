"""Per-channel percentile normalisation: clip to the low/high percentiles, scale to [0, 1]."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from ..errors import LcfusionError
from .series import SeriesReader


@dataclass(frozen=True)
class PercentileNormalizer:
    """`low` and `high` per channel; missing values (NaN) become 0 after scaling."""

    low: np.ndarray
    high: np.ndarray
    percentiles: tuple[float, float] = (3.0, 97.0)

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Normalise (channels, ...) float32 data in place and return it."""
        shape = (-1,) + (1,) * (data.ndim - 1)
        low = self.low.reshape(shape).astype(np.float32)
        span = (self.high - self.low).reshape(shape).astype(np.float32)
        data -= low
        data /= span
        # clipped to 0-1 with NaN as 0 (fmax takes the number of a NaN pair) in place, with
        # no mask as large as the data beside it
        np.fmax(data, 0.0, out=data)
        np.fmin(data, 1.0, out=data)
        return data

    def to_json(self) -> dict:
        return {"method": "percentile", "percentiles": list(self.percentiles),
                "low": self.low.tolist(), "high": self.high.tolist()}

    @classmethod
    def from_json(cls, data: dict) -> PercentileNormalizer:
        """The stored form (`to_json`); ValueError when it is not one."""
        low = np.asarray(data["low"], dtype=np.float64)
        high = np.asarray(data["high"], dtype=np.float64)
        percentiles = tuple(float(p) for p in data.get("percentiles", (3.0, 97.0)))
        if low.ndim != 1 or low.shape != high.shape:
            raise ValueError("the low and high values are not two lists of one length")
        if len(percentiles) != 2 or not 0 <= percentiles[0] < percentiles[1] <= 100:
            raise ValueError(f"percentiles {list(percentiles)} are not a range within 0-100")
        return cls(low, high, percentiles)

    @classmethod
    def fit(cls, reader: SeriesReader, rng: np.random.Generator,
            percentiles: tuple[float, float] = (3.0, 97.0), max_pixels: int = 250_000,
            block: int = 128) -> PercentileNormalizer:
        """Percentiles of a random sample of blocks (bounded memory whatever the raster size);
        more blocks are read while some channel has no valid value yet."""
        series = reader.series
        wanted = max(1, max_pixels // (block * block))
        samples, seen = [], np.zeros(series.n_channels, dtype=bool)
        for taken, window in enumerate(shuffled_blocks(series.width, series.height, block,
                                                       rng)):
            if taken >= wanted and seen.all():
                break
            data = reader.read(window).reshape(series.n_channels, -1)
            seen |= np.isfinite(data).any(axis=1)
            samples.append(data)
        values = np.concatenate(samples, axis=1)
        empty = np.flatnonzero(~seen)
        if empty.size:
            raise LcfusionError(
                f"{'channel' if empty.size == 1 else 'channels'} "
                f"{', '.join(str(i + 1) for i in empty[:10])} "
                f"{'holds' if empty.size == 1 else 'hold'} no valid value "
                "anywhere (nodata everywhere); remove the empty dates or bands",
                reader.series.parameter)
        low = np.nanpercentile(values, percentiles[0], axis=1)
        high = np.nanpercentile(values, percentiles[1], axis=1)
        flat = high <= low
        high = np.where(flat, low + 1.0, high)
        return cls(low.astype(np.float64), high.astype(np.float64), percentiles)


def shuffled_blocks(width: int, height: int, block: int, rng: np.random.Generator
                    ) -> Iterator[Window]:
    """The `block` x `block` windows tiling a width x height raster (cut at its edges), in a
    random order of `rng`."""
    starts = [(r, c) for r in range(0, height, block) for c in range(0, width, block)]
    for index in rng.permutation(len(starts)):
        row, col = starts[index]
        yield Window(col, row, min(block, width - col), min(block, height - row))
