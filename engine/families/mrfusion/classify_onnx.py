"""MRFusion classification with an ONNX model of its dense network: onnxruntime, numpy and
rasterio, no torch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from ...inference.onnxsession import OnnxModel
from ...inference.priors import with_model_priors
from ...io.alignment import ALIGN_METHODS
from ...io.panms import PanMsNormalizer, PanMsPair, PanMsReader, classification_alignment
from ...io.series import SeriesSpec
from ...jobs import Job, check_settings, settings_from
from ...progress import Reporter
from ...reference.classes import ClassTable
from ...wording import counted
from ..mapsteps import classify_to_files, map_outputs, model_input
from .tiles import PATCH_SYMMETRIES, DensePanMsTiles, restore_arrays, symmetric_arrays

FAMILY = "mrfusion"


@dataclass(frozen=True)
class MRFusionClassifyConfig:
    tile_size: int = 256
    device: str = "auto"
    threads: int = 0
    align_ms: str = "model"
    tta: bool = False

    def __post_init__(self) -> None:
        check_settings(self, choices={"align_ms": ("model", *ALIGN_METHODS)})


def read_pair(inputs: dict, align_ms: str = "none") -> PanMsPair:
    return PanMsPair(SeriesSpec.from_json(inputs.get("pan") or {}),
                     SeriesSpec.from_json(inputs.get("ms") or {}), align_ms)


def log_pair(pair: PanMsPair, reporter: Reporter) -> None:
    reporter.info(pair.describe())
    for note in pair.alignment.notes:
        reporter.info(f"reconciled: {note}")


class OnnxDensePanMsPredictor(DensePanMsTiles):
    """`DensePanMsTiles` through the exported dense network (with `tta`, the mean over the 8
    symmetries of every patch pair)."""

    def __init__(self, model: OnnxModel, normalizer: PanMsNormalizer, tile_size: int = 256,
                 tta: bool = False):
        architecture = model.metadata["architecture"]
        patch = int(architecture["patch_size"])
        super().__init__(normalizer, patch, patch // int(architecture["ratio"]), tile_size)
        self.model, self.tta = model, tta

    def load(self, reader: PanMsReader, core: Window) -> dict:
        return self.read_tile(reader, core)

    def probabilities(self, tile: dict) -> np.ndarray:
        return self.model(tile["pan"], tile["ms"], tile["rows"], tile["cols"])[0]

    def infer(self, tile: dict) -> tuple[np.ndarray, np.ndarray]:
        if not self.tta:
            return self.probabilities(tile), tile["valid"]
        total = sum(restore_arrays(self.probabilities(
            symmetric_arrays(tile, self.ms_size, *symmetry)), *symmetry)
            for symmetry in PATCH_SYMMETRIES)
        return (total / len(PATCH_SYMMETRIES)).astype(np.float32), tile["valid"]


def classify_mrfusion_onnx(job: Job, reporter: Reporter) -> dict:
    """Classify every PAN pixel of a PAN + MS pair with MRFusion's dense network exported to
    ONNX."""
    config = settings_from(MRFusionClassifyConfig, job.section("settings"))
    maps = map_outputs(job)
    model_path = model_input(job)
    model = OnnxModel(model_path, FAMILY, config.device, config.threads)
    metadata = model.metadata
    classes = ClassTable.from_json(metadata["classes"])
    pair = read_pair(job.section("inputs"),
                     classification_alignment(config.align_ms, metadata["inputs"], reporter))
    log_pair(pair, reporter)
    pair.check_model(metadata["inputs"], int(metadata["architecture"]["ratio"]), reporter)
    reporter.info(f"classifying with {model_path.name} ({counted(len(classes), 'class')}) "
                  f"with {model.runs_on}, {counted(model.threads, 'thread')}")
    if model.fallback:
        reporter.warning(model.fallback)
    normalizer = PanMsNormalizer.from_json(metadata["normalization"])
    predictor = with_model_priors(
        OnnxDensePanMsPredictor(model, normalizer, config.tile_size, config.tta), metadata,
        reporter)
    with pair.open() as reader:
        normalizer.check_scale(reader, reporter)
        return classify_to_files(predictor, reader, pair.grid, classes, maps, model_path,
                                 FAMILY, reporter)
