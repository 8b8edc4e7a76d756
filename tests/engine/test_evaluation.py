"""The evaluate command against a hand-computed confusion matrix on a tiny class map."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import rasterio
from helpers import RecordingReporter, write_raster
from osgeo import ogr, osr

from lcfusion.engine.cli import main
from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.jobs import Job, write_job
from lcfusion.engine.reports import evaluation
from lcfusion.engine.reports.evaluation import evaluate

ogr.UseExceptions()

X0, Y0, PIXEL = 500000.0, 5000000.0, 10.0
NODATA = 255

#: The class map (6 x 4 pixels, nodata 255). Polygons: water = rows 0-1 x cols 0-2,
#: forest = rows 0-1 x cols 3-5, crop = rows 2-3 x cols 0-3; cols 4-5 of rows 2-3 are
#: outside every polygon (their codes 9 and 1 must not count).
CLASS_MAP = np.array([[1, 1, 1, 2, 2, 2],
                      [1, 2, NODATA, 2, 2, 3],
                      [3, 3, 1, 9, 9, 9],
                      [3, 3, NODATA, 3, 1, 1]], dtype=np.uint8)

# Hand count, rows = reference (water, forest, crop), columns = prediction (water, forest,
# crop, code 9):
#   water  (1 1 1 / 1 2 nodata)       -> 4 water, 1 forest; 1 nodata skipped
#   forest (2 2 2 / 2 2 3)            -> 5 forest, 1 crop
#   crop   (3 3 1 9 / 3 3 nodata 3)   -> 1 water, 5 crop, 1 code 9; 1 nodata skipped
CONFUSION = [[4, 1, 0, 0],
             [0, 5, 1, 0],
             [1, 0, 5, 1],
             [0, 0, 0, 0]]
N_PIXELS = 18                   # 20 reference pixels - 2 nodata
OA = 14 / 18                    # 4 + 5 + 5 on the diagonal
# p_e = (5 * 5 + 6 * 6 + 7 * 6 + 0 * 1) / 18^2 = 103 / 324 (row x column totals)
KAPPA = (14 / 18 - 103 / 324) / (1 - 103 / 324)     # = 149 / 221
PRECISION = [4 / 5, 5 / 6, 5 / 6, 0.0]              # diagonal / column totals (5, 6, 6, 1)
RECALL = [4 / 5, 5 / 6, 5 / 7, 0.0]                 # diagonal / row totals (5, 6, 7, 0)
F1 = [0.8, 5 / 6, 10 / 13, 0.0]                     # 2 TP / (2 TP + FP + FN)
MEAN_F1 = (0.8 + 5 / 6 + 10 / 13) / 3               # the 3 reference classes = 937 / 1170
SUPPORT = [5, 6, 7, 0]
NAMES = ["water", "forest", "crop", "code 9 (not in the reference)"]


def utm(epsg: int = 32631) -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def box(col0: int, row0: int, col1: int, row1: int) -> ogr.Geometry:
    """A polygon over pixel columns [col0, col1) and rows [row0, row1) of the class map."""
    x0, x1 = X0 + PIXEL * col0, X0 + PIXEL * col1
    y0, y1 = Y0 - PIXEL * row0, Y0 - PIXEL * row1
    return ogr.CreateGeometryFromWkt(
        f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))")


def write_reference(path, epsg: int = 32631, names: bool = True) -> str:
    """Three polygons: water (code 1), forest (2), crop (3)."""
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = source.CreateLayer("reference", utm(epsg), ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("code", ogr.OFTInteger))
    layer.CreateField(ogr.FieldDefn("label", ogr.OFTString))
    for code, name, geometry in ((1, "water", box(0, 0, 3, 2)), (2, "forest", box(3, 0, 6, 2)),
                                 (3, "crop", box(0, 2, 4, 4))):
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("code", code)
        if names:
            feature.SetField("label", name)
        feature.SetGeometry(geometry)
        layer.CreateFeature(feature)
    source = None
    return str(path)


def write_map(path, data=CLASS_MAP, nodata=NODATA, tags=None, crs="EPSG:32631"):
    write_raster(path, data, origin=(X0, Y0), pixel=PIXEL, crs=crs, nodata=nodata)
    if tags:
        with rasterio.open(path, "r+") as dataset:
            dataset.update_tags(**tags)
    return path


def evaluate_job(tmp_path, class_map, reference, name_field="label", class_field="code"):
    return Job.load(write_job(
        tmp_path / "job", "evaluate", inputs={"class_map": str(class_map)},
        reference={"path": str(reference), "layer": "reference", "class_field": class_field,
                   "name_field": name_field},
        outputs={"report": str(tmp_path / "report.html"),
                 "matrix": str(tmp_path / "matrix.csv")}))


@pytest.fixture
def tiny(tmp_path):
    """(class map, reference polygons) of the hand-computed example."""
    return write_map(tmp_path / "map.tif"), write_reference(tmp_path / "reference.gpkg")


def test_metrics_match_the_hand_computed_example(tmp_path, tiny):
    reporter = RecordingReporter()
    outputs = evaluate(evaluate_job(tmp_path, *tiny), reporter)

    assert outputs["N_PIXELS"] == N_PIXELS
    assert outputs["OA"] == pytest.approx(OA)
    assert outputs["KAPPA"] == pytest.approx(KAPPA)
    assert outputs["KAPPA"] == pytest.approx(149 / 221)
    assert outputs["MEAN_F1"] == pytest.approx(MEAN_F1)
    assert outputs["MEAN_F1"] == pytest.approx(937 / 1170)
    assert outputs["OUTPUT_HTML"] == str(tmp_path / "report.html")
    assert outputs["OUTPUT_CSV"] == str(tmp_path / "matrix.csv")
    log = reporter.text()
    assert "2 reference pixels are nodata in the class map and were skipped" in log
    assert "code 9, which is not a reference class, on 1 reference pixel; it counts" in log


def test_the_csv_holds_the_matrix_with_its_axes(tmp_path, tiny):
    evaluate(evaluate_job(tmp_path, *tiny), RecordingReporter())
    with open(tmp_path / "matrix.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["rows = reference, columns = prediction", *NAMES]
    # The extra column is a map code, not a reference class: it has no row.
    assert [row[0] for row in rows[1:]] == NAMES[:3]
    assert [[int(v) for v in row[1:]] for row in rows[1:]] == CONFUSION[:3]


def test_the_report_holds_metrics_matrix_and_details(tmp_path, tiny):
    evaluate(evaluate_job(tmp_path, *tiny), RecordingReporter())
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<h1>Evaluation of map.tif</h1>" in page
    assert f"{OA:.4f}" in page and f"{KAPPA:.4f}" in page and f"{MEAN_F1:.4f}" in page
    assert "rows: reference, columns: prediction" in page
    assert "code 9 (not in the reference)" in page
    assert "pixels skipped (nodata in the class map)" in page
    for name, precision, recall, f1, support in zip(NAMES, PRECISION, RECALL, F1, SUPPORT,
                                                    strict=True):
        assert (f'<td class="text">{name}</td><td>{precision:.4f}</td><td>{recall:.4f}</td>'
                f"<td>{f1:.4f}</td><td>{support}</td>") in page


def test_per_class_metrics_and_the_full_matrix(tmp_path, tiny, monkeypatch):
    captured = {}
    original = evaluation.write_confusion_csv

    def keep(path, accuracy):
        captured["accuracy"] = accuracy
        return original(path, accuracy)

    monkeypatch.setattr(evaluation, "write_confusion_csv", keep)
    evaluate(evaluate_job(tmp_path, *tiny), RecordingReporter())
    accuracy = captured["accuracy"]
    assert accuracy.confusion == CONFUSION
    assert [row["name"] for row in accuracy.per_class] == NAMES
    assert [row["code"] for row in accuracy.per_class] == [1, 2, 3, 9]
    assert [row["precision"] for row in accuracy.per_class] == pytest.approx(PRECISION)
    assert [row["recall"] for row in accuracy.per_class] == pytest.approx(RECALL)
    assert [row["f1"] for row in accuracy.per_class] == pytest.approx(F1)
    assert [row["support"] for row in accuracy.per_class] == SUPPORT
    assert [row.get("in_reference", True) for row in accuracy.per_class] == [True] * 3 + [False]


def test_small_windows_give_the_same_counts(tmp_path, tiny, monkeypatch):
    """The map is read by windows: 3 x 3 windows cut the polygons and the result holds."""
    monkeypatch.setattr(evaluation, "WINDOW", 3)
    outputs = evaluate(evaluate_job(tmp_path, *tiny), RecordingReporter())
    assert (outputs["N_PIXELS"], outputs["OA"]) == (N_PIXELS, pytest.approx(OA))
    assert outputs["KAPPA"] == pytest.approx(KAPPA)


def test_names_come_from_the_class_map_without_a_name_field(tmp_path):
    legend = [{"index": 0, "code": 1, "name": "Water", "color": "#0000ff"},
              {"index": 1, "code": 2, "name": "Forest", "color": "#00ff00"},
              {"index": 2, "code": 9, "name": "Clouds", "color": "#ffffff"}]
    class_map = write_map(tmp_path / "map.tif", tags={"LCFUSION_CLASSES": json.dumps(legend)})
    reference = write_reference(tmp_path / "reference.gpkg", names=False)
    evaluate(evaluate_job(tmp_path, class_map, reference, name_field=None), RecordingReporter())
    with open(tmp_path / "matrix.csv", newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert header[1:] == ["Water", "Forest", "class 3", "code 9 Clouds (not in the reference)"]


def test_the_command_line_runs_an_evaluate_job(tmp_path, tiny, capsys):
    job = evaluate_job(tmp_path, *tiny)
    assert main(["evaluate", str(job.folder / "job.json")]) == 0
    assert "OA: 0.7777" in capsys.readouterr().out
    assert (tmp_path / "report.html").is_file() and (tmp_path / "matrix.csv").is_file()


def test_polygons_in_a_crs_far_from_the_map_name_both_crs(tmp_path):
    """The same numbers labelled EPSG:32632 land 470 km east of the map once reprojected."""
    class_map = write_map(tmp_path / "map.tif")
    reference = write_reference(tmp_path / "reference.gpkg", epsg=32632)
    with pytest.raises(LcfusionError) as error:
        evaluate(evaluate_job(tmp_path, class_map, reference), RecordingReporter())
    assert error.value.parameter == "REFERENCE"
    assert "none of the 3 polygons overlaps the rasters" in error.value.message
    assert ("CRS mismatch: the polygons are in EPSG:32632, the class map in EPSG:32631"
            in error.value.message)
    assert not (tmp_path / "report.html").exists()
    assert not (tmp_path / "matrix.csv").exists()


def test_a_map_of_nodata_only_is_refused(tmp_path):
    class_map = write_map(tmp_path / "map.tif", np.full((4, 6), NODATA, dtype=np.uint8))
    reference = write_reference(tmp_path / "reference.gpkg")
    with pytest.raises(LcfusionError, match="holds no class code on any of the 20 pixels") as e:
        evaluate(evaluate_job(tmp_path, class_map, reference), RecordingReporter())
    assert e.value.parameter == "INPUT"


@pytest.mark.parametrize(("data", "expected"), [
    (np.zeros((2, 4, 6), dtype=np.uint8), "has 2 bands"),
    (np.zeros((4, 6), dtype=np.float32), "holds float32 values"),
])
def test_a_map_that_is_not_one_band_of_codes_is_refused(tmp_path, data, expected):
    class_map = write_map(tmp_path / "map.tif", data, nodata=None)
    reference = write_reference(tmp_path / "reference.gpkg")
    with pytest.raises(LcfusionError, match=expected) as error:
        evaluate(evaluate_job(tmp_path, class_map, reference), RecordingReporter())
    assert error.value.parameter == "INPUT"


def test_a_missing_class_field_is_named(tmp_path, tiny):
    with pytest.raises(LcfusionError, match="'klass' is not in the reference layer") as error:
        evaluate(evaluate_job(tmp_path, *tiny, class_field="klass"), RecordingReporter())
    assert error.value.parameter == "CLASS_FIELD"


def test_outputs_are_checked_before_any_work(tmp_path, tiny):
    job = Job.load(write_job(
        tmp_path / "job", "evaluate", inputs={"class_map": str(tiny[0])},
        reference={"path": tiny[1], "class_field": "code"},
        outputs={"report": str(tmp_path / "missing" / "report.html"),
                 "matrix": str(tmp_path / "matrix.csv")}))
    with pytest.raises(LcfusionError, match="does not exist") as error:
        evaluate(job, RecordingReporter())
    assert error.value.parameter == "OUTPUT_HTML"
