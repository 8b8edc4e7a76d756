"""Random Forest classification with an ONNX model: onnxruntime, numpy and rasterio, no
scikit-learn or torch."""

from __future__ import annotations

import numpy as np

from ...inference.onnxsession import OnnxModel
from ...inference.priors import with_model_priors
from ...jobs import Job, settings_from
from ...progress import Reporter
from ...reference.classes import ClassTable
from ...wording import counted
from ..mapsteps import classify_to_files, map_outputs, model_input
from .inputs import RandomForestClassifyConfig, inputs_for_model, model_features
from .pixelfeatures import ForestTilePredictor

FAMILY = "randomforest"


class OnnxForest:
    """What `ForestTilePredictor` asks of a forest, answered by the exported graph (which
    replaces missing values itself)."""

    def __init__(self, model: OnnxModel, n_classes: int):
        self.model, self.n_classes = model, n_classes
        self.n_features = int(model.session.get_inputs()[0].shape[1])

    def fill_missing(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float32)

    def predict_proba(self, x: np.ndarray, threads: int = 1) -> np.ndarray:
        return self.model(x)


def classify_randomforest_onnx(job: Job, reporter: Reporter) -> dict:
    """Classify the model's source with a Random Forest exported to ONNX, tile by tile."""
    config = settings_from(RandomForestClassifyConfig, job.section("settings"))
    maps = map_outputs(job)
    model_path = model_input(job)
    model = OnnxModel(model_path, FAMILY, "cpu", config.threads)
    metadata = model.metadata
    classes = ClassTable.from_json(metadata["classes"])
    inputs = inputs_for_model(job.section("inputs"), metadata, reporter, config.align_ms)
    for line in inputs.describe():
        reporter.info(line)
    features = model_features(metadata, inputs)
    reporter.info(f"classifying with {model_path.name} ({counted(len(classes), 'class')}, "
                  f"{features.kind} features) with {model.runs_on}, "
                  f"{counted(model.threads, 'thread')}")
    predictor = with_model_priors(
        ForestTilePredictor(OnnxForest(model, len(classes)), features, config.tile_size,
                            model.threads), metadata, reporter)
    with inputs.open() as stack:
        inputs.check_scales(stack, metadata.get("input_ranges"), reporter)
        return classify_to_files(predictor, stack, inputs.grid, classes, maps, model_path,
                                 FAMILY, reporter)
