"""TWINNS through Processing (with its attention map, loaded and styled), and the cloud mask /
gap-filling options of the time-series algorithms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import processing
import pytest
import rasterio
from processing_helpers import run_and_load
from qgis.core import (
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingOutputLayerDefinition,
    QgsProject,
    QgsRasterLayer,
)

from lcfusion.engine.modelfile.header import read_header

TRAIN = "lcfusion:traintwinns"
CLASSIFY = "lcfusion:classifytwinns"

TINY_TWINNS = {"EPOCHS": 1, "SAMPLES_PER_EPOCH": 128, "VALIDATION_SAMPLES": 32,
               "BATCH_SIZE": 64, "TILE_SIZE": 96}


def train_parameters(scene, **changes) -> dict:
    return {"S1": [str(p) for p in scene.s1_paths], "S2": [str(p) for p in scene.s2_paths],
            "S2_MASK": [str(scene.s2_cloud_mask_path)],
            "REFERENCE": f"{scene.reference_path}|layername={scene.reference_layer}",
            "CLASS_FIELD": "class_id", "NAME_FIELD": "class_name",
            "OUTPUT_MODEL": "TEMPORARY_OUTPUT", **TINY_TWINNS, **changes}


def test_train_then_classify_through_processing(lcfusion_provider, scene, tmp_path,
                                                recording_feedback):
    feedback = recording_feedback()
    model = tmp_path / "twinns.lcfusion"
    results = processing.run(TRAIN, train_parameters(scene, PRESET=1, EPOCHS=1, BRANCHES=0,
                                                     OUTPUT_MODEL=str(model)),
                             feedback=feedback)
    assert 0.0 <= results["OA"] <= 1.0
    meta = read_header(model).metadata
    assert meta["family"] == "twinns"
    split = meta["training"]["split"]
    assert (split["train"], split["validation"], split["test"]) == (0.3, 0.2, 0.5)
    assert meta["inputs"]["s2"]["masked"] and meta["inputs"]["s2"]["gapfill"]
    assert meta["inputs"]["indices"]["indices"][0] == "NDVI"
    log = feedback.text("info")
    assert "Sentinel-1: 8 dates x 2 bands" in log and "attention per date" in log
    assert ("spectral indices NDVI, NDWI, MNDWI, NDBI, NDRE, BRIGHTNESS, with blue = band 1 "
            "(B02)") in log and "nir = band 7 (B08)" in log
    assert "Masks (non-zero = cloud), in this order: s2_cloudmask" in log

    context = QgsProcessingContext()
    context.setProject(QgsProject())
    class_map = tmp_path / "map.tif"
    processing.run(CLASSIFY, {"MODEL": str(model), "S1": [str(p) for p in scene.s1_paths],
                              "S2": [str(p) for p in scene.s2_paths], "TILE_SIZE": 96,
                              "OUTPUT": str(class_map)}, context=context)
    with rasterio.open(class_map) as out, rasterio.open(scene.s2_paths[0]) as s2:
        assert out.transform == s2.transform and out.read(1).shape == (96, 96)
    layer = QgsRasterLayer(str(class_map), "map")
    assert isinstance(layer.renderer(), QgsPalettedRasterRenderer)


def test_mask_with_the_wrong_number_of_dates_is_refused(lcfusion_provider, scene, check):
    ok, message = check(TRAIN, train_parameters(scene, S2_MASK=[str(scene.s2_paths[0])]))
    assert not ok
    assert "[S2_MASK]" in message and "6 dates" in message


def test_s1_on_another_grid_is_named(lcfusion_provider, scene, tmp_path, owned_layer):
    shifted = tmp_path / "s1_shifted.tif"
    with rasterio.open(scene.s1_paths[0]) as src:
        profile = {**src.profile, "transform": src.transform * rasterio.Affine.translation(1, 0)}
        data = src.read()
    with rasterio.open(shifted, "w", **profile) as dst:
        dst.write(data)
    layer = owned_layer(QgsRasterLayer(str(shifted), "shifted"))
    with pytest.raises(QgsProcessingException, match=r"\[S1\].*s1_shifted.tif"):
        processing.run(TRAIN, train_parameters(scene, S1=[layer] * 8))


def test_classify_checks_the_dates_against_the_model(lcfusion_provider, scene, tmp_path,
                                                     trained_twinns, check):
    ok, message = check(CLASSIFY, {"MODEL": str(trained_twinns[0]),
                                   "S1": [str(p) for p in scene.s1_paths[:5]],
                                   "S2": [str(p) for p in scene.s2_paths],
                                   "OUTPUT": str(tmp_path / "map.tif")})
    assert not ok
    assert "[S1]" in message and "8 dates x 2 bands" in message


def test_the_attention_map_is_loaded_showing_its_three_most_attended_dates(
        lcfusion_provider, scene, trained_twinns, layer_tree_view):
    """As the dialog runs it: the outputs loaded into a project, then styled by Processing's
    post-processing."""
    model = trained_twinns[0]
    project = QgsProject()
    context = QgsProcessingContext()
    context.setProject(project)
    parameters = {"MODEL": str(model), "S1": [str(p) for p in scene.s1_paths],
                  "S2": [str(p) for p in scene.s2_paths], "TILE_SIZE": 96,
                  "OUTPUT": "TEMPORARY_OUTPUT",
                  "OUTPUT_ATTENTION": QgsProcessingOutputLayerDefinition("TEMPORARY_OUTPUT",
                                                                         project)}
    results = run_and_load(CLASSIFY, parameters, context)

    path = Path(results["OUTPUT_ATTENTION"])
    with rasterio.open(path) as attention:
        bands = [(float(attention.tags(b)["LCFUSION_MEAN"]) * (8 if b <= 8 else 6), -b,
                  description.replace(" attention", ""),
                  float(attention.tags(b)["LCFUSION_MIN"]),
                  float(attention.tags(b)["LCFUSION_MAX"]))
                 for b, description in enumerate(attention.descriptions, start=1)]
    top = sorted(bands, reverse=True)[:3]
    low, high = min(band[3] for band in top), max(band[4] for band in top)
    loaded = [layer for layer in project.mapLayers().values() if Path(layer.source()) == path]
    assert len(loaded) == 1
    renderer = loaded[0].renderer()
    assert isinstance(renderer, QgsMultiBandColorRenderer)
    assert [renderer.redBand(), renderer.greenBand(), renderer.blueBand()] == [
        -band[1] for band in top]
    enhancement = renderer.blueContrastEnhancement()
    assert enhancement.minimumValue() == pytest.approx(low, rel=1e-5)
    assert enhancement.maximumValue() == pytest.approx(high, rel=1e-5)
    assert 0.0 <= low < high <= 1.0
    assert loaded[0].name() == (f"TWINNS attention — {model.stem} (R {top[0][2]}, "
                                f"G {top[1][2]}, B {top[2][2]}; {low:.2f}–{high:.2f})")
    # Its default style too: the same rendering when the file is opened later.
    assert isinstance(QgsRasterLayer(str(path), "again").renderer(), QgsMultiBandColorRenderer)
    project.clear()


def test_fgunet_takes_a_cloud_mask_and_fills_gaps(lcfusion_provider, scene, tmp_path,
                                                  tiny_training):
    model = tmp_path / "fgunet.lcfusion"
    processing.run("lcfusion:trainfgunet", {
        "INPUT": [str(p) for p in scene.s2_paths], "INPUT_MASK": [str(scene.s2_cloud_mask_path)],
        "GAPFILL": True, "REFERENCE": f"{scene.reference_path}|layername=reference",
        "CLASS_FIELD": "class_id", **tiny_training, "OUTPUT_MODEL": str(model)})
    series = read_header(model).metadata["inputs"]["series"]
    assert series["masked"] is True and series["gapfill"] is True
    normalization = read_header(model).metadata["normalization"]
    assert np.isfinite(normalization["low"]).all()
