"""ONNX through Processing: Export a model to ONNX, then classify with the .onnx file; the
checks name the MODEL parameter for a foreign file and ask only for onnxruntime."""

from __future__ import annotations

import processing
import pytest
import rasterio
from qgis.core import QgsApplication, QgsProcessingContext

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
