"""Reference layers whose field names a GeoPackage export would mangle ("fid", which GDAL
takes as the feature id; spaces, accents, names differing only in case): training and
evaluation through Processing read the user's fields and name them in messages and outputs."""

from __future__ import annotations

import processing
import pytest
from processing_helpers import TINY_FOREST
from qgis.core import (
    QgsFeature,
    QgsField,
    QgsPalettedRasterRenderer,
    QgsProcessingException,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QMetaType

from lcfusion.engine.modelfile.header import read_header
from lcfusion.plugin.qt_compat import field_type

NAME_FIELD = "Nom de classe é"


def reference_with_fields(scene, owned_layer, *, codes: bool = True) -> QgsVectorLayer:
    """The scene's polygons in a memory layer whose class codes are in a field "fid" (NULL
    without `codes`), names in a field with spaces and an accent, and decoys "FID" and "Class"
    (wrong codes) that a case-insensitive lookup would confuse with the user's fields."""
    source = QgsVectorLayer(f"{scene.reference_path}|layername={scene.reference_layer}",
                            "source", "ogr")
    layer = QgsVectorLayer(f"MultiPolygon?crs={source.crs().authid()}", "my reference",
                           "memory")
    layer.dataProvider().addAttributes([
        QgsField(name, field_type(kind)) for name, kind in (
            ("Class", QMetaType.Type.Int), ("fid", QMetaType.Type.Int),
            (NAME_FIELD, QMetaType.Type.QString), ("FID", QMetaType.Type.Int))])
    layer.updateFields()
    features = []
    for feature in source.getFeatures():
        copy = QgsFeature(layer.fields())
        copy.setGeometry(feature.geometry())
        copy.setAttributes([99, feature["class_id"] if codes else None,
                            feature["class_name"], 77])
        features.append(copy)
    assert layer.dataProvider().addFeatures(features)[0]
    return owned_layer(layer)


def test_a_class_field_named_fid_trains(lcfusion_provider, scene, owned_layer, tmp_path):
    """...and, the layer having no colours, the map is styled in the conventional colours
    of the class names."""
    model = tmp_path / "forest.lcfusion"
    processing.run("lcfusion:trainrandomforest", {
        "SOURCE": 0, "S2": [str(p) for p in scene.s2_paths],
        "REFERENCE": reference_with_fields(scene, owned_layer), "CLASS_FIELD": "fid",
        "NAME_FIELD": NAME_FIELD, "OUTPUT_MODEL": str(model), **TINY_FOREST})
    classes = read_header(model).metadata["classes"]
    assert [(c["code"], c["name"]) for c in classes] == [
        (c.code, c.name) for c in scene.classes]

    class_map = tmp_path / "map.tif"
    processing.run("lcfusion:classifyrandomforest", {
        "MODEL": str(model), "S2": [str(p) for p in scene.s2_paths], "TILE_SIZE": 64,
        "OUTPUT": str(class_map)})
    layer = QgsRasterLayer(str(class_map), "map")
    renderer = layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    colors = {entry.label: entry.color.name() for entry in renderer.classes()}
    assert colors == {"water": "#2166ac", "forest": "#1b6b30", "winter crop": "#f0cf3c",
                      "summer crop": "#bba12f", "grassland": "#9fd46a",
                      "wet meadow": "#3fa7a0", "built-up": "#d7301f", "bare soil": "#d2b48c"}


def test_evaluation_names_the_users_fields(lcfusion_provider, scene, owned_layer, tmp_path):
    results = processing.run("lcfusion:evaluate", {
        "INPUT": str(scene.truth_path), "REFERENCE": reference_with_fields(scene, owned_layer),
        "CLASS_FIELD": "fid", "NAME_FIELD": NAME_FIELD,
        "OUTPUT_HTML": str(tmp_path / "report.html"), "OUTPUT_CSV": str(tmp_path / "m.csv")})
    assert results["OA"] > 0.95  # the truth against its own polygons
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "fid" in page and "Nom de classe &#x27;" not in page
    assert NAME_FIELD in page or NAME_FIELD.replace("é", "&#233;") in page
    assert "lcfusion_" not in page


def test_an_empty_fid_field_is_named_in_the_error(lcfusion_provider, scene, owned_layer):
    with pytest.raises(QgsProcessingException) as caught:
        processing.run("lcfusion:evaluate", {
            "INPUT": str(scene.truth_path),
            "REFERENCE": reference_with_fields(scene, owned_layer, codes=False),
            "CLASS_FIELD": "fid", "OUTPUT_HTML": "TEMPORARY_OUTPUT",
            "OUTPUT_CSV": "TEMPORARY_OUTPUT"})
    message = str(caught.value)
    assert "[CLASS_FIELD]" in message
    assert "the class field 'fid' is empty (NULL)" in message
