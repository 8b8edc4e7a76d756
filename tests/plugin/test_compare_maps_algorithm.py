"""lcfusion:comparemaps through Processing on two tiny GeoTIFF maps and a GeoPackage reference
counted by hand (tests/map_pairs.py): the numbers, the styled disagreement raster, outputs for
the modeler, a reference of lines refused by name. (Sample points: tests/test_qgis_process.py;
a map B off map A's grid: tests/engine/test_comparison.py.)"""

from __future__ import annotations

import numpy as np
import processing
import pytest
import rasterio
from map_pairs import (
    CHI_SQUARE,
    DISAGREEMENT,
    F1_A,
    F1_B,
    N_PIXELS,
    OA_A,
    OA_B,
    ONLY_A,
    ONLY_B,
    X0,
    Y0,
    write_pair,
    write_polygons,
)
from osgeo import ogr
from qgis.core import (
    QgsApplication,
    QgsPalettedRasterRenderer,
    QgsProcessingOutputNumber,
    QgsRasterLayer,
)
from scipy import stats

from lcfusion.engine.reports.comparison import DISAGREEMENT_LEGEND

COMPARE = "lcfusion:comparemaps"


def parameters(maps, reference, **changes) -> dict:
    return {"MAP_A": str(maps[0]), "MAP_B": str(maps[1]),
            "REFERENCE": f"{reference}|layername=reference", "CLASS_FIELD": "code",
            "NAME_FIELD": "label", "OUTPUT_HTML": "TEMPORARY_OUTPUT", **changes}


def test_polygons_give_the_hand_counted_test_and_a_styled_disagreement_raster(
        lcfusion_provider, tmp_path, recording_feedback):
    maps = write_pair(tmp_path)
    feedback = recording_feedback()
    results = processing.run(COMPARE, parameters(
        maps, write_polygons(tmp_path / "reference.gpkg"),
        OUTPUT_HTML=str(tmp_path / "report.html"),
        OUTPUT_DISAGREEMENT=str(tmp_path / "disagreement.tif")), feedback=feedback)

    assert (results["ONLY_A"], results["ONLY_B"], results["N_PIXELS"]) == (ONLY_A, ONLY_B,
                                                                            N_PIXELS)
    assert results["CHI_SQUARE"] == pytest.approx(CHI_SQUARE)
    assert results["P_VALUE"] == pytest.approx(stats.chi2.sf(CHI_SQUARE, 1))
    assert results["METHOD"] == "chi-square, continuity-corrected"
    assert (results["OA_A"], results["OA_B"]) == pytest.approx((OA_A, OA_B))
    assert (results["MEAN_F1_A"], results["MEAN_F1_B"]) == pytest.approx(
        (sum(F1_A) / 3, sum(F1_B) / 3))
    assert results["OUTPUT_HTML"] == str(tmp_path / "report.html")
    assert "Map A is significantly more accurate than map B" in (
        tmp_path / "report.html").read_text(encoding="utf-8")

    raster = tmp_path / "disagreement.tif"
    assert results["OUTPUT_DISAGREEMENT"] == str(raster)
    with rasterio.open(raster) as dataset:
        np.testing.assert_array_equal(dataset.read(1), DISAGREEMENT)
    layer = QgsRasterLayer(str(raster), "disagreement")  # loads disagreement.qml
    assert isinstance(layer.renderer(), QgsPalettedRasterRenderer)
    assert [(int(c.value), c.label, c.color.name()) for c in layer.renderer().classes()] == \
        list(DISAGREEMENT_LEGEND)
    log = feedback.text()
    assert "Map A: map_a" in log and "Map B: map_b" in log
    assert "1 reference pixel is nodata in map_b.tif" in log


def test_a_line_layer_is_refused_as_reference(lcfusion_provider, tmp_path, check):
    path = tmp_path / "lines.gpkg"
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = source.CreateLayer("reference", None, ogr.wkbLineString)
    layer.CreateField(ogr.FieldDefn("code", ogr.OFTInteger))
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetField("code", 1)
    feature.SetGeometry(ogr.CreateGeometryFromWkt(f"LINESTRING({X0} {Y0},{X0 + 50} {Y0 - 50})"))
    layer.CreateFeature(feature)
    source = None
    ok, message = check(COMPARE, {**parameters(write_pair(tmp_path), path),
                                  "NAME_FIELD": None})
    assert not ok
    assert "[REFERENCE]" in message and "choose a layer of polygons or points" in message


def test_outputs_for_the_modeler(lcfusion_provider):
    alg = QgsApplication.processingRegistry().algorithmById(COMPARE)
    outputs = {o.name(): o for o in alg.outputDefinitions()}
    for name in ("CHI_SQUARE", "P_VALUE", "ONLY_A", "ONLY_B", "OA_A", "OA_B", "N_PIXELS"):
        assert isinstance(outputs[name], QgsProcessingOutputNumber), name
    assert {"OUTPUT_HTML", "OUTPUT_DISAGREEMENT", "METHOD"} <= set(outputs)
