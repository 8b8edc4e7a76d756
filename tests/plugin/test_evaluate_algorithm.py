"""lcfusion:evaluate through Processing: the same numbers as the engine, the report and the
matrix written, clear parameter errors."""

from __future__ import annotations

import csv

import numpy as np
import processing
import pytest
import rasterio
from helpers import RecordingReporter, write_raster
from qgis.core import (
    QgsApplication,
    QgsProcessingOutputHtml,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFileDestination,
)

from lcfusion.engine.evaluation import evaluate
from lcfusion.engine.jobs import Job, write_job

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
