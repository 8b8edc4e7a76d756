"""FG-UNET classification with an ONNX model: onnxruntime, numpy and rasterio, no torch."""

from __future__ import annotations

from dataclasses import dataclass

from ...inference.onnxsession import OnnxModel
from ...inference.priors import with_model_priors
from ...inference.tiles import ArrayTiledPredictor
from ...io.inputscale import check_input_scale
from ...io.normalization import PercentileNormalizer
from ...io.series import SeriesSpec, TimeSeries
from ...jobs import Job, settings_from
from ...progress import Reporter
from ...reference.classes import ClassTable
from ...wording import counted
from ..mapsteps import classify_to_files, map_outputs, model_input

FAMILY = "fgunet"
#: FG-UNET pools twice: tile sides are multiples of 4 (`network.FGUNet.size_multiple`).
SIZE_MULTIPLE = 4


@dataclass(frozen=True)
class FGUNetClassifyConfig:
    tile_size: int = 512
    margin: int = 20
    device: str = "auto"
    threads: int = 0
    tta: bool = False


def check_series_matches(metadata: dict, series: TimeSeries, reporter: Reporter) -> None:
    """The rasters must give the dates and bands the model was trained on; their dates are
    put in the model's order."""
    expected = metadata["inputs"]["series"]
    series.match_model(expected, reporter)
    if series.band_names != expected["band_names"]:
        reporter.warning(f"band names differ from training ({', '.join(series.band_names)} vs "
                         f"{', '.join(expected['band_names'])})")
    series.warn_unmasked(expected, reporter)


def classify_fgunet_onnx(job: Job, reporter: Reporter) -> dict:
    """Classify a time series with an FG-UNET model exported to ONNX, tile by tile."""
    config = settings_from(FGUNetClassifyConfig, job.section("settings"))
    maps = map_outputs(job)
    model_path = model_input(job)
    model = OnnxModel(model_path, FAMILY, config.device, config.threads)
    metadata = model.metadata
    classes = ClassTable.from_json(metadata["classes"])
    trained = metadata["inputs"]["series"]
    spec = SeriesSpec.from_json(job.section("inputs").get("series") or {})
    series = TimeSeries(spec.with_gapfill(bool(trained.get("gapfill"))), "INPUT")
    check_series_matches(metadata, series, reporter)
    reporter.info(f"time series: {series.describe()}")
    reporter.info(f"classifying with {model_path.name} ({counted(len(classes), 'class')}) "
                  f"with {model.runs_on}, {counted(model.threads, 'thread')}")
    if model.fallback:
        reporter.warning(model.fallback)
    normalizer = PercentileNormalizer.from_json(metadata["normalization"])
    predictor = with_model_priors(
        ArrayTiledPredictor(model, SIZE_MULTIPLE, normalizer, config.tile_size, config.margin,
                            config.tta), metadata, reporter)
    with series.open() as reader:
        check_input_scale(reader, normalizer, reporter)
        return classify_to_files(predictor, reader, series.grid, classes, maps, model_path,
                                 FAMILY, reporter)
