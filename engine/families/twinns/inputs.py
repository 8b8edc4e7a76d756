"""TWINNS's S1 + S2 inputs and its classification settings, without torch (the ONNX
classification reads them too)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ...errors import LcfusionError
from ...io.indices import IndexConfig, resolve_indices
from ...io.inputscale import check_input_scale
from ...io.normalization import PercentileNormalizer
from ...io.rasters import crs_name, same_crs
from ...io.series import SeriesSpec, TimeSeries
from ...io.sources import FeatureReader, SourceFeatures
from ...progress import Reporter

SOURCE_NAMES = {"s1": "Sentinel-1", "s2": "Sentinel-2"}


#: Patches per forward pass. On the CPU, batches of 128 to 2,048 classify equally fast (the
#: bench's model: 2.5 to 3.1 kpx/s on 2 threads, 1.5 to 1.6 on one), and 256 hold an eighth of
#: 2,048's activations; a GPU needs large batches to be kept busy.
CPU_BATCH, GPU_BATCH = 256, 2048


def patch_batch(on_gpu: bool) -> int:
    """Patches per forward pass on a GPU or on the CPU."""
    return GPU_BATCH if on_gpu else CPU_BATCH


@dataclass(frozen=True)
class TWINNSClassifyConfig:
    tile_size: int = 128
    device: str = "auto"
    threads: int = 0
    tta: bool = False


@dataclass
class TWINNSInputs:
    """The S1 and S2 features on one grid."""

    s1: SourceFeatures
    s2: SourceFeatures

    @classmethod
    def from_job(cls, inputs: dict, indices: IndexConfig | None, s1_scale: str,
                 gapfill: dict[str, bool] | None = None) -> TWINNSInputs:
        """`gapfill` (per source, when given) replaces the job's choice: classification
        applies the model's."""
        specs = {}
        for key in ("s1", "s2"):
            spec = SeriesSpec.from_json(inputs.get(key) or {})
            specs[key] = spec if gapfill is None else spec.with_gapfill(gapfill[key])
        s1 = TimeSeries(specs["s1"], "S1")
        s2 = TimeSeries(specs["s2"], "S2")
        if not same_crs(s1.grid.crs_wkt, s2.grid.crs_wkt):
            raise LcfusionError(
                f"CRS mismatch: the Sentinel-1 layers are in {crs_name(s1.grid.crs_wkt)} but the "
                f"Sentinel-2 layers in {crs_name(s2.grid.crs_wkt)}; warp them onto one grid",
                "S1")
        if not s1.grid.same_as(s2.grid):
            raise LcfusionError(
                f"the Sentinel-1 layer {s1.infos[0].path.name} ({s1.grid.describe()}) is not on "
                f"the grid of the Sentinel-2 layer {s2.infos[0].path.name} "
                f"({s2.grid.describe()}); resample the S1 layers onto the S2 grid (same extent, "
                "pixel size and size) first", "S1")
        return cls(SourceFeatures(s1, None, s1_scale), SourceFeatures(s2, indices))

    def with_indices(self, config: IndexConfig | None, reporter: Reporter) -> TWINNSInputs:
        """The same layers with the indices of `config` that the S2 bands allow added to S2
        (see `resolve_indices`)."""
        indices = resolve_indices(config, self.s2.series.band_names, reporter)
        return replace(self, s2=SourceFeatures(self.s2.series, indices))

    @property
    def grid(self):
        return self.s2.series.grid

    def describe(self) -> list[str]:
        return [f"{SOURCE_NAMES[k]}: {s.series.describe()}; features per date: "
                f"{', '.join(s.channel_names())}" for k, s in (("s1", self.s1), ("s2", self.s2))]

    def to_json(self) -> dict:
        return {k: {**s.series.to_json(), "features": s.channel_names()}
                for k, s in (("s1", self.s1), ("s2", self.s2))}

    def sort_by_date(self, reporter: Reporter) -> None:
        """For training: each source's dates from the earliest to the latest."""
        self.s1.series.sort_by_date(reporter)
        self.s2.series.sort_by_date(reporter)


def inputs_for_model(job_inputs: dict, metadata: dict, reporter: Reporter) -> TWINNSInputs:
    """The job's S1 and S2 layers read as the model was trained (indices, backscatter scale,
    gap-filling), with the dates and bands per source the model expects, in its date order."""
    trained = metadata["inputs"]
    indices = IndexConfig.from_json(trained["indices"]) if trained.get("indices") else None
    inputs = TWINNSInputs.from_job(job_inputs, indices, trained["s1_scale"],
                                   gapfill={k: bool(trained[k].get("gapfill"))
                                            for k in ("s1", "s2")})
    for key, source in (("s1", inputs.s1), ("s2", inputs.s2)):
        source.series.match_model(trained[key], reporter, SOURCE_NAMES[key])
        source.series.warn_unmasked(trained[key], reporter)
    return inputs


def check_scales(readers: list[FeatureReader], normalizers: list[PercentileNormalizer],
                 reporter: Reporter) -> None:
    """Warn when S1 or S2 is on another scale than in training (indices left out)."""
    for reader, normalizer in zip(readers, normalizers, strict=True):
        check_input_scale(reader, normalizer, reporter, reader.series.scaled_channels())
