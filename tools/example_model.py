"""Writes resources/models/fgunet_chain.model3: train FG-UNET -> classify -> evaluate.

Run it (headless QGIS, the plugin on QGIS_PLUGINPATH) after changing the algorithms' parameters;
the file opens in the graphical modeler and runs through qgis_process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Qt writes an element's attributes in its hash order: a fixed seed keeps the file the same
# from one run to the next, so a regenerated chain differs only where the chain does.
os.environ.setdefault("QT_HASH_SEED", "0")

from qgis.core import (  # noqa: E402
    QgsApplication,
    QgsProcessing,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterField,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterVectorLayer,
)
from qgis.PyQt.QtCore import QPointF  # noqa: E402

TARGET = Path(__file__).resolve().parents[1] / "resources" / "models" / "fgunet_chain.model3"


def parameter(model: QgsProcessingModelAlgorithm, definition, x: float, y: float) -> None:
    component = QgsProcessingModelParameter(definition.name())
    component.setPosition(QPointF(x, y))
    model.addModelParameter(definition, component)


def source(name: str) -> list[QgsProcessingModelChildParameterSource]:
    return [QgsProcessingModelChildParameterSource.fromModelParameter(name)]


def output_of(child_id: str, name: str) -> list[QgsProcessingModelChildParameterSource]:
    return [QgsProcessingModelChildParameterSource.fromChildOutput(child_id, name)]


def child(model: QgsProcessingModelAlgorithm, child_id: str, algorithm: str, description: str,
          sources: dict[str, list], outputs: dict[str, tuple[str, str]],
          x: float, y: float) -> QgsProcessingModelChildAlgorithm:
    step = QgsProcessingModelChildAlgorithm(algorithm)
    step.setChildId(child_id)
    step.setDescription(description)
    step.setPosition(QPointF(x, y))
    for name, value in sources.items():
        step.addParameterSources(name, value)
    for definition in QgsApplication.processingRegistry().algorithmById(
            algorithm).parameterDefinitions():
        if definition.isDestination() or definition.name() in sources:
            continue
        if definition.defaultValue() is not None:
            step.addParameterSources(definition.name(), [
                QgsProcessingModelChildParameterSource.fromStaticValue(
                    definition.defaultValue())])
    model_outputs = {}
    for name, (child_output, text) in outputs.items():
        output = QgsProcessingModelOutput(name, text)
        output.setChildId(step.childId())
        output.setChildOutputName(child_output)
        output.setPosition(QPointF(x + 160, y + 60))
        model_outputs[name] = output
    step.setModelOutputs(model_outputs)
    model.addChildAlgorithm(step)
    return step


def build() -> QgsProcessingModelAlgorithm:
    model = QgsProcessingModelAlgorithm("Train FG-UNET, classify and evaluate",
                                        "Land Cover Fusion examples")
    model.setHelpContent({"ALG_DESC": (
        "Trains FG-UNET on a Sentinel-2 time series and training polygons, classifies the "
        "series with the new model, and evaluates the class map against independent evaluation "
        "polygons (give other polygons than the training ones for an honest accuracy).")})
    parameter(model, QgsProcessingParameterMultipleLayers(
        "series", "Sentinel-2 time series (in date order)",
        QgsProcessing.SourceType.TypeRaster), 120, 60)
    parameter(model, QgsProcessingParameterVectorLayer(
        "training", "Training polygons", [QgsProcessing.SourceType.TypeVectorPolygon]), 120, 140)
    parameter(model, QgsProcessingParameterField(
        "class_field", "Class field", parentLayerParameterName="training"), 120, 220)
    parameter(model, QgsProcessingParameterField(
        "name_field", "Class name field", parentLayerParameterName="training", optional=True),
        120, 300)
    parameter(model, QgsProcessingParameterField(
        "color_field", "Class colour field (#rrggbb)", parentLayerParameterName="training",
        optional=True), 120, 380)
    parameter(model, QgsProcessingParameterVectorLayer(
        "evaluation", "Evaluation polygons", [QgsProcessing.SourceType.TypeVectorPolygon]),
        120, 460)
    parameter(model, QgsProcessingParameterNumber(
        "epochs", "Epochs", type=QgsProcessingParameterNumber.Type.Integer, defaultValue=10,
        minValue=1), 120, 540)
    parameter(model, QgsProcessingParameterNumber(
        "patches_per_epoch", "Training patches per epoch",
        type=QgsProcessingParameterNumber.Type.Integer, defaultValue=256, minValue=1), 120, 620)
    train = child(model, "train", "lcfusion:trainfgunet", "Train FG-UNET",
                  {"INPUT": source("series"), "REFERENCE": source("training"),
                   "CLASS_FIELD": source("class_field"), "NAME_FIELD": source("name_field"),
                   "COLOR_FIELD": source("color_field"), "EPOCHS": source("epochs"),
                   "PATCHES_PER_EPOCH": source("patches_per_epoch")},
                  {"model": ("OUTPUT_MODEL", "Trained model"),
                   "training_report": ("OUTPUT_REPORT", "Training report")}, 420, 120)
    classify = child(model, "classify", "lcfusion:classifyfgunet", "Classify with FG-UNET",
                     {"INPUT": source("series"),
                      "MODEL": output_of(train.childId(), "OUTPUT_MODEL")},
                     {"land_cover": ("OUTPUT", "Land cover map")}, 420, 260)
    child(model, "evaluate", "lcfusion:evaluate", "Evaluate the map",
          {"INPUT": output_of(classify.childId(), "OUTPUT"), "REFERENCE": source("evaluation"),
           "CLASS_FIELD": source("class_field")},
          {"evaluation_report": ("OUTPUT_HTML", "Evaluation report"),
           "confusion_matrix": ("OUTPUT_CSV", "Confusion matrix (CSV)")}, 420, 400)
    return model


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = QgsApplication([], False)
    app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    from lcfusion.plugin.provider import LcfusionProvider

    provider = LcfusionProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    model = build()
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    if not model.toFile(str(TARGET)):
        print(f"could not write {TARGET}", file=sys.stderr)
        return 1
    print(f"written {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
