"""lcfusion:evaluate through Processing: the same numbers as the engine, the report and the
matrix written, clear parameter errors."""

from __future__ import annotations

import csv
import gc
import json

import numpy as np
import processing
import pytest
import rasterio
from helpers import RecordingReporter, write_raster
from osgeo import ogr, osr
from qgis.core import (
    QgsApplication,
    QgsProcessingException,
    QgsProcessingOutputHtml,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFileDestination,
)

from lcfusion.engine.jobs import Job, write_job
from lcfusion.engine.reports.evaluation import evaluate

EVALUATE = "lcfusion:evaluate"
NODATA = 255


@pytest.fixture(scope="module")
def class_map(scene, tmp_path_factory):
    """The scene's truth with errors: forest predicted as water in the top half, grassland as
    the unknown code 9 everywhere, and a nodata stripe along the left edge."""
    with rasterio.open(scene.truth_path) as source:
        truth = source.read(1)
        crs, transform = source.crs, source.transform
    data = truth.astype(np.uint8)
    top = np.arange(truth.shape[0])[:, None] < truth.shape[0] // 2
    data[(truth == 2) & top] = 1
    data[truth == 5] = 9
    data[:, :8] = NODATA
    path = tmp_path_factory.mktemp("evaluate") / "map.tif"
    write_raster(path, data, origin=(transform.c, transform.f), pixel=transform.a,
                 crs=crs.to_string(), nodata=NODATA)
    return path


@pytest.fixture(scope="module")
def engine_result(scene, class_map, tmp_path_factory) -> dict:
    """The engine's evaluation of the class map, run directly (no QGIS)."""
    folder = tmp_path_factory.mktemp("engine-evaluate")
    job = Job.load(write_job(
        folder, "evaluate", inputs={"class_map": str(class_map)},
        reference={"path": str(scene.reference_path), "layer": scene.reference_layer,
                   "class_field": "class_id", "name_field": "class_name"},
        outputs={"report": str(folder / "report.html"), "matrix": str(folder / "matrix.csv")}))
    return evaluate(job, RecordingReporter())


def parameters(scene, class_map, **changes) -> dict:
    return {"INPUT": str(class_map),
            "REFERENCE": f"{scene.reference_path}|layername={scene.reference_layer}",
            "CLASS_FIELD": "class_id", "NAME_FIELD": "class_name",
            "OUTPUT_HTML": "TEMPORARY_OUTPUT", "OUTPUT_CSV": "TEMPORARY_OUTPUT", **changes}


def test_processing_gives_the_engines_numbers_and_files(lcfusion_provider, scene, class_map,
                                                        engine_result, tmp_path,
                                                        recording_feedback):
    feedback = recording_feedback()
    results = processing.run(EVALUATE, parameters(
        scene, class_map, OUTPUT_HTML=str(tmp_path / "report.html"),
        OUTPUT_CSV=str(tmp_path / "matrix.csv")), feedback=feedback)

    for key in ("OA", "KAPPA", "MEAN_F1"):
        assert results[key] == pytest.approx(engine_result[key], abs=1e-12), key
    assert results["N_PIXELS"] == engine_result["N_PIXELS"]
    assert 0.3 < results["OA"] < 0.95  # the errors were counted, the rest is right
    assert results["OUTPUT_HTML"] == str(tmp_path / "report.html")
    assert results["OUTPUT_CSV"] == str(tmp_path / "matrix.csv")

    matrix = (tmp_path / "matrix.csv").read_text(encoding="utf-8")
    assert matrix == open(engine_result["OUTPUT_CSV"], encoding="utf-8").read()
    rows = list(csv.reader(matrix.splitlines()))
    assert rows[0][0] == "rows = reference, columns = prediction"
    assert rows[0][1:] == [c.name for c in scene.classes] + ["code 9 (not in the reference)"]
    assert [row[0] for row in rows[1:]] == [c.name for c in scene.classes]
    assert sum(int(v) for row in rows[1:] for v in row[1:]) == results["N_PIXELS"]
    grassland = [c.name for c in scene.classes].index("grassland")
    assert int(rows[1 + grassland][-1]) > 0  # grassland pixels went to code 9

    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<h1>Evaluation of map.tif</h1>" in page
    assert "rows = reference, columns = prediction" in page
    assert f"{results['OA']:.4f}" in page
    assert "reference polygons</b></td><td class=\"text\">reference" in page
    log = feedback.text()
    assert "reference pixels are nodata in the class map and were skipped" in log
    assert "code 9, which is not a reference class" in log


def test_outputs_default_to_temporary_files(lcfusion_provider, scene, class_map,
                                            engine_result):
    results = processing.run(EVALUATE, parameters(scene, class_map))
    assert results["OUTPUT_HTML"].endswith(".html")
    assert results["OUTPUT_CSV"].endswith(".csv")
    assert "Evaluation of map.tif" in open(results["OUTPUT_HTML"], encoding="utf-8").read()
    assert results["N_PIXELS"] == engine_result["N_PIXELS"]


def test_outputs_for_the_modeler(lcfusion_provider):
    alg = QgsApplication.processingRegistry().algorithmById(EVALUATE)
    outputs = {o.name(): o for o in alg.outputDefinitions()}
    for name in ("OA", "KAPPA", "MEAN_F1", "N_PIXELS"):
        assert isinstance(outputs[name], QgsProcessingOutputNumber), name
    assert isinstance(outputs["OUTPUT_HTML"], QgsProcessingOutputHtml)
    report = alg.parameterDefinition("OUTPUT_HTML")
    matrix = alg.parameterDefinition("OUTPUT_CSV")
    assert isinstance(report, QgsProcessingParameterFileDestination)
    assert (report.defaultFileExtension(), matrix.defaultFileExtension()) == ("html", "csv")


def test_a_multi_band_raster_is_refused_by_name(lcfusion_provider, scene, check):
    ok, message = check(EVALUATE, parameters(scene, scene.s2_paths[0]))
    assert not ok
    assert message.startswith("Class map (class codes, nodata where unclassified) [INPUT]: ")
    assert "has 10 bands; choose a single-band class map" in message


def test_a_missing_class_field_is_refused_by_name(lcfusion_provider, scene, class_map, check):
    ok, message = check(EVALUATE, parameters(scene, class_map, NAME_FIELD="label"))
    assert not ok
    assert "[NAME_FIELD]" in message and "'label' is not in the reference layer" in message


# A 6 x 4 map whose class table numbers water 1, forest 2, crop 3 (not in alphabetical order)
# and polygons that carry the names only. Hand count by polygon: water (1 1 1 / 1 2 nodata)
# 4 right of 5; forest (2 2 2 / 2 2 3) 5 of 6; crop (3 3 1 9 / 3 3 nodata 3) 5 of 7.
TABLE_MAP = np.array([[1, 1, 1, 2, 2, 2],
                      [1, 2, NODATA, 2, 2, 3],
                      [3, 3, 1, 9, 9, 9],
                      [3, 3, NODATA, 3, 1, 1]], dtype=np.uint8)
TABLE_OA = (4 + 5 + 5) / 18
TABLE = [{"index": 0, "code": 1, "name": "water", "color": "#1f78b4"},
         {"index": 1, "code": 2, "name": "forest", "color": "#33a02c"},
         {"index": 2, "code": 3, "name": "crop", "color": "#ffff99"}]
X0, Y0, PIXEL = 500000.0, 5000000.0, 10.0


def table_map(path, with_table: bool = True):
    write_raster(path, TABLE_MAP, origin=(X0, Y0), pixel=PIXEL, crs="EPSG:32631",
                 nodata=NODATA)
    if with_table:
        with rasterio.open(path, "r+") as dataset:
            dataset.update_tags(LCFUSION_CLASSES=json.dumps(TABLE))
    return path


def named_polygons(path, names=("Water ", "FOREST", "crop"), parts=("test", "train", "test"),
                   boxes=((0, 0, 3, 2), (3, 0, 6, 2), (0, 2, 4, 4))):
    """Three polygons (water, forest, crop, over the map's rows 0-1 / 0-1 / 2-3; `boxes` as
    columns and rows [col0, row0, col1, row1)) holding text names and a `part` field, as the
    split layer of a training run has."""
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32631)
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = source.CreateLayer("polygons", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("label", ogr.OFTString))
    layer.CreateField(ogr.FieldDefn("part", ogr.OFTString))
    for name, part, (col0, row0, col1, row1) in zip(
            names, parts, boxes, strict=True):
        x0, x1 = X0 + PIXEL * col0, X0 + PIXEL * col1
        y0, y1 = Y0 - PIXEL * row0, Y0 - PIXEL * row1
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("label", name)
        feature.SetField("part", part)
        feature.SetGeometry(ogr.CreateGeometryFromWkt(
            f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"))
        layer.CreateFeature(feature)
    source = None
    return f"{path}|layername=polygons"


def named_parameters(class_map, polygons, **changes) -> dict:
    return {"INPUT": str(class_map), "REFERENCE": polygons, "CLASS_FIELD": "label",
            "OUTPUT_HTML": "TEMPORARY_OUTPUT", "OUTPUT_CSV": "TEMPORARY_OUTPUT", **changes}


def test_text_classes_take_the_codes_of_the_maps_class_table(lcfusion_provider, tmp_path,
                                                              recording_feedback):
    """Alphabetical numbering would make crop 1 and water 3: the map's table says otherwise."""
    feedback = recording_feedback()
    results = processing.run(EVALUATE, named_parameters(
        table_map(tmp_path / "map.tif"), named_polygons(tmp_path / "polygons.gpkg")),
        feedback=feedback)
    assert results["N_PIXELS"] == 18
    assert results["OA"] == pytest.approx(TABLE_OA)
    rows = list(csv.reader(open(results["OUTPUT_CSV"], encoding="utf-8")))
    assert rows[0][1:] == ["water", "forest", "crop", "code 9 (not in the reference)"]
    assert [int(v) for v in rows[1][1:]] == [4, 1, 0, 0]  # water
    log = feedback.text()
    assert "the names of the class field 'label' take the codes of the class map's table" in log
    assert "code 1, which is not a reference class" not in log
    assert "code 9, which is not a reference class" in log


def test_a_name_the_map_does_not_know_is_refused(lcfusion_provider, tmp_path):
    parameters = named_parameters(table_map(tmp_path / "map.tif"), named_polygons(
        tmp_path / "polygons.gpkg", names=("water", "wetland", "crop")))
    with pytest.raises(QgsProcessingException) as error:
        processing.run(EVALUATE, parameters)
    message = str(error.value)
    assert "[CLASS_FIELD]" in message
    assert "'wetland' is not a class of the class map" in message
    assert "its classes: 1 water, 2 forest, 3 crop" in message


def test_text_classes_without_a_class_table_are_numbered_and_said_so(lcfusion_provider, tmp_path,
                                                                      recording_feedback):
    feedback = recording_feedback()
    results = processing.run(EVALUATE, named_parameters(
        table_map(tmp_path / "map.tif", with_table=False),
        named_polygons(tmp_path / "polygons.gpkg", names=("water", "forest", "crop"))),
        feedback=feedback)
    assert results["N_PIXELS"] == 18
    assert ("the class map has no class table: the names of the class field 'label' are "
            "numbered in alphabetical order (1 crop, 2 forest, 3 water)") in feedback.text()


def test_the_report_and_matrix_may_be_omitted(lcfusion_provider, tmp_path):
    """As qgis_process calls it: no OUTPUT_HTML nor OUTPUT_CSV; both go to temporary files."""
    results = processing.run(EVALUATE, {
        "INPUT": str(table_map(tmp_path / "map.tif")),
        "REFERENCE": named_polygons(tmp_path / "polygons.gpkg"), "CLASS_FIELD": "label"})
    assert results["OA"] == pytest.approx(TABLE_OA)
    assert "Evaluation of map.tif" in open(results["OUTPUT_HTML"], encoding="utf-8").read()
    assert open(results["OUTPUT_CSV"], encoding="utf-8").readline().startswith('"rows = reference')


def test_the_part_filter_keeps_only_that_parts_polygons(lcfusion_provider, tmp_path,
                                                         recording_feedback):
    """Water and crop are 'test': 4 of 5 and 5 of 7 right; forest ('train') is left out."""
    feedback = recording_feedback()
    results = processing.run(EVALUATE, named_parameters(
        table_map(tmp_path / "map.tif"), named_polygons(tmp_path / "polygons.gpkg"),
        PART="test"), feedback=feedback)
    assert results["N_PIXELS"] == 12
    assert results["OA"] == pytest.approx(9 / 12)
    assert "2 of 3 reference features are in the 'test' part" in feedback.text()


def test_a_part_leaves_out_pixels_it_shares_with_another_class(lcfusion_provider, tmp_path,
                                                                recording_feedback):
    """The forest ('train') polygon also covers column 2 of water ('test'): those 2 pixels are
    ambiguous, as in training, so water keeps 4 (3 right) and crop 7 (5 right)."""
    feedback = recording_feedback()
    polygons = named_polygons(tmp_path / "polygons.gpkg",
                              boxes=((0, 0, 3, 2), (2, 0, 6, 2), (0, 2, 4, 4)))
    results = processing.run(EVALUATE, named_parameters(
        table_map(tmp_path / "map.tif"), polygons, PART="test"), feedback=feedback)
    assert results["N_PIXELS"] == 11
    assert results["OA"] == pytest.approx(8 / 11)
    log = feedback.text()
    assert ("2 pixels are covered by polygons of different classes (2 polygons concerned)"
            in log and "REFERENCE" in log)
    assert "2 of 3 reference features are in the 'test' part" in log
    assert "12 labelled pixels in the 2 polygons of the 'test' part, 2 classes" in log
    assert "holds code 2, which is not a reference class, on 1 reference pixel; it counts" in log
    assert "3 reference features" not in log.replace("of 3 reference features", "")


def test_a_part_filter_needs_a_part_field(lcfusion_provider, scene, class_map, check):
    ok, message = check(EVALUATE, parameters(scene, class_map, PART="test"))
    assert not ok
    assert "[PART]" in message
    assert "Keeping the test polygons needs a field 'part' in the reference layer" in message


def test_text_codes_are_matched_as_codes(lcfusion_provider, tmp_path):
    """A text field of whole numbers holds codes, not names the map's table must know."""
    results = processing.run(EVALUATE, named_parameters(
        table_map(tmp_path / "map.tif"),
        named_polygons(tmp_path / "polygons.gpkg", names=("1", "2", "03"))))
    assert results["N_PIXELS"] == 18
    assert results["OA"] == pytest.approx(TABLE_OA)


def test_relative_paths_are_taken_from_the_working_folder(lcfusion_provider, tmp_path,
                                                          monkeypatch):
    """As `qgis_process run lcfusion:evaluate -- INPUT=map.tif ... OUTPUT_CSV=matrix.csv` in a
    shell: the map is found and the matrix lands there, not in the job's temporary folder."""
    table_map(tmp_path / "map.tif")
    named_polygons(tmp_path / "polygons.gpkg")
    monkeypatch.chdir(tmp_path)
    results = processing.run(EVALUATE, named_parameters(
        "map.tif", "polygons.gpkg|layername=polygons", OUTPUT_CSV="matrix.csv"))
    assert results["OUTPUT_CSV"] == str(tmp_path / "matrix.csv")
    assert (tmp_path / "matrix.csv").read_text(encoding="utf-8").startswith('"rows = reference')
    gc.collect()  # the layer of "map.tif" writes its statistics beside it while still here
