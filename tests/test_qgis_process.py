"""Headless end to end: the plugin through `qgis_process`, as a separate program.

`qgis_process.bin` is called directly (Debian's `qgis_process` wrapper passes a flag that 3.22
rejects). It runs with its own QGIS profile folder (QGIS_CUSTOM_CONFIG_PATH), so enabling the
plugin does not touch the user's profile.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio
from helpers import two_rank_profiles
from map_pairs import write_pair, write_points
from osgeo import gdal, ogr

import lcfusion
from lcfusion.engine.modelfile.header import read_header

QGIS_PROCESS = shutil.which("qgis_process.bin")
#: The folder that holds the `lcfusion` package (links kept: it is e.g. build/lcfusion).
PLUGIN_PARENT = Path(lcfusion.__file__).parent.parent
TIMEOUT = 300

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(QGIS_PROCESS is None, reason="qgis_process.bin is not installed"),
]


@pytest.fixture(scope="module")
def qgis_env(tmp_path_factory) -> dict[str, str]:
    """The environment of a headless QGIS that sees the lcfusion plugin, enabled in a profile
    folder of its own."""
    profile = tmp_path_factory.mktemp("qgis-profile")
    env = dict(os.environ)
    env.update({
        "QT_QPA_PLATFORM": "offscreen",
        # pytest-qgis points both at the repository's .qgis-settings: override them.
        "QGIS_CUSTOM_CONFIG_PATH": str(profile),
        "QGIS_OPTIONS_PATH": str(profile),
        "QGIS_PLUGINPATH": str(PLUGIN_PARENT),
        # The engine runs in the interpreter that runs the tests (it has torch).
        "LCFUSION_PYTHON": sys.executable,
        "XDG_RUNTIME_DIR": str(profile),
    })
    env.pop("QGIS_OPTS", None)
    result = qgis_process(env, "plugins", "enable", "lcfusion")
    assert result.returncode == 0, result.stderr
    settings = (profile / "profiles" / "default" / "QGIS" / "QGIS3.ini").read_text()
    assert "lcfusion=true" in settings  # written to our profile, not the user's
    return env


def qgis_process(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([QGIS_PROCESS, *args], env=env, capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)


def run_json(env: dict[str, str], algorithm: str, parameters: list[str]) -> dict:
    result = qgis_process(env, "--json", "run", algorithm, *parameters)
    assert result.returncode == 0, f"{algorithm} failed:\n{result.stdout}\n{result.stderr}"
    # qgis_process shows Python's resource warnings: the engine's pipes must be closed.
    assert "ResourceWarning" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def series_arguments(scene) -> list[str]:
    return [f"--INPUT={path}" for path in scene.s2_paths]


def test_list_shows_the_provider_and_its_algorithms(qgis_env):
    result = qgis_process(qgis_env, "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    start = lines.index("Land Cover Fusion")
    section = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        section.append(line.split())
    assert sorted(row[0] for row in section) == ["lcfusion:areaaccuracy",
                                                 "lcfusion:classifyfgunet",
                                                 "lcfusion:classifymrfusion",
                                                 "lcfusion:classifyrandomforest",
                                                 "lcfusion:classifytwinns",
                                                 "lcfusion:comparemaps",
                                                 "lcfusion:evaluate",
                                                 "lcfusion:exportonnx",
                                                 "lcfusion:sampledesign",
                                                 "lcfusion:trainfgunet",
                                                 "lcfusion:trainmrfusion",
                                                 "lcfusion:trainrandomforest",
                                                 "lcfusion:traintwinns"]


def test_train_then_classify_headless(qgis_env, scene, tmp_path):
    model = tmp_path / "model.lcfusion"
    trained = run_json(qgis_env, "lcfusion:trainfgunet", [
        *series_arguments(scene), f"--REFERENCE={scene.reference_path}",
        "--CLASS_FIELD=class_id", "--NAME_FIELD=class_name", "--COLOR_FIELD=class_color",
        "--EPOCHS=1", "--PATCHES_PER_EPOCH=16", "--VALIDATION_PATCHES=8", "--PATCH_SIZE=32",
        "--TILE_SIZE=128", f"--OUTPUT_MODEL={model}", f"--OUTPUT_SPLIT={tmp_path / 'split.gpkg'}"])

    results = trained["results"]
    assert results["OUTPUT_MODEL"] == str(model)
    assert model.is_file()
    assert 0.0 <= results["OA"] <= 1.0
    assert -1.0 <= results["KAPPA"] <= 1.0
    assert trained["algorithm_details"]["id"] == "lcfusion:trainfgunet"
    assert trained["inputs"]["CLASS_FIELD"] == "class_id"
    classes = read_header(model).metadata["classes"]
    names = [c["name"] for c in classes]
    assert names == [c.name for c in scene.classes]
    assert [c["color"] for c in classes] == [c.color for c in scene.classes]

    class_map = tmp_path / "map.tif"
    classified = run_json(qgis_env, "lcfusion:classifyfgunet", [
        *series_arguments(scene), f"--MODEL={model}", "--TILE_SIZE=128",
        f"--OUTPUT={class_map}"])

    assert classified["results"]["OUTPUT"] == str(class_map)
    with rasterio.open(class_map) as ds, rasterio.open(scene.s2_paths[0]) as ref:
        assert (ds.crs, ds.transform, ds.shape) == (ref.crs, ref.transform, ref.shape)
        assert ds.dtypes[0] == "uint8" and ds.nodata == 255
    qml = class_map.with_suffix(".qml")
    assert qml.is_file()
    style = qml.read_text(encoding="utf-8")
    assert 'type="paletted"' in style
    for entry in scene.classes:
        assert f'label="{entry.name}"' in style, f"{entry.name} missing from the style"
        assert f'color="{entry.color}"' in style, f"{entry.color} missing from the style"

    # The map on the split layer's test polygons, by class names, the report and matrix left
    # out (temporary files, gone with qgis_process): the training's test accuracy.
    evaluated = run_json(qgis_env, "lcfusion:evaluate", [
        f"--INPUT={class_map}", f"--REFERENCE={tmp_path / 'split.gpkg'}",
        "--CLASS_FIELD=class_name", "--PART=test"])["results"]
    assert evaluated["OA"] == pytest.approx(results["OA"], abs=1e-9)
    assert evaluated["OUTPUT_HTML"].endswith(".html")
    assert evaluated["OUTPUT_CSV"].endswith(".csv")


def test_twinns_attention_map_headless(qgis_env, scene, trained_twinns, tmp_path):
    """The optional attention map is written and styled when named on the command line."""
    attention = tmp_path / "attention.tif"
    results = run_json(qgis_env, "lcfusion:classifytwinns", [
        f"--MODEL={trained_twinns[0]}", *(f"--S1={path}" for path in scene.s1_paths),
        *(f"--S2={path}" for path in scene.s2_paths), "--TILE_SIZE=96", "--COG=true",
        f"--OUTPUT={tmp_path / 'map.tif'}", f"--OUTPUT_ATTENTION={attention}"])["results"]
    assert results["OUTPUT_ATTENTION"] == str(attention)
    with rasterio.open(attention) as ds:
        assert ds.count == 14 and ds.descriptions[-1].startswith("S2 attention 2021-")
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    assert 'type="multibandcolor"' in attention.with_suffix(".qml").read_text(encoding="utf-8")


def test_sample_design_headless(qgis_env, scene, tmp_path):
    """The scene's truth map sampled to a GeoPackage from the command line: the points lie on
    pixels of their map class, with an empty reference field to fill. (Area estimates from
    labelled points run through Processing in tests/plugin/test_area_estimation_algorithms.)"""
    points = tmp_path / "sample.gpkg"
    drawn = run_json(qgis_env, "lcfusion:sampledesign", [
        f"--INPUT={scene.truth_path}", "--MINIMUM=5", "--TOTAL=40", "--SEED=1",
        f"--OUTPUT={points}"])["results"]
    assert drawn["N_POINTS"] >= 40 and drawn["OUTPUT"] == str(points)
    source = ogr.Open(str(points))  # kept: its layer dies with it
    layer = source.GetLayer(0)
    assert layer.GetFeatureCount() == drawn["N_POINTS"]
    with rasterio.open(scene.truth_path) as truth:
        for feature in layer:
            point = feature.GetGeometryRef()
            code = next(truth.sample([(point.GetX(), point.GetY())]))[0]
            assert feature.GetField("map_class") == code
            assert feature.GetField("reference") is None


def test_compare_maps_headless_on_sample_points(qgis_env, tmp_path):
    """Two tiny maps (tests/map_pairs.py) on five sample points: one right in both, two only
    in A, one only in B, one in neither; the disagreement raster written and styled."""
    map_a, map_b = write_pair(tmp_path)
    raster = tmp_path / "disagreement.tif"
    results = run_json(qgis_env, "lcfusion:comparemaps", [
        f"--MAP_A={map_a}", f"--MAP_B={map_b}",
        f"--REFERENCE={write_points(tmp_path / 'points.gpkg')}", "--CLASS_FIELD=code",
        f"--OUTPUT_DISAGREEMENT={raster}"])["results"]
    assert (results["ONLY_A"], results["ONLY_B"], results["N_PIXELS"]) == (2, 1, 5)
    assert results["METHOD"] == "exact binomial" and results["P_VALUE"] == pytest.approx(1.0)
    assert results["OUTPUT_HTML"].endswith(".html")
    with rasterio.open(raster) as dataset:
        values = dataset.read(1)
    # the points' pixels: both right, only A (twice), only B, both wrong; then a pixel off
    # the points where the maps differ, and one where they agree
    assert [int(values[row, col]) for row, col in ((0, 0), (5, 3), (8, 2), (7, 0), (7, 5),
                                                    (4, 5), (0, 5))] == [0, 1, 1, 2, 3, 4, 255]
    assert 'label="only map B right"' in raster.with_suffix(".qml").read_text(encoding="utf-8")


def test_errors_reach_the_command_line(qgis_env, scene, tmp_path):
    """A user error is a non-zero exit with the parameter named, and no output file."""
    model = tmp_path / "model.lcfusion"
    model.write_bytes(b"not a model")
    result = qgis_process(qgis_env, "run", "lcfusion:classifyfgunet",
                          *series_arguments(scene), f"--MODEL={model}",
                          f"--OUTPUT={tmp_path / 'map.tif'}")
    assert result.returncode != 0
    assert "Model file [MODEL]: model.lcfusion is not a valid lcfusion model file" in (
        result.stdout + result.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.lcfusion"]


#: What a terminal shows of a run that went wrong, or of progress dots run into text.
ERROR_LINE = re.compile(r"error", re.IGNORECASE)
GLUED = re.compile(r"^[.\d]*\.[.\d]*[A-Za-z]|^\d+[A-Za-z]|\d[a-z]{2,}")
#: A count of one with a plural noun ("1 polygons"), or a plural left open ("rank(s)").
ONE_PLURAL = re.compile(r"(?<![\d.,])1 (?:[a-z-]+ )?(?:polygons|pixels|features|dates|bands|"
                        r"ranks|threads|chunks|splits|classes|objects|samples|epochs|trees|"
                        r"nodes|rasters|layers|values|channels|parameters)\b|\(s\)")


def assert_quiet(result: subprocess.CompletedProcess) -> None:
    """A successful run as a user reads it: no error line, each message on its own line, counts
    in the right grammatical number, no temporary file named."""
    assert result.returncode == 0, result.stdout + result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    for line in lines:
        assert not ERROR_LINE.search(line), line
        assert not GLUED.search(line), line
        assert not ONE_PLURAL.search(line), line
        assert ".lcfusion-partial-" not in line and "lcfusion-job-" not in line, line


#: The name of a stage of a run, which qgis_process prints on a line of its own.
STAGE = re.compile(r"(reference|normalisation|classifying|evaluating|done|epoch \d+/\d+)")


def assert_stages_head_their_progress(result: subprocess.CompletedProcess) -> None:
    """A stage's name comes before its progress dots, never after the first of them ("0.."
    alone on a line, then "reference"), and no stage follows "100 - done."."""
    lines = result.stdout.splitlines()
    for before, line in zip(lines, lines[1:], strict=False):
        if STAGE.fullmatch(line):
            assert not re.fullmatch(r"0\.*", before), f"{before!r} before {line!r}"
            assert not before.endswith("100 - done."), f"{line!r} after {before!r}"


def test_a_successful_run_prints_no_noise(qgis_env, scene, tmp_path):
    """Training with repeated splits, then classifying a scene whose map GDAL writes out
    block by block (a block cache smaller than the map, as with a large scene)."""
    model = tmp_path / "model.lcfusion"
    trained = qgis_process(qgis_env, "run", "lcfusion:trainfgunet", *series_arguments(scene),
                           f"--REFERENCE={scene.reference_path}", "--CLASS_FIELD=class_id",
                           "--NAME_FIELD=class_name", "--EPOCHS=1", "--PATCHES_PER_EPOCH=16",
                           "--VALIDATION_PATCHES=8", "--PATCH_SIZE=32", "--TILE_SIZE=128",
                           "--REPEATS=2", f"--OUTPUT_MODEL={model}")
    assert_quiet(trained)
    assert_stages_head_their_progress(trained)
    written = [line for line in trained.stdout.splitlines() if "model written to" in line]
    assert written == [f"model written to {model}"]
    assert "1 polygon / " in trained.stdout  # a part of one polygon, in the singular
    assert "over 2 splits" in trained.stdout
    assert "labelled pixels in" not in trained.stdout  # the engine's details need --verbose

    classified = qgis_process({**qgis_env, "GDAL_CACHEMAX": "0"}, "run",
                              "lcfusion:classifyfgunet", *series_arguments(scene),
                              f"--MODEL={model}", "--TILE_SIZE=64",
                              f"--OUTPUT={tmp_path / 'map.tif'}")
    assert_quiet(classified)
    assert_stages_head_their_progress(classified)
    assert "classifying\n0..." in classified.stdout
    with rasterio.open(tmp_path / "map.tif") as ds:
        assert ds.colorinterp[0].name == "palette" and ds.colormap(1)[1][:3] != (0, 0, 0)


def test_a_failed_run_prints_its_error_once(qgis_env, scene, tmp_path):
    """An error raised while the algorithm runs (a class with two polygons) is printed once;
    --verbose adds the engine's details."""
    reference = tmp_path / "reference.gpkg"
    gdal.VectorTranslate(str(reference), str(scene.reference_path), SQLDialect="SQLite",
                         SQLStatement="SELECT * FROM reference WHERE class_id <> 3 OR fid IN "
                                      "(SELECT fid FROM reference WHERE class_id = 3 LIMIT 2)")
    result = qgis_process(qgis_env, "--verbose", "run", "lcfusion:trainfgunet",
                          *series_arguments(scene), f"--REFERENCE={reference}",
                          "--CLASS_FIELD=class_id", f"--OUTPUT_MODEL={tmp_path / 'model.lcfusion'}")
    assert result.returncode != 0
    assert "3404 labelled pixels in 37 objects" in result.stdout
    output = result.stdout + result.stderr
    assert output.count("too few polygons per class") == 1, output
    assert "ERROR:\tReference polygons [REFERENCE]: too few polygons" in result.stderr


def test_an_engine_without_torch_is_refused_with_the_fix(qgis_env, scene, tmp_path):
    """Headless, the environment check says what to do instead of offering the action."""
    env = {**qgis_env, "LCFUSION_PYTHON": "/nonexistent/bin/python3"}
    result = qgis_process(env, "run", "lcfusion:trainfgunet", *series_arguments(scene),
                          f"--REFERENCE={scene.reference_path}", "--CLASS_FIELD=class_id",
                          f"--OUTPUT_MODEL={tmp_path / 'model.lcfusion'}")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert ("The lcfusion engine cannot run with the Python /nonexistent/bin/python3: "
            "/nonexistent/bin/python3 does not exist") in output
    assert "'make setup' in" in output
    assert list(tmp_path.iterdir()) == []


def test_training_on_a_compute_profile_headless(qgis_env, scene, tmp_path):
    """COMPUTE names a profile of the LCFUSION_PROFILES file; the run goes through mpirun."""
    profiles = two_rank_profiles(tmp_path / "profiles.toml", tmp_path / "work")
    env = {**qgis_env, "LCFUSION_PROFILES": str(profiles)}
    model = tmp_path / "model.lcfusion"
    result = qgis_process(env, "run", "lcfusion:trainfgunet", *series_arguments(scene),
                          f"--REFERENCE={scene.reference_path}", "--CLASS_FIELD=class_id",
                          "--EPOCHS=1", "--PATCHES_PER_EPOCH=16", "--VALIDATION_PATCHES=8",
                          "--PATCH_SIZE=32", "--TILE_SIZE=128", "--COMPUTE=two",
                          f"--OUTPUT_MODEL={model}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "compute profile two: mpi: mpirun with 2 ranks" in result.stdout
    assert "the weights are identical on the 2 ranks" in result.stdout
    assert read_header(model).family == "fgunet"
    unknown = qgis_process(env, "run", "lcfusion:trainfgunet", *series_arguments(scene),
                           f"--REFERENCE={scene.reference_path}", "--CLASS_FIELD=class_id",
                           "--COMPUTE=gpu", f"--OUTPUT_MODEL={tmp_path / 'other.lcfusion'}")
    assert unknown.returncode != 0
    assert "unknown compute profile 'gpu'" in unknown.stdout + unknown.stderr


EXAMPLE_MODEL = Path(lcfusion.__file__).parent / "resources" / "models" / "fgunet_chain.model3"


def test_the_example_modeler_chain_runs_headless(qgis_env, scene, tmp_path):
    """resources/models/fgunet_chain.model3: train FG-UNET -> classify -> evaluate."""
    outputs = {"train:model": tmp_path / "model.lcfusion",
               "train:training_report": tmp_path / "training.html",
               "classify:land_cover": tmp_path / "landcover.tif",
               "evaluate:evaluation_report": tmp_path / "evaluation.html",
               "evaluate:confusion_matrix": tmp_path / "matrix.csv"}
    result = qgis_process(qgis_env, "run", str(EXAMPLE_MODEL), "--",
                          *(f"series={path}" for path in scene.s2_paths),
                          f"training={scene.reference_path}", f"evaluation={scene.reference_path}",
                          "class_field=class_id", "name_field=class_name",
                          "color_field=class_color", "epochs=1", "patches_per_epoch=32",
                          *(f"{name}={path}" for name, path in outputs.items()))
    assert result.returncode == 0, result.stdout + result.stderr
    for path in outputs.values():
        assert path.is_file() and path.stat().st_size > 0, path
    with rasterio.open(outputs["classify:land_cover"]) as ds, \
            rasterio.open(scene.s2_paths[0]) as ref:
        assert (ds.crs, ds.transform, ds.shape) == (ref.crs, ref.transform, ref.shape)
        classes = json.loads(ds.tags()["LCFUSION_CLASSES"])
        colormap = ds.colormap(1)
    # The chain's optional name and colour fields reach the map: the sample classes' own.
    named = {entry["code"]: entry["name"] for entry in classes}
    assert named == {c.code: c.name for c in scene.classes.classes}
    assert {code: colormap[code][:3] for code in named} == {
        c.code: c.rgb() for c in scene.classes.classes}
    assert "rows = reference, columns = prediction" in outputs[
        "evaluate:confusion_matrix"].read_text()
    assert "Learning curves" in outputs["train:training_report"].read_text()
