"""The Random Forest's input layers (its source's stack of channels on one grid) and its
classification settings, without torch or scikit-learn (the ONNX classification reads them
too)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import LcfusionError
from ...io.alignment import ALIGN_METHODS
from ...io.indices import IndexConfig
from ...io.inputscale import check_input_scale
from ...io.normalization import PercentileNormalizer
from ...io.panms import PanMsPair, classification_alignment
from ...io.rasters import Grid
from ...io.series import SeriesSpec, TimeSeries
from ...io.sources import SourceFeatures
from ...jobs import check_settings
from ...progress import Reporter
from ..twinns.inputs import inputs_for_model as twinns_inputs_for_model
from .pixelfeatures import ChannelStack, PanMsStack, PixelFeatures, SeriesStack

#: Pixels per source sampled at training for the ranges the units check compares with.
RANGE_PIXELS = 65_536

SOURCE_LABELS = {"s2": "a Sentinel-2 time series", "s1s2": "Sentinel-1 + Sentinel-2 time series",
                 "panms": "a PAN + MS pair"}
#: The job inputs each source needs, with the parameter that gives them.
SOURCE_INPUTS = {"s2": {"s2": ("S2", "the Sentinel-2 rasters")},
                 "s1s2": {"s1": ("S1", "the Sentinel-1 rasters"),
                          "s2": ("S2", "the Sentinel-2 rasters")},
                 "panms": {"pan": ("PAN", "the PAN raster"), "ms": ("MS", "the MS raster")}}

@dataclass(frozen=True)
class RandomForestClassifyConfig:
    tile_size: int = 128
    align_ms: str = "model"
    threads: int = 0

    def __post_init__(self) -> None:
        check_settings(self, non_negative=("threads",),
                       choices={"align_ms": ("model", *ALIGN_METHODS)})


def series_channels(label: str, source: SourceFeatures) -> list[str]:
    """Channel names of a series as the features see them: ``S2 2021-01-15 NDVI``."""
    return [f"{label} {date or f'date {i + 1}'} {name}"
            for i, date in enumerate(source.series.dates) for name in source.channel_names()]


@dataclass
class ForestInputs:
    """The chosen source's layers as one stack of channels on one grid."""

    source: str
    series: list[tuple[str, SourceFeatures]] = field(default_factory=list)
    pair: PanMsPair | None = None
    indices: IndexConfig | None = None
    s1_scale: str = "db"

    @property
    def grid(self) -> Grid:
        return self.pair.grid if self.pair else self.series[-1][1].series.grid

    def channel_names(self) -> list[str]:
        if self.pair:
            return ["PAN"] + [f"MS {name}" for name in self.pair.ms.band_names]
        return [name for label, source in self.series for name in series_channels(label,
                                                                                  source)]

    def describe(self) -> list[str]:
        if self.pair:
            return [self.pair.describe(), *(f"reconciled: {note}"
                                            for note in self.pair.alignment.notes)]
        names = {"S1": "Sentinel-1", "S2": "Sentinel-2"}
        return [f"{names[label]}: {source.series.describe()}; features per date: "
                f"{', '.join(source.channel_names())}" for label, source in self.series]

    def to_json(self) -> dict:
        if self.pair:
            return {"source": self.source, **self.pair.to_json()}
        entries = {label.lower(): {**source.series.to_json(), "features": source.channel_names()}
                   for label, source in self.series}
        scale = {"s1_scale": self.s1_scale} if self.source == "s1s2" else {}
        return {"source": self.source, **entries,
                "indices": self.indices.to_json() if self.indices else None, **scale}

    def scale_readers(self, stack: ChannelStack) -> dict[str, tuple[Any, np.ndarray | None]]:
        """Each source's reader of the open `stack` by its name, with the channels whose
        units show (the bands, not the indices; None: all)."""
        if isinstance(stack, PanMsStack):
            return {"pan": (stack.reader.pan, None), "ms": (stack.reader.ms, None)}
        return {label.lower(): (reader, reader.series.scaled_channels())
                for (label, _), reader in zip(self.series, stack.readers, strict=True)}

    def input_ranges(self, stack: ChannelStack, rng: np.random.Generator) -> dict | None:
        """The 3rd-97th percentile range of each channel of each source, for the units check
        at classification (`check_scales`; the forest itself scales nothing); None when a
        channel has no valid value anywhere."""
        try:
            return {name: PercentileNormalizer.fit(reader, rng, max_pixels=RANGE_PIXELS
                                                   ).to_json()
                    for name, (reader, _) in self.scale_readers(stack).items()}
        except LcfusionError:
            return None

    def check_scales(self, stack: ChannelStack, ranges: dict | None,
                     reporter: Reporter) -> None:
        """Warn when a source is on other units than in training (a forest's thresholds then
        split nothing: the map would be wrong without a word); models without `ranges`
        (trained before the check) are not checked."""
        if not ranges:
            return
        for name, (reader, channels) in self.scale_readers(stack).items():
            if name not in ranges:
                continue
            try:
                normalizer = PercentileNormalizer.from_json(ranges[name])
                fits = normalizer.low.shape == (reader.series.n_channels,)
            except (AttributeError, KeyError, TypeError, ValueError):
                fits = False
            if not fits:
                raise LcfusionError(f"the model file's input ranges of {name.upper()} are not "
                                    "those of its inputs: the file was altered; train the "
                                    "model again", "MODEL")
            check_input_scale(reader, normalizer, reporter, channels)

    @contextlib.contextmanager
    def open(self) -> Iterator[ChannelStack]:
        if self.pair:
            with self.pair.open() as reader:
                yield PanMsStack(reader)
            return
        with contextlib.ExitStack() as stack:
            yield SeriesStack([stack.enter_context(source.open()) for _, source in self.series])


def require_inputs(inputs: dict, source: str, why: str) -> None:
    """A clear error naming the parameter when the source's layers are not given."""
    for key, (parameter, what) in SOURCE_INPUTS[source].items():
        if not (inputs.get(key) or {}).get("paths"):
            raise LcfusionError(f"{why} {SOURCE_LABELS[source]}: give {what}", parameter)


def inputs_for_model(inputs: dict, metadata: dict, reporter: Reporter,
                     align_ms: str = "model") -> ForestInputs:
    """The job's layers for the model's source, read as in training (indices, backscatter
    scale, gap-filling), checked against what the model was trained on."""
    trained = metadata["inputs"]
    source = trained["source"]
    require_inputs(inputs, source, "the model was trained on")
    if source == "panms":
        pair = PanMsPair(SeriesSpec.from_json(inputs["pan"]), SeriesSpec.from_json(inputs["ms"]),
                         classification_alignment(align_ms, trained, reporter))
        pair.check_model(trained, int(metadata["architecture"]["ratio"]), reporter)
        return ForestInputs("panms", pair=pair)
    indices = IndexConfig.from_json(trained["indices"]) if trained.get("indices") else None
    if source == "s2":
        spec = SeriesSpec.from_json(inputs["s2"]).with_gapfill(bool(trained["s2"]["gapfill"]))
        s2 = SourceFeatures(TimeSeries(spec, "S2"), indices)
        s2.series.match_model(trained["s2"], reporter, "Sentinel-2")
        s2.series.warn_unmasked(trained["s2"], reporter)
        return ForestInputs("s2", [("S2", s2)], indices=indices)
    both = twinns_inputs_for_model(inputs, metadata, reporter)
    return ForestInputs("s1s2", [("S1", both.s1), ("S2", both.s2)], indices=indices,
                        s1_scale=trained["s1_scale"])


def model_features(metadata: dict, inputs: ForestInputs) -> PixelFeatures:
    """The model's pixel features of `inputs`' channels; their count must be the model's."""
    architecture = metadata["architecture"]
    features = PixelFeatures(architecture["features"], int(architecture["patch_size"]))
    count = features.count(len(inputs.channel_names()))
    if count != int(architecture["n_features"]):
        raise LcfusionError(f"the layers give {count} features but the model expects "
                            f"{architecture['n_features']}; give the same layers as for "
                            "training", "MODEL")
    return features
