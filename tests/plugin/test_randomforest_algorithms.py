"""The Random Forest baseline through Processing: train then classify, and the dialog's checks
of the chosen source's inputs."""

from __future__ import annotations

import processing
import pytest
import rasterio
from qgis.core import (
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)

from lcfusion.engine.jobs import Job, write_job
from lcfusion.engine.modelheader import read_header
from lcfusion.engine.progress import NullReporter

TRAIN = "lcfusion:trainrandomforest"
CLASSIFY = "lcfusion:classifyrandomforest"
S2, S1S2, PANMS = 0, 1, 2

TINY_FOREST = {"N_TREES": 10, "SAMPLES_PER_CLASS": 100, "TILE_SIZE": 64}


def reference(scene) -> dict:
    return {"REFERENCE": f"{scene.reference_path}|layername={scene.reference_layer}",
            "CLASS_FIELD": "class_id", "NAME_FIELD": "class_name"}


def train_parameters(scene, **changes) -> dict:
    return {"SOURCE": S2, "S2": [str(p) for p in scene.s2_paths],
            "S2_MASK": [str(scene.s2_cloud_mask_path)], **reference(scene),
            "OUTPUT_MODEL": "TEMPORARY_OUTPUT", **TINY_FOREST, **changes}


@pytest.fixture(scope="module")
def s2_forest(tmp_path_factory, scene):
    """A Random Forest trained by the engine on the scene's S2 series."""
    from lcfusion.engine.randomforest import train_randomforest

    folder = tmp_path_factory.mktemp("s2-forest")
    job = write_job(folder, "train-randomforest",
                    inputs={"s2": {"paths": [str(p) for p in scene.s2_paths]}},
                    reference={"path": str(scene.reference_path), "layer": "reference",
                               "class_field": "class_id"},
                    split={"seed": 1}, settings={"n_trees": 5, "samples_per_class": 50},
                    outputs={"model": str(folder / "model.lcfusion")})
    train_randomforest(Job.load(job), NullReporter())
    return folder / "model.lcfusion"


def test_train_then_classify_through_processing(lcfusion_provider, scene, tmp_path,
                                                recording_feedback):
    feedback = recording_feedback()
    model = tmp_path / "forest.lcfusion"
    results = processing.run(TRAIN, train_parameters(
        scene, FEATURES=2, PATCH_SIZE=3, OUTPUT_MODEL=str(model), REPEATS=2, SEED=4,
        OUTPUT_SPLIT=str(tmp_path / "split.gpkg")), feedback=feedback)
    assert 0.5 < results["OA"] <= 1.0
    meta = read_header(model).metadata
    # With repeats, the split layer is the first split's: the kept model's, seed 4.
    split = QgsVectorLayer(results["OUTPUT_SPLIT"], "split", "ogr")
    parts = [(f["class_id"], f["part"], f["split_seed"]) for f in split.getFeatures()]
    assert len(parts) == 40 and {seed for _, _, seed in parts} == {4}
    assert meta["training"]["split"]["seed"] == 4
    for row in meta["training"]["split_summary"]:
        for part in ("train", "validation", "test"):
            assert parts.count((row["code"], part, 4)) == row[f"{part}_objects"]
    assert meta["family"] == "randomforest" and meta["inputs"]["source"] == "s2"
    assert (meta["architecture"]["features"], meta["architecture"]["patch_size"]) == (
        "patch_stats", 3)
    assert meta["inputs"]["s2"]["masked"] and meta["inputs"]["s2"]["gapfill"]
    assert meta["training"]["settings"]["n_trees"] == 10
    log = feedback.text("info")
    assert "Source: Sentinel-2 time series." in log and "Random Forest: 10 trees" in log

    context = QgsProcessingContext()
    context.setProject(QgsProject())
    class_map = tmp_path / "map.tif"
    processing.run(CLASSIFY, {"MODEL": str(model), "S2": [str(p) for p in scene.s2_paths],
                              "OUTPUT": str(class_map)}, context=context)
    with rasterio.open(class_map) as out, rasterio.open(scene.s2_paths[0]) as s2:
        assert out.transform == s2.transform and out.read(1).shape == (96, 96)
    layer = QgsRasterLayer(str(class_map), "map")
    assert isinstance(layer.renderer(), QgsPalettedRasterRenderer)


def test_pan_ms_source_needs_only_pan_and_ms(lcfusion_provider, scene, tmp_path):
    model = tmp_path / "panms.lcfusion"
    processing.run(TRAIN, {"SOURCE": PANMS, "PAN": str(scene.pan_path),
                           "MS": str(scene.ms_path), **reference(scene), **TINY_FOREST,
                           "OUTPUT_MODEL": str(model)})
    meta = read_header(model).metadata
    assert meta["inputs"]["source"] == "panms" and meta["architecture"]["ratio"] == 4
    assert meta["architecture"]["feature_names"] == ["PAN", "MS Blue", "MS Green", "MS Red",
                                                     "MS NIR"]


@pytest.mark.parametrize("source, missing, words", [
    (S1S2, "S1", "Sentinel-1 + Sentinel-2 time series"),
    (PANMS, "PAN", "PAN + MS pair"),
])
def test_missing_layers_of_the_chosen_source_are_named(lcfusion_provider, scene, check,
                                                       source, missing, words):
    ok, message = check(TRAIN, train_parameters(scene, SOURCE=source))
    assert not ok
    assert f"[{missing}]" in message and words in message


def test_classify_needs_the_layers_of_the_models_source(lcfusion_provider, scene, tmp_path,
                                                        s2_forest, check):
    ok, message = check(CLASSIFY, {"MODEL": str(s2_forest), "PAN": str(scene.pan_path),
                                   "MS": str(scene.ms_path), "OUTPUT": str(tmp_path / "m.tif")})
    assert not ok
    assert "[S2]" in message and "trained on Sentinel-2 time series" in message


def test_classify_checks_the_dates_against_the_model(lcfusion_provider, scene, tmp_path,
                                                     s2_forest, check):
    ok, message = check(CLASSIFY, {"MODEL": str(s2_forest),
                                   "S2": [str(p) for p in scene.s2_paths[:5]],
                                   "OUTPUT": str(tmp_path / "m.tif")})
    assert not ok
    assert "[S2]" in message and "6 dates x 10 bands" in message
