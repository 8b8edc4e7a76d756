"""ONNX through Processing: Export a model to ONNX, then classify with the .onnx file; the
checks name the MODEL parameter for a foreign file and ask only for onnxruntime; the export,
the classification and a sample design chained in a graphical model."""

from __future__ import annotations

import processing
import pytest
import rasterio
from qgis.core import (
    NULL,
    QgsApplication,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
    QgsVectorLayer,
)

from lcfusion.engine.modelfile.header import read_metadata

EXPORT = "lcfusion:exportonnx"
CLASSIFY = "lcfusion:classifyfgunet"


@pytest.fixture(scope="module")
def onnx_model(lcfusion_provider, trained, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    results = processing.run(EXPORT, {"MODEL": str(trained[0]),
                                      "OUTPUT": str(folder / "model.onnx")})
    return results


def test_export_writes_an_onnx_model_of_the_family(onnx_model, trained):
    assert onnx_model["FAMILY"] == "fgunet"
    assert onnx_model["MAX_DIFFERENCE"] <= 1e-4
    metadata = read_metadata(onnx_model["OUTPUT"])
    assert metadata["classes"] == read_metadata(trained[0])["classes"]


def test_classify_takes_the_onnx_model_and_styles_its_map(onnx_model, scene, tmp_path):
    results = processing.run(CLASSIFY, {
        "INPUT": [str(p) for p in scene.s2_paths], "MODEL": onnx_model["OUTPUT"],
        "TILE_SIZE": 128, "MARGIN": 20, "OUTPUT": str(tmp_path / "map.tif")})
    with rasterio.open(results["OUTPUT"]) as ds:
        assert len(set(ds.read(1).ravel().tolist()) - {255}) >= 4
        assert ds.tags()["LCFUSION_FAMILY"] == "fgunet"
    assert (tmp_path / "map.qml").is_file()


def test_the_checks_name_the_model_and_ask_only_for_onnxruntime(onnx_model, scene, tmp_path):
    registry = QgsApplication.processingRegistry()
    classify = registry.algorithmById(CLASSIFY)
    context = QgsProcessingContext()
    parameters = {"INPUT": [str(p) for p in scene.s2_paths], "MODEL": onnx_model["OUTPUT"],
                  "OUTPUT": str(tmp_path / "map.tif")}
    assert classify.needed_packages(parameters, context) == ("onnxruntime",)
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(b"\x08\x07")  # ir_version 7 and nothing else: no graph
    ok, message = classify.checkParameterValues({**parameters, "MODEL": str(foreign)}, context)
    assert not ok
    assert message.startswith("Model file [MODEL]: foreign.onnx is not an ONNX model exported "
                              "by lcfusion")
    export = registry.algorithmById(EXPORT)
    ok, message = export.checkParameterValues(
        {"MODEL": onnx_model["OUTPUT"], "OUTPUT": str(tmp_path / "again.onnx")}, context)
    assert not ok and "MODEL" in message  # QGIS takes only the .lcfusion suffix there


def test_export_classify_and_sample_chain_in_the_modeler(lcfusion_provider, trained, scene,
                                                         tmp_path):
    """A graphical model: export the model to ONNX, classify with the exported file, draw a
    stratified sample of the map; each step takes the previous one's output."""
    source = QgsProcessingModelChildParameterSource
    model = QgsProcessingModelAlgorithm("ONNX chain", "tests")
    model.addModelParameter(QgsProcessingParameterFile("model", "Model"),
                            QgsProcessingModelParameter("model"))
    model.addModelParameter(QgsProcessingParameterMultipleLayers(
        "series", "Series", QgsProcessing.SourceType.TypeRaster),
        QgsProcessingModelParameter("series"))
    steps = {"export": (EXPORT, {"MODEL": source.fromModelParameter("model")}),
             "classify": (CLASSIFY, {"INPUT": source.fromModelParameter("series"),
                                     "MODEL": source.fromChildOutput("export", "OUTPUT"),
                                     "TILE_SIZE": source.fromStaticValue(128)}),
             "sample": ("lcfusion:sampledesign", {
                 "INPUT": source.fromChildOutput("classify", "OUTPUT"),
                 "MINIMUM": source.fromStaticValue(5), "TARGET_SE": source.fromStaticValue(0.05)})}
    for child_id, (algorithm, sources) in steps.items():
        child = QgsProcessingModelChildAlgorithm(algorithm)
        child.setChildId(child_id)
        for definition in child.algorithm().parameterDefinitions():  # as the designer does
            name, default = definition.name(), definition.defaultValue()
            if name in sources:
                child.addParameterSources(name, [sources[name]])
            elif default is not None and not definition.isDestination():
                child.addParameterSources(name, [source.fromStaticValue(default)])
        if child_id == "sample":
            points = QgsProcessingModelOutput("points")
            points.setChildId(child_id)
            points.setChildOutputName("OUTPUT")
            child.setModelOutputs({"points": points})
        model.addChildAlgorithm(child)
    valid, problems = model.validate()
    assert valid, problems

    target = tmp_path / "points.gpkg"
    results = processing.run(model, {"model": str(trained[0]),
                                     "series": [str(p) for p in scene.s2_paths],
                                     "sample:points": str(target)})
    layer = QgsVectorLayer(results["sample:points"], "points", "ogr")
    assert layer.isValid() and layer.featureCount() >= 5
    strata = {feature["stratum"] for feature in layer.getFeatures()}
    assert len(strata) >= 4, "points in every mapped class"
    assert all(feature["reference"] in (None, NULL) for feature in layer.getFeatures())
