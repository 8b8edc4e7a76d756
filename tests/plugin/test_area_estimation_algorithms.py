"""lcfusion:sampledesign and lcfusion:areaaccuracy through Processing: a real GeoTIFF class
map, the sample written to a GeoPackage, labelled there, and the estimates read back."""

from __future__ import annotations

import csv

import numpy as np
import processing
import pytest
from helpers import write_raster
from osgeo import ogr, osr
from qgis.core import (
    NULL,
    QgsApplication,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsVectorLayer,
)

from lcfusion.engine.reports.areas import stratified_estimates

SAMPLE, AREAS = "lcfusion:sampledesign", "lcfusion:areaaccuracy"
X0, Y0, PIXEL, NODATA = 500000.0, 5000000.0, 10.0, 255

ogr.UseExceptions()


@pytest.fixture(scope="module")
def class_map(tmp_path_factory):
    """A 20 x 30 map of 10 m pixels: classes 1 (top), 2 and 3, a nodata column; its truth has
    a third of class 1's pixels in class 2."""
    rows, cols = np.mgrid[0:20, 0:30]
    data = np.where(rows < 10, 1, np.where(cols < 18, 2, 3)).astype(np.uint8)
    data[:, 0] = NODATA
    truth = data.copy()
    truth[(data == 1) & (cols % 3 == 0)] = 2
    path = tmp_path_factory.mktemp("area-algorithms") / "map.tif"
    write_raster(path, data, origin=(X0, Y0), pixel=PIXEL, nodata=NODATA)
    return path, data, truth


def cell(x: float, y: float) -> tuple[int, int]:
    return int((Y0 - y) // PIXEL), int((x - X0) // PIXEL)


def label_points(gpkg, truth) -> None:
    """Fill the reference field of the sample in the GeoPackage, as a user would."""
    source = ogr.Open(str(gpkg), update=1)
    layer = source.GetLayer(0)
    for feature in layer:
        point = feature.GetGeometryRef()
        feature.SetField("reference", int(truth[cell(point.GetX(), point.GetY())]))
        layer.SetFeature(feature)
    source = None


def test_sample_then_estimate_areas_with_processing(lcfusion_provider, class_map, tmp_path,
                                                    recording_feedback):
    path, data, truth = class_map
    gpkg = tmp_path / "sample.gpkg"
    feedback = recording_feedback()
    drawn = processing.run(SAMPLE, {"INPUT": str(path), "TARGET_SE": 0.05, "MINIMUM": 12,
                                    "SEED": 5, "OUTPUT": str(gpkg)}, feedback=feedback)
    layer = QgsVectorLayer(str(gpkg), "sample", "ogr")
    assert layer.isValid() and layer.crs().authid() == "EPSG:32631"
    assert layer.featureCount() == drawn["N_POINTS"] >= drawn["N_TARGET"] > 0
    assert [f.name() for f in layer.fields()][-5:] == [
        "point_id", "stratum", "map_class", "class_name", "reference"]
    for feature in layer.getFeatures():
        point = feature.geometry().asPoint()
        assert data[cell(point.x(), point.y())] == feature["map_class"] == feature["stratum"]
        assert feature["reference"] == NULL  # to fill
    assert "fill their 'reference' field" in feedback.text()

    label_points(gpkg, truth)
    feedback = recording_feedback()
    results = processing.run(AREAS, {
        "INPUT": str(path), "POINTS": str(gpkg), "REFERENCE_FIELD": "reference",
        "OUTPUT_HTML": str(tmp_path / "areas.html"), "OUTPUT_CSV": str(tmp_path / "areas.csv"),
        "OUTPUT_MATRIX": "TEMPORARY_OUTPUT"}, feedback=feedback)
    assert f"{drawn['N_POINTS']} labelled in 'reference'" in feedback.text()
    assert "another stratum" not in feedback.text()  # the map the sample was drawn from

    counts = np.zeros((3, 3), dtype=np.int64)
    for feature in QgsVectorLayer(str(gpkg), "sample", "ogr").getFeatures():
        counts[feature["map_class"] - 1, feature["reference"] - 1] += 1
    mapped_ha = np.array([np.sum(data == k) * 0.01 for k in (1, 2, 3)])
    expected = stratified_estimates(counts, mapped_ha)
    assert results["OA"] == pytest.approx(expected.overall, abs=1e-12)
    assert results["OA_CI95"] == pytest.approx(expected.overall_ci, abs=1e-12)
    assert results["N_POINTS"] == drawn["N_POINTS"]
    assert results["TOTAL_AREA_HA"] == pytest.approx(mapped_ha.sum())
    rows = list(csv.DictReader(open(results["OUTPUT_CSV"], encoding="utf-8")))
    np.testing.assert_allclose([float(r["estimated_area_ha"]) for r in rows], expected.areas)
    np.testing.assert_allclose([float(r["area_ci95_ha"]) for r in rows], expected.areas_ci)
    assert float(rows[0]["estimated_area_ha"]) < float(rows[0]["mapped_area_ha"])
    assert results["OUTPUT_MATRIX"].endswith(".csv")
    assert "Area and accuracy of map.tif" in open(results["OUTPUT_HTML"],
                                                  encoding="utf-8").read()


def points_gpkg(path, values: list, field_type=ogr.OFTString, epsg: int = 32631):
    """A GeoPackage of points on the map's pixel centres with a reference field, in `epsg`."""
    driver = ogr.GetDriverByName("GPKG")
    source = driver.CreateDataSource(str(path))
    utm, srs = osr.SpatialReference(), osr.SpatialReference()
    utm.ImportFromEPSG(32631)
    srs.ImportFromEPSG(epsg)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    utm.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    transform = osr.CoordinateTransformation(utm, srs)
    layer = source.CreateLayer("points", srs, ogr.wkbPoint)
    layer.CreateField(ogr.FieldDefn("reference", field_type))
    for i, value in enumerate(values):
        feature = ogr.Feature(layer.GetLayerDefn())
        x, y, _ = transform.TransformPoint(X0 + 15 + 10 * (i % 25), Y0 - 5 - 10 * (i // 25))
        feature.SetGeometry(ogr.CreateGeometryFromWkt(f"POINT ({x!r} {y!r})"))
        if value is not None:
            feature.SetField("reference", value)
        layer.CreateFeature(feature)
    source = None
    return path


def test_bad_reference_values_and_thin_classes_are_named(lcfusion_provider, class_map,
                                                         tmp_path):
    path, _, _ = class_map
    text = points_gpkg(tmp_path / "text.gpkg", ["1", "forest", None])
    with pytest.raises(QgsProcessingException, match=r"Reference class field \[REFERENCE_FIELD"
                                                     r"\]: feature 2 has 'forest'"):
        processing.run(AREAS, {"INPUT": str(path), "POINTS": str(text),
                               "REFERENCE_FIELD": "reference",
                               "OUTPUT_HTML": str(tmp_path / "r.html")})
    # Points on class 1 only (the top rows), in WGS 84: once in the map's CRS they lie on class
    # 1 (were they lost, class 1 would be named first); classes 2 and 3 have none.
    thin = points_gpkg(tmp_path / "thin.gpkg", [1] * 50, ogr.OFTInteger, epsg=4326)
    with pytest.raises(QgsProcessingException, match=r"Sample points \(labelled\) \[POINTS\]: "
                                                     r"class 2 covers .* ha of the map but "
                                                     r"has 0 labelled points"):
        processing.run(AREAS, {"INPUT": str(path), "POINTS": str(thin),
                               "REFERENCE_FIELD": "reference",
                               "OUTPUT_HTML": str(tmp_path / "r.html")})
    assert not (tmp_path / "r.html").exists()


def test_outputs_for_the_modeler(lcfusion_provider):
    registry = QgsApplication.processingRegistry()
    sample = {o.name(): o for o in registry.algorithmById(SAMPLE).outputDefinitions()}
    areas = {o.name(): o for o in registry.algorithmById(AREAS).outputDefinitions()}
    for outputs, names in ((sample, ("N_POINTS", "N_TARGET")),
                           (areas, ("OA", "OA_CI95", "N_POINTS", "TOTAL_AREA_HA"))):
        for name in names:
            assert isinstance(outputs[name], QgsProcessingOutputNumber), name
    assert {"OUTPUT"} <= set(sample)
    assert {"OUTPUT_HTML", "OUTPUT_CSV", "OUTPUT_MATRIX"} <= set(areas)
