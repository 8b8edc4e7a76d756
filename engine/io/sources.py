"""Several time series on one grid as model inputs: per-date features (S2 indices, S1 in dB)
and their normalisation (the patches TWINNS trains on and predicts from are in
`families.twinns.patches`).

Patches have an odd side p and are centred on their pixel; outside the rasters the images are
mirrored about their edge pixels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from ..errors import LcfusionError
from .indices import IndexConfig, add_indices
from .normalization import PercentileNormalizer
from .series import SeriesReader, TimeSeries, date_channel_label

S1_SCALES = ("db", "linear")


class SourceFeatures:
    """A time series and the per-date features the model sees: the bands, plus spectral
    indices (`indices`), or backscatter converted from linear power to dB (`s1_scale`)."""

    def __init__(self, series: TimeSeries, indices: IndexConfig | None = None,
                 s1_scale: str = "db"):
        if s1_scale not in S1_SCALES:
            raise LcfusionError(f"unknown backscatter scale {s1_scale!r}; use db or linear",
                                "S1_SCALE")
        self.series, self.indices, self.s1_scale = series, indices, s1_scale
        self.index_bands = indices.band_numbers(series.band_names) if indices else {}
        self.channels = series.bands_per_date + (len(indices.indices) if indices else 0)

    @property
    def n_dates(self) -> int:
        return self.series.n_dates

    @property
    def n_channels(self) -> int:
        return self.n_dates * self.channels

    @property
    def height(self) -> int:
        return self.series.height

    @property
    def width(self) -> int:
        return self.series.width

    @property
    def parameter(self) -> str:
        return self.series.parameter

    def channel_names(self) -> list[str]:
        return self.series.band_names + (list(self.indices.indices) if self.indices else [])

    def channel_label(self, channel: int) -> str:
        """How messages name a channel: its band or index and date ("NDVI of 2021-06-01")."""
        return date_channel_label(self.channel_names(), self.series.dates, channel)

    def scaled_channels(self) -> np.ndarray:
        """Which channels follow the scale of the layers: the bands, not the indices."""
        return np.tile(np.arange(self.channels) < self.series.bands_per_date, self.n_dates)

    @contextlib.contextmanager
    def open(self) -> Iterator[FeatureReader]:
        with self.series.open() as reader:
            yield FeatureReader(self, reader)


@dataclass
class FeatureReader:
    """Reads (dates x features, rows, cols) float32 windows; NaN where data are missing."""

    series: SourceFeatures
    reader: SeriesReader

    def read(self, window: Window) -> np.ndarray:
        data = self.reader.read(window)
        source = self.series
        if source.s1_scale == "linear":
            with np.errstate(divide="ignore", invalid="ignore"):
                data = np.where(data > 0, 10 * np.log10(data), np.nan).astype(np.float32)
        if source.indices:
            by_date = data.reshape(source.n_dates, source.series.bands_per_date,
                                   *data.shape[1:])
            data = add_indices(by_date, source.indices, source.index_bands).reshape(
                source.n_channels, *data.shape[1:])
        return data


def fit_normalizers(readers: Sequence[FeatureReader], rng: np.random.Generator
                    ) -> list[PercentileNormalizer]:
    return [PercentileNormalizer.fit(reader, rng) for reader in readers]
