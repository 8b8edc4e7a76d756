"""A warning when a classification's input is on another scale than the model's training data
(S1 backscatter in dB x 10000 for a model trained on dB, S2 reflectance 0-1 for one trained on
0-10000): the normalisation would clip nearly everything and the map would be wrong.

A few random blocks of the input are read, as `PercentileNormalizer.fit` samples, and per
channel the 3rd-97th percentile span and the median are compared with the training range the
model stores (the normaliser's low and high)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..progress import FollowerReporter, Reporter
from ..wording import counted
from .normalization import PercentileNormalizer, shuffled_blocks
from .rasters import MIN_BLOCK_CACHE, block_cache_at_most

#: A channel is off scale when its span is this many times wider or narrower than in training
#: (a change of unit is a factor of 100 or more: x 10000, 0-1 against 0-10000, linear power
#: against dB; another date or place of the same unit stays well within it) ...
SPAN_RATIO = 20.0
#: ... or when its median lies this many training spans outside the training range ...
MEDIAN_SPANS = 10.0
#: ... or when its range and the training range do not overlap and the spans differ by this
#: factor (linear power against dB on Flanders S1: 254 of 318 channels off scale with it, 160
#: without; a cloudy Slovenian scene against a clear one: 2 or 3 of 13 bands, the blue ones).
DISJOINT_RATIO = 5.0
#: The share of an input's checked channels that must be off scale for a warning: a change of
#: unit moves every band, clouds or another season only some.
OFF_SHARE = 0.5
#: Blocks of BLOCK x BLOCK pixels read, and the values per channel kept for the percentiles.
BLOCKS, BLOCK, MAX_VALUES = 4, 64, 4096
#: A channel with fewer valid values in the sample is not checked.
MIN_VALUES = 50


@dataclass(frozen=True)
class ChannelScale:
    """The input's 3rd and 97th percentiles and median of one channel, and the training range."""

    channel: int
    low: float
    high: float
    median: float
    trained_low: float
    trained_high: float

    @property
    def ratio(self) -> float:
        """The input's span over the training span (0 for a constant input channel)."""
        return (self.high - self.low) / (self.trained_high - self.trained_low)

    @property
    def median_spans(self) -> float:
        """How many training spans the median lies outside the training range (0 inside)."""
        outside = max(self.trained_low - self.median, self.median - self.trained_high, 0.0)
        return outside / (self.trained_high - self.trained_low)

    @property
    def disjoint(self) -> bool:
        """The input's range and the training range do not overlap."""
        return self.high < self.trained_low or self.low > self.trained_high

    @property
    def off_scale(self) -> bool:
        ratio = self.ratio
        differs = max(ratio, 1 / ratio) if ratio > 0 else 0.0
        return (differs > SPAN_RATIO or self.median_spans > MEDIAN_SPANS
                or (self.disjoint and differs > DISJOINT_RATIO))


def sample_values(reader: Any, rng: np.random.Generator) -> np.ndarray:
    """(channels, values) of `BLOCKS` random blocks of the reader's raster (NaN = no data),
    at most `MAX_VALUES` values per channel. GDAL's block cache is kept small meanwhile: each
    window is read once, and the file blocks it decodes (a whole block of every band of every
    date, for a few pixels) would otherwise stay, up to 5 % of the RAM."""
    series = reader.series
    windows = itertools.islice(shuffled_blocks(series.width, series.height, BLOCK, rng), BLOCKS)
    with block_cache_at_most(MIN_BLOCK_CACHE):
        values = np.concatenate([reader.read(window).reshape(series.n_channels, -1)
                                 for window in windows], axis=1)
    if values.shape[1] > MAX_VALUES:
        values = values[:, np.sort(rng.choice(values.shape[1], MAX_VALUES, replace=False))]
    return values


def channel_scales(values: np.ndarray, normalizer: PercentileNormalizer,
                   checked: np.ndarray | None = None) -> list[ChannelScale]:
    """The scales of the channels with enough valid values (and `checked`, when given)."""
    usable = np.isfinite(values).sum(axis=1) >= MIN_VALUES
    if checked is not None:
        usable &= checked
    if not usable.any():  # numpy's nanpercentile loses the percentile axis on no rows
        return []
    first, last = normalizer.percentiles
    lows, medians, highs = np.nanpercentile(values[usable].astype(np.float64),
                                            (first, 50, last), axis=1)
    return [ChannelScale(int(channel), float(low), float(high), float(median),
                         float(normalizer.low[channel]), float(normalizer.high[channel]))
            for channel, low, median, high in zip(np.flatnonzero(usable), lows, medians, highs,
                                                  strict=True)]


def scale_warning(scales: list[ChannelScale], parameter: str,
                  label: Callable[[int], str]) -> str | None:
    """The warning for an input whose channels are mostly off scale, else None (`label`
    names a channel)."""
    off = [scale for scale in scales if scale.off_scale]
    if not scales or len(off) < OFF_SHARE * len(scales):
        return None
    typical = sorted(off, key=lambda scale: scale.ratio)[len(off) // 2]
    ratio = typical.ratio
    if ratio > 1:
        how = f"about {float(f'{ratio:.2g}'):,.0f} times wider than"
    elif ratio > 0:
        how = f"about {float(f'{1 / ratio:.2g}'):,.0f} times narrower than"
    else:
        how = "constant, unlike"
    return (f"{parameter}: the input looks like it is on another scale than the model's "
            f"training data in {len(off)} of {counted(len(scales), 'channel')}: "
            f"{label(typical.channel)}, for example, spans {typical.low:.4g} to {typical.high:.4g} "
            f"(3rd to 97th percentile, median {typical.median:.4g}), {how} the training range "
            f"{typical.trained_low:.4g} to {typical.trained_high:.4g}. Check the units of the "
            "layers against the training data: dB or linear power? dB x 10000? reflectance 0-1 "
            "or 0-10000? The map may be wrong")


def check_input_scale(reader: Any, normalizer: PercentileNormalizer, reporter: Reporter,
                      checked: np.ndarray | None = None) -> None:
    """Warn when `reader`'s input (a reader with `read(window)` and `series` as
    `PercentileNormalizer.fit` takes, whose `channel_label` names a channel) is on another
    scale than the data `normalizer` was fit on; `checked`: the channels to compare
    (spectral indices do not change with the scale). A rank other than 0 of a classification
    on a compute target checks nothing: rank 0 warns once for all."""
    if isinstance(reporter, FollowerReporter):
        return
    values = sample_values(reader, np.random.default_rng(0))
    message = scale_warning(channel_scales(values, normalizer, checked),
                            reader.series.parameter, reader.series.channel_label)
    if message:
        reporter.warning(message)
