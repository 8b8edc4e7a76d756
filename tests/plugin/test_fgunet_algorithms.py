"""FG-UNET training and classification through Processing (processing.run), with the engine
running as a real child process on the synthetic sample scene."""

from __future__ import annotations

import gc
import os
import warnings
from pathlib import Path

import numpy as np
import processing
import pytest
import rasterio
from osgeo import gdal
from processing.gui.Postprocessing import handleAlgorithmResults
from processing_helpers import run_and_load
from qgis.core import (
    QgsApplication,
    QgsCategorizedSymbolRenderer,
    QgsFillSymbol,
    QgsMapLayerType,
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingUtils,
    QgsProject,
    QgsRasterLayer,
    QgsRendererCategory,
    QgsSingleBandPseudoColorRenderer,
    QgsVectorLayer,
)

from lcfusion.engine.modelfile.header import read_header

TRAIN = "lcfusion:trainfgunet"
CLASSIFY = "lcfusion:classifyfgunet"
EVALUATE = "lcfusion:evaluate"

#: Colours given to the reference layer's categorized style; the model must adopt them.
STYLE_COLORS = {1: "#0000ff", 2: "#006400", 3: "#ffd700", 4: "#ff8c00", 5: "#7cfc00",
                6: "#008080", 7: "#ff0000", 8: "#a0522d"}


def series(scene) -> list[str]:
    return [str(p) for p in scene.s2_paths]


def job_folders() -> set[str]:
    """The engine job folders currently in Processing's temporary folder."""
    folder = QgsProcessingUtils.tempFolder()
    return {name for name in os.listdir(folder) if name.startswith("lcfusion-job-")}


def grid_of(path) -> tuple:
    with rasterio.open(path) as ds:
        return ds.crs, ds.transform, ds.width, ds.height


def model_classes(model_path) -> list[dict]:
    return read_header(model_path).metadata["classes"]


# Training ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def styled_reference(scene) -> QgsVectorLayer:
    """The reference polygons with a categorized style on the class field, owned by a
    project that deletes the layer while QGIS is still up."""
    layer = QgsVectorLayer(f"{scene.reference_path}|layername={scene.reference_layer}",
                           "reference", "ogr")
    assert layer.isValid()
    categories = []
    for code, color in STYLE_COLORS.items():
        symbol = QgsFillSymbol.createSimple({"color": color})
        categories.append(QgsRendererCategory(code, symbol, str(code)))
    layer.setRenderer(QgsCategorizedSymbolRenderer("class_id", categories))
    project = QgsProject()
    project.addMapLayer(layer, False)
    yield layer
    project.removeAllMapLayers()


def test_train_writes_a_model_and_reports_accuracy(lcfusion_provider, scene, styled_reference,
                                                   tiny_training, tmp_path, recording_feedback):
    before = job_folders()
    feedback = recording_feedback()
    model = tmp_path / "fgunet.lcfusion"
    split = tmp_path / "split.gpkg"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        results = processing.run(TRAIN, {
            "INPUT": series(scene), "REFERENCE": styled_reference, "CLASS_FIELD": "class_id",
            "NAME_FIELD": "class_name", **tiny_training, "SPLIT_METHOD": 1,
            "CLASS_WEIGHTING": 1, "OUTPUT_MODEL": str(model), "OUTPUT_SPLIT": str(split)},
            feedback=feedback)
        gc.collect()

    assert results["OUTPUT_MODEL"] == str(model)
    assert model.is_file() and model.stat().st_size > 100_000
    assert 0.0 <= results["OA"] <= 1.0
    assert -1.0 <= results["KAPPA"] <= 1.0
    assert 0.0 <= results["MEAN_F1"] <= 1.0
    for key in ("OA", "KAPPA", "MEAN_F1"):
        assert isinstance(results[key], float) and np.isfinite(results[key])
    # The engine's own reasoning reached the user.
    log = feedback.text("info")
    assert "6 dates x 10 bands" in log
    assert "40 reference features, 8 classes" in log

    header = read_header(model)
    assert header.family == "fgunet"
    assert header.metadata["inputs"]["series"]["n_dates"] == 6
    # Enumerated choices reach the engine as its own keywords.
    assert header.metadata["training"]["split"]["method"] == "area"
    assert header.metadata["training"]["settings"]["class_weighting"] == "sqrt"
    classes = header.metadata["classes"]
    assert [c["code"] for c in classes] == list(range(1, 9))
    assert [c["name"] for c in classes] == [c.name for c in scene.classes]
    # Colours come from the layer's categorized style on the class field.
    assert {c["code"]: c["color"] for c in classes} == STYLE_COLORS
    # Nothing but the outputs in their folder, no job folder left in Processing's temp.
    assert sorted(os.listdir(tmp_path)) == ["fgunet.lcfusion", "split.gpkg"]
    assert job_folders() == before
    # The engine's pipes are closed, not left to the garbage collector.
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, leaks
    check_split_layer(results, styled_reference, header.metadata["training"]["split_summary"])
    check_evaluation_on_the_test_part(scene, results, model, tmp_path,
                                      header.metadata["training"]["split_summary"])


def check_split_layer(results: dict, reference: QgsVectorLayer, summary: list[dict]) -> None:
    """The split layer holds every reference polygon once, with the user's fields, its part
    as in the model's split summary, and the seed."""
    layer = QgsVectorLayer(results["OUTPUT_SPLIT"], "split", "ogr")
    assert layer.isValid()
    assert layer.fields().names()[-2:] == ["part", "split_seed"]
    features = list(layer.getFeatures())
    originals = list(reference.getFeatures())
    assert len(features) == len(originals) == 40

    def key(feature) -> tuple:
        return feature["class_id"], feature["class_name"], feature.geometry().asWkt(3)

    assert sorted(map(key, features)) == sorted(map(key, originals))
    assert {f["split_seed"] for f in features} == {0}
    for row in summary:
        for part in ("train", "validation", "test"):
            placed = [f for f in features if f["class_id"] == row["code"] and f["part"] == part]
            assert len(placed) == row[f"{part}_objects"], (row["name"], part)


def check_evaluation_on_the_test_part(scene, results: dict, model: Path, folder: Path,
                                      summary: list[dict]) -> None:
    """Evaluating the model's own map on the split layer's test polygons measures exactly the
    pixels, and so the accuracy, of the training's test metric."""
    class_map = processing.run(CLASSIFY, {
        "INPUT": series(scene), "MODEL": str(model), "TILE_SIZE": 128, "MARGIN": 20,
        "OUTPUT": str(folder / "map.tif")})["OUTPUT"]
    evaluation = processing.run(EVALUATE, {
        "INPUT": class_map, "REFERENCE": results["OUTPUT_SPLIT"], "CLASS_FIELD": "class_id",
        "PART": "test"})
    assert evaluation["N_PIXELS"] == sum(row["test_pixels"] for row in summary)
    assert evaluation["OA"] == pytest.approx(results["OA"], abs=1e-9)
    assert evaluation["KAPPA"] == pytest.approx(results["KAPPA"], abs=1e-9)


# Classification ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def classified(lcfusion_provider, scene, trained, tmp_path_factory) -> dict:
    """Outputs of one classification of the sample scene with the session's model."""
    model, _ = trained
    folder = tmp_path_factory.mktemp("classified")
    results = processing.run(CLASSIFY, {
        "INPUT": series(scene), "MODEL": str(model), "TILE_SIZE": 128, "MARGIN": 20,
        "OUTPUT": str(folder / "map.tif"), "OUTPUT_CONFIDENCE": str(folder / "confidence.tif")})
    return {"results": results, "folder": folder, "model": model}


def test_class_map_is_on_the_input_grid(classified, scene):
    path = classified["results"]["OUTPUT"]
    assert path == str(classified["folder"] / "map.tif")
    assert grid_of(path) == grid_of(scene.s2_paths[0])
    with rasterio.open(path) as ds:
        assert ds.count == 1
        assert ds.dtypes[0] == "uint8"
        assert ds.nodata == 255


def test_class_map_holds_model_codes_only(classified):
    codes = {c["code"] for c in model_classes(classified["model"])}
    with rasterio.open(classified["results"]["OUTPUT"]) as ds:
        values = set(np.unique(ds.read(1)).tolist())
    assert values <= codes | {255}
    assert len(values - {255}) >= 4  # a map, not a constant


def test_class_map_agrees_with_the_truth(classified, scene):
    with rasterio.open(classified["results"]["OUTPUT"]) as ds:
        predicted = ds.read(1)
    with rasterio.open(scene.truth_path) as ds:
        truth = ds.read(1)
    agreement = float(np.mean(predicted == truth))
    assert agreement > 0.5, f"agreement with the truth {agreement:.3f} (chance: 0.125)"


def test_class_map_has_a_default_style_with_class_names(classified):
    path = Path(classified["results"]["OUTPUT"])
    assert path.with_suffix(".qml").is_file()
    layer = QgsRasterLayer(str(path), "map")  # loads map.qml as its default style
    assert layer.isValid()
    renderer = layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    classes = model_classes(classified["model"])
    assert [(int(c.value), c.label, c.color.name()) for c in renderer.classes()] == [
        (c["code"], c["name"], c["color"]) for c in classes]


def test_confidence_map_and_its_style(classified, scene):
    path = Path(classified["results"]["OUTPUT_CONFIDENCE"])
    assert path == classified["folder"] / "confidence.tif"
    assert grid_of(path) == grid_of(scene.s2_paths[0])
    with rasterio.open(path) as ds:
        values = ds.read(1)
    finite = values[np.isfinite(values)]
    assert finite.size > 0.9 * values.size
    assert finite.min() >= 0.0 and finite.max() <= 1.0
    assert finite.min() >= 1.0 / 8 - 1e-6  # the largest of 8 probabilities
    assert path.with_suffix(".qml").is_file()
    layer = QgsRasterLayer(str(path), "confidence")
    assert isinstance(layer.renderer(), QgsSingleBandPseudoColorRenderer)


def test_classify_leaves_only_its_outputs(classified):
    names = {n for n in os.listdir(classified["folder"]) if not n.endswith(".aux.xml")}
    assert names == {"map.tif", "map.qml", "confidence.tif", "confidence.qml"}


def test_confidence_map_is_optional(lcfusion_provider, scene, trained, tmp_path,
                                    recording_feedback):
    model, _ = trained
    feedback = recording_feedback()
    results = processing.run(CLASSIFY, {"INPUT": series(scene), "MODEL": str(model),
                                        "TILE_SIZE": 128, "OUTPUT": str(tmp_path / "map.tif")},
                             feedback=feedback)
    assert "OUTPUT_CONFIDENCE" not in results or not results["OUTPUT_CONFIDENCE"]
    assert "not a local file" not in feedback.text()  # files are read in place, not copied
    assert sorted(n for n in os.listdir(tmp_path) if not n.endswith(".aux.xml")) == [
        "map.qml", "map.tif"]


# Layers that are not local files ------------------------------------------------------------

@pytest.fixture
def vsimem_layers(scene):
    """Each date as a VRT in GDAL's in-memory file system: a GDAL layer with no file on disk."""
    layers, paths = [], []
    for index, source in enumerate(scene.s2_paths):
        path = f"/vsimem/lcfusion_test_{os.getpid()}_{index}.vrt"
        assert gdal.Translate(path, str(source), format="VRT") is not None
        layer = QgsRasterLayer(path, f"{source.stem} (in memory)", "gdal")
        assert layer.isValid()
        assert not os.path.exists(layer.source())
        layers.append(layer)
        paths.append(path)
    yield layers
    for path in paths:
        gdal.Unlink(path)


def test_layers_that_are_not_files_are_exported_and_classified(
        lcfusion_provider, classified, trained, scene, vsimem_layers, tmp_path,
        recording_feedback):
    model, _ = trained
    feedback = recording_feedback()
    before = job_folders()
    results = processing.run(CLASSIFY, {"INPUT": vsimem_layers, "MODEL": str(model),
                                        "TILE_SIZE": 128, "MARGIN": 20,
                                        "OUTPUT": str(tmp_path / "map.tif")}, feedback=feedback)

    log = feedback.text("info")
    assert log.count("is not a local file; exporting it") == len(vsimem_layers)
    dates = ", ".join(p.stem.removeprefix("s2_") for p in scene.s2_paths)
    assert f"dates {dates};" in log  # read from the layer names of the exported copies
    with rasterio.open(results["OUTPUT"]) as ds:
        from_memory = ds.read(1)
    with rasterio.open(classified["results"]["OUTPUT"]) as ds:
        from_files = ds.read(1)
    # The exported copies hold the same pixels, so the maps are the same.
    assert float(np.mean(from_memory == from_files)) > 0.999
    assert grid_of(results["OUTPUT"]) == grid_of(classified["results"]["OUTPUT"])
    assert job_folders() == before  # the exported rasters went away with the job folder


# Loading the outputs into a project ---------------------------------------------------------

def _check_loaded_class_map(project: QgsProject, path: str, model) -> QgsRasterLayer:
    layers = [layer for layer in project.mapLayers().values()
              if layer.type() == QgsMapLayerType.RasterLayer
              and Path(layer.source()) == Path(path)]
    assert len(layers) == 1, f"the class map was not loaded into the project: {path}"
    renderer = layers[0].renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer), type(renderer).__name__
    assert [c.label for c in renderer.classes()] == [c["name"] for c in model_classes(model)]
    return layers[0]


def test_loaded_outputs_get_their_renderers(lcfusion_provider, scene, trained, tmp_path,
                                            layer_tree_view):
    """As `processing.runAndLoadResults` does it: destinations with a project, then
    Processing's post-processing (`handleAlgorithmResults`)."""
    model, _ = trained
    project = QgsProject()
    context = QgsProcessingContext()
    context.setProject(project)
    parameters = {"INPUT": series(scene), "MODEL": str(model), "TILE_SIZE": 128,
                  "OUTPUT": QgsProcessingOutputLayerDefinition("TEMPORARY_OUTPUT", project),
                  "OUTPUT_CONFIDENCE": QgsProcessingOutputLayerDefinition("TEMPORARY_OUTPUT",
                                                                          project)}
    results = run_and_load(CLASSIFY, parameters, context)

    class_map = _check_loaded_class_map(project, results["OUTPUT"], model)
    loaded = [layer for layer in project.mapLayers().values()
              if Path(layer.source()) == Path(results["OUTPUT_CONFIDENCE"])]
    assert len(loaded) == 1
    assert isinstance(loaded[0].renderer(), QgsSingleBandPseudoColorRenderer)
    # Named after the family and the model, not all "Class map".
    assert class_map.name() == f"FG-UNET classes — {model.stem}"
    assert loaded[0].name() == f"FG-UNET confidence — {model.stem}"
    project.clear()


def test_post_processor_styles_a_layer_registered_in_the_context(lcfusion_provider, scene,
                                                                 trained, tmp_path,
                                                                 layer_tree_view):
    """A context that already lists the output to load (as the toolbox dialog builds it)."""
    model, _ = trained
    project = QgsProject()
    context = QgsProcessingContext()
    context.setProject(project)
    class_map = str(tmp_path / "map.tif")
    context.addLayerToLoadOnCompletion(
        class_map, QgsProcessingContext.LayerDetails("map", project, "OUTPUT"))

    results = processing.run(CLASSIFY, {"INPUT": series(scene), "MODEL": str(model),
                                        "TILE_SIZE": 128, "OUTPUT": class_map}, context=context)
    assert results["OUTPUT"] == class_map
    details = context.layerToLoadOnCompletionDetails(class_map)
    assert details.postProcessor() is not None
    gc.collect()  # the post-processor must not depend on a reference held by the test
    alg = QgsApplication.processingRegistry().algorithmById(CLASSIFY)
    assert handleAlgorithmResults(alg, context, parameters={"OUTPUT": class_map})

    _check_loaded_class_map(project, class_map, model)
    project.clear()
