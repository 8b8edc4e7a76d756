"""Each algorithm's Processing dialog opens, renders, shows its help, has a widget for every
parameter and fits its width; a training report reaches the results viewer. The screenshots
go to ``LCFUSION_SCREENSHOTS`` when it is set (to look at them), else to a temporary folder."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

import numpy as np
import processing
import pytest
import rasterio
from helpers import write_raster
from model_mutants import ModelBytes
from processing.core.ProcessingResults import resultsList
from processing.gui.AlgorithmDialog import AlgorithmDialog
from qgis.core import (
    QgsApplication,
    QgsField,
    QgsLayerTreeModel,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputHtml,
    QgsProcessingParameterDefinition,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.gui import QgsBrowserGuiModel, QgsLayerTreeView
from qgis.PyQt.QtCore import QCoreApplication, QMetaType
from qgis.PyQt.QtGui import QImage
from qgis.PyQt.QtWidgets import QScrollArea, QTextBrowser

from lcfusion.plugin.provider import ALGORITHMS
from lcfusion.plugin.qt_compat import field_type

SIZE = (900, 1000)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = os.environ.get("LCFUSION_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def distinct_colours(image: QImage, step: int = 4) -> int:
    return len({image.pixel(x, y) for x in range(0, image.width(), step)
                for y in range(0, image.height(), step)})


@pytest.fixture(scope="module")
def browser_model(qgis_app) -> QgsBrowserGuiModel:
    model = QgsBrowserGuiModel()
    yield model
    model.deleteLater()


@pytest.mark.parametrize("algorithm_id", [a.algorithm_id for a in ALGORITHMS])
def test_the_dialog_renders_with_its_help_and_parameters(lcfusion_provider, qgis_iface,
                                                         browser_model, monkeypatch,
                                                         screenshots, algorithm_id):
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser_model)
    alg = QgsApplication.processingRegistry().createAlgorithmById(f"lcfusion:{algorithm_id}")
    dialog = alg.createCustomParametersWidget()  # as the toolbox opens it
    try:
        dialog.resize(*SIZE)
        dialog.show()
        for _ in range(5):
            QCoreApplication.processEvents()
        image = dialog.grab().toImage()
        path = screenshots / f"{algorithm_id}.png"
        assert image.save(str(path))

        assert (image.width(), image.height()) == SIZE
        assert distinct_colours(image) > 50, "the dialog rendered blank"
        # QGIS 3.22 titles the dialog with the algorithm's name, later releases "group - name".
        assert dialog.windowTitle() in (alg.displayName(),
                                        f"{alg.group()} - {alg.displayName()}")
        shown = {name for name, wrapper in dialog.mainWidget().wrappers.items()
                 if wrapper is not None}
        declared = {p.name() for p in alg.parameterDefinitions()
                    if not p.flags() & QgsProcessingParameterDefinition.FlagHidden}
        assert shown == declared
        if "TIME_LIMIT" in shown:  # minutes, shown as "0.0" rather than "0.000000"
            assert dialog.mainWidget().wrappers["TIME_LIMIT"].wrappedWidget().decimals() == 1
        panel = dialog.mainWidget().findChild(QScrollArea)
        assert not panel.horizontalScrollBar().isVisible(), "a label or widget is too wide"
        help_text = " ".join(browser.toPlainText() for browser in
                             dialog.findChildren(QTextBrowser))
        assert "Parameters" in help_text
        assert ("Defaults" in help_text) == bool(alg.defaults_help())
        first_words = " ".join(html.unescape(re.sub("<[^>]+>", "", alg.help_text)).split()[:6])
        assert first_words in " ".join(help_text.split())
        assert path.stat().st_size > 10_000
    finally:
        dialog.close()
        dialog.deleteLater()
        QCoreApplication.processEvents()


def test_the_training_report_goes_to_the_results_viewer(lcfusion_provider, qgis_iface,
                                                        browser_model, monkeypatch, scene,
                                                        tiny_training, tmp_path):
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser_model)
    # QGIS 3.44 hands the layer tree view to C++ (QgsProcessingGuiUtils), which takes no mock.
    layer_tree = QgsLayerTreeView()
    layer_tree.setModel(QgsLayerTreeModel(QgsProject.instance().layerTreeRoot()))
    monkeypatch.setattr(qgis_iface, "layerTreeView", lambda: layer_tree)
    alg = QgsApplication.processingRegistry().createAlgorithmById("lcfusion:trainfgunet")
    assert isinstance(alg.outputDefinition("OUTPUT_REPORT"), QgsProcessingOutputHtml)
    report = tmp_path / "report.html"
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    result = processing.run(alg, {
        "INPUT": [str(p) for p in scene.s2_paths], "REFERENCE": str(scene.reference_path),
        "CLASS_FIELD": "class_id", "OUTPUT_MODEL": str(tmp_path / "model.lcfusion"),
        "OUTPUT_REPORT": str(report), **tiny_training}, context=context, feedback=feedback)
    before = len(resultsList.getResults())
    dialog = AlgorithmDialog(alg)
    dialog.iterateParam = None  # set by runAlgorithm, which this test does not go through
    try:
        dialog.finish(True, result, context, feedback)
    finally:
        dialog.close()
        dialog.deleteLater()
    added = resultsList.getResults()[before:]
    assert [(r.name, r.filename) for r in added] == [("Training report", str(report))]
    assert "<html" in report.read_text(encoding="utf-8").lower()


@pytest.fixture
def project_layer():
    """Adds a layer to the project the dialogs list layers of, removed after the test."""
    added = []

    def add(layer):
        assert layer.isValid()
        QgsProject.instance().addMapLayer(layer)
        added.append(layer.id())
        return layer

    yield add
    QgsProject.instance().removeMapLayers(added)


@pytest.fixture
def dialog_of(qgis_iface, browser_model, monkeypatch):
    """Opens the toolbox dialog of an algorithm; closes it after the test."""
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser_model)
    opened = []

    def open_dialog(algorithm_id: str):
        alg = QgsApplication.processingRegistry().createAlgorithmById(algorithm_id)
        dialog = alg.createCustomParametersWidget()
        opened.append(dialog)
        return dialog

    yield open_dialog
    for dialog in opened:
        dialog.close()
        dialog.deleteLater()
    QCoreApplication.processEvents()


def set_value(dialog, name: str, value) -> None:
    """What the user's choice in a widget does: the wrapper's value set, its signal sent."""
    dialog.mainWidget().wrappers[name].setParameterValue(value, QgsProcessingContext())


def value(dialog, name: str):
    return dialog.mainWidget().wrappers[name].parameterValue()


def memory_polygons(*fields: tuple[str, QMetaType.Type]) -> QgsVectorLayer:
    layer = QgsVectorLayer("Polygon?crs=EPSG:32631", "polygons", "memory")
    layer.dataProvider().addAttributes([QgsField(name, field_type(kind))
                                        for name, kind in fields])
    layer.updateFields()
    return layer


def test_the_class_fields_are_preselected_never_the_feature_id(
        lcfusion_provider, scene, dialog_of, project_layer):
    dialog = dialog_of("lcfusion:trainfgunet")
    layers = {
        ("class_id", "class_name", "class_color"): QgsVectorLayer(
            f"{scene.reference_path}|layername={scene.reference_layer}", "scene", "ogr"),
        # a real field named fid ranks last; text class names need no name field
        ("Land cover", None, None): memory_polygons(
            ("fid", QMetaType.Type.Int), ("area", QMetaType.Type.Double),
            ("Land cover", QMetaType.Type.QString)),
        ("LULC_ID", "LULC_NAME", None): memory_polygons(
            ("RABA_ID", QMetaType.Type.Int), ("LULC_NAME", QMetaType.Type.QString),
            ("LULC_ID", QMetaType.Type.Int)),
        ("osm_class", "Class name", None): memory_polygons(
            ("osm_id", QMetaType.Type.QString), ("osm_code", QMetaType.Type.Int),
            ("osm_class", QMetaType.Type.Int), ("Class name", QMetaType.Type.QString),
            ("osm_name", QMetaType.Type.QString)),
    }
    assert QgsVectorLayer(f"{scene.reference_path}|layername={scene.reference_layer}",
                          "scene", "ogr").fields().names()[0] == "fid"
    for (class_field, name_field, color_field), layer in layers.items():
        set_value(dialog, "REFERENCE", project_layer(layer).id())
        assert (value(dialog, "CLASS_FIELD"), value(dialog, "NAME_FIELD") or None,
                value(dialog, "COLOR_FIELD") or None) == (
            class_field, name_field, color_field), layer.fields().names()


def test_choosing_a_model_fills_its_dated_inputs(lcfusion_provider, scene, trained,
                                                 dialog_of, project_layer):
    model, _ = trained
    # the dates in another order, with layers of other band counts as decoys
    for path in (*reversed(scene.s2_paths), *scene.s1_paths, scene.s2_cloud_mask_path):
        project_layer(QgsRasterLayer(str(path), path.stem))
    dialog = dialog_of("lcfusion:classifyfgunet")
    assert not value(dialog, "INPUT")

    set_value(dialog, "MODEL", str(model))

    assert value(dialog, "INPUT") == [str(path) for path in scene.s2_paths]  # date order
    assert not value(dialog, "INPUT_MASK")  # the model records no mask layers


def test_choosing_a_model_without_dates_fills_the_only_stack_of_its_bands(
        lcfusion_provider, scene, trained, dialog_of, project_layer, tmp_path):
    """A model trained on a stack without dates: the only layer of all its bands (and its band
    names, among layers of as many bands) is chosen."""
    model, _ = trained
    original = ModelBytes(model.read_bytes())
    metadata = original.metadata
    series = next(entry for entry in metadata["inputs"].values() if "n_dates" in entry)
    series.pop("dates", None)
    undated = tmp_path / "undated.lcfusion"
    undated.write_bytes(original.forge(metadata))
    bands = []
    for date in scene.s2_paths:
        with rasterio.open(date) as src:
            bands.append(src.read())
            origin, pixel = (src.transform.c, src.transform.f), src.transform.a
    stack = np.concatenate(bands)
    path = write_raster(tmp_path / "s2_stack.tif", stack, origin=origin, pixel=pixel,
                        descriptions=series["band_names"] * len(bands))
    # single dates and the mask as decoys: other band counts; and as many bands, other names
    other = write_raster(tmp_path / "other_stack.tif", stack, origin=origin, pixel=pixel)
    for decoy in (*scene.s2_paths, scene.s2_cloud_mask_path, other, path):
        project_layer(QgsRasterLayer(str(decoy), decoy.stem))
    dialog = dialog_of("lcfusion:classifyfgunet")

    set_value(dialog, "MODEL", str(undated))

    assert value(dialog, "INPUT") == [str(path)]


def test_choosing_a_model_fills_its_pan_and_ms(lcfusion_provider, scene, trained_mrfusion,
                                               dialog_of, project_layer):
    model, _ = trained_mrfusion
    for path in (*scene.s2_paths, scene.s2_cloud_mask_path, scene.ms_path, scene.pan_path):
        project_layer(QgsRasterLayer(str(path), path.stem))
    dialog = dialog_of("lcfusion:classifymrfusion")

    set_value(dialog, "MODEL", str(model))

    shown = [QgsProject.instance().mapLayer(value(dialog, name)) for name in ("PAN", "MS")]
    assert [Path(layer.source()) for layer in shown] == [scene.pan_path, scene.ms_path]
