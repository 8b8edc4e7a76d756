"""Dates through Processing: layers given out of date order are ordered by their dates (the
same map as the ordered layers, cloud masks moved with their dates), training sorts them,
duplicate dates and dates of another season are refused naming the parameter, and layers
without dates are used in the given order with a word saying so."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import processing
import pytest
import rasterio
from qgis.core import QgsProcessingException, QgsRasterLayer

from lcfusion.engine.modelfile.header import read_header

TINY_FOREST = {"N_TREES": 10, "SAMPLES_PER_CLASS": 100, "TILE_SIZE": 64}


def paths(files) -> list[str]:
    return [str(p) for p in files]


def class_map(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def renamed(files, folder, names) -> list[str]:
    """Links to `files` under new file names (the dates a user's files would carry)."""
    folder.mkdir(exist_ok=True)
    links = []
    for file, name in zip(files, names, strict=True):
        link = folder / name
        link.symlink_to(file)
        links.append(str(link))
    return links


def single_band_masks(scene, folder) -> list[str]:
    """The scene's cloud-mask stack as one single-band raster per date, with no date in their
    names or descriptions: they can only follow the order of their layers."""
    folder.mkdir(exist_ok=True)
    out = []
    with rasterio.open(scene.s2_cloud_mask_path) as src:
        profile = {**src.profile, "count": 1}
        for band in range(1, src.count + 1):
            path = folder / f"mask_{'abcdefghijkl'[band - 1]}.tif"
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(src.read(band), 1)
            out.append(str(path))
    return out


def classify_fgunet(model, series, output, feedback=None) -> dict:
    return processing.run("lcfusion:classifyfgunet", {
        "INPUT": series, "MODEL": str(model), "TILE_SIZE": 128, "MARGIN": 20,
        "OUTPUT": str(output)}, feedback=feedback)


def test_fgunet_orders_reversed_dates_as_the_model(lcfusion_provider, scene, trained, tmp_path,
                                                   recording_feedback):
    model, _ = trained
    classify_fgunet(model, paths(scene.s2_paths), tmp_path / "ordered.tif")
    feedback = recording_feedback()
    classify_fgunet(model, paths(reversed(scene.s2_paths)), tmp_path / "reversed.tif", feedback)

    assert np.array_equal(class_map(tmp_path / "reversed.tif"),
                          class_map(tmp_path / "ordered.tif"))
    log = feedback.text()
    assert "[INPUT] the layers are not in date order; they are used in date order" in log
    assert ", ".join(scene.s2_dates) in log
    assert "differ" not in log


def test_twinns_orders_s1_and_s2_and_matches_the_mask_by_its_dates(
        lcfusion_provider, scene, trained_twinns, tmp_path, recording_feedback):
    model, _ = trained_twinns
    outputs = {}
    feedback = recording_feedback()
    for name, order in (("ordered", list), ("reversed", lambda p: list(reversed(p)))):
        processing.run("lcfusion:classifytwinns", {
            "MODEL": str(model), "S1": paths(order(scene.s1_paths)),
            "S2": paths(order(scene.s2_paths)), "S2_MASK": [str(scene.s2_cloud_mask_path)],
            "TILE_SIZE": 96, "OUTPUT": str(tmp_path / f"{name}.tif")}, feedback=feedback)
        outputs[name] = class_map(tmp_path / f"{name}.tif")

    assert np.array_equal(outputs["reversed"], outputs["ordered"])
    log = feedback.text()
    assert "[S1] the layers are not in date order" in log
    assert "[S2] the layers are not in date order" in log


def test_randomforest_masks_without_dates_follow_their_layers(
        lcfusion_provider, scene, trained_randomforest, tmp_path, recording_feedback):
    model, _ = trained_randomforest
    masks = single_band_masks(scene, tmp_path / "masks")
    outputs = {}
    feedback = recording_feedback()
    for name, order in (("ordered", list), ("reversed", lambda p: list(reversed(p)))):
        processing.run("lcfusion:classifyrandomforest", {
            "MODEL": str(model), "S2": paths(order(scene.s2_paths)), "S2_MASK": order(masks),
            "OUTPUT": str(tmp_path / f"{name}.tif")}, feedback=feedback)
        outputs[name] = class_map(tmp_path / f"{name}.tif")

    assert np.array_equal(outputs["reversed"], outputs["ordered"])
    assert "[S2] the layers are not in date order" in feedback.text()


def test_training_sorts_the_dates_and_says_so(lcfusion_provider, scene, tmp_path,
                                              recording_feedback):
    model = tmp_path / "forest.lcfusion"
    feedback = recording_feedback()
    processing.run("lcfusion:trainrandomforest", {
        "SOURCE": 0, "S2": paths(reversed(scene.s2_paths)),
        "S2_MASK": [str(scene.s2_cloud_mask_path)],
        "REFERENCE": f"{scene.reference_path}|layername={scene.reference_layer}",
        "CLASS_FIELD": "class_id", **TINY_FOREST, "OUTPUT_MODEL": str(model)},
        feedback=feedback)

    assert "[S2] the layers are not in date order; they are used in date order" in (
        feedback.text())
    assert read_header(model).metadata["inputs"]["s2"]["dates"] == list(scene.s2_dates)


def test_duplicate_dates_are_refused_naming_the_parameter(lcfusion_provider, scene, tmp_path,
                                                          tiny_training):
    series = paths(scene.s2_paths)
    with pytest.raises(QgsProcessingException) as caught:
        processing.run("lcfusion:trainfgunet", {
            "INPUT": [*series, series[2]],
            "REFERENCE": f"{scene.reference_path}|layername={scene.reference_layer}",
            "CLASS_FIELD": "class_id", **tiny_training, "OUTPUT_MODEL": str(tmp_path / "m")})
    message = str(caught.value)
    assert "[INPUT]" in message and f"{scene.s2_dates[2]} is given twice" in message
    assert not (tmp_path / "m").exists()


def test_duplicate_s1_dates_are_refused_at_classification(lcfusion_provider, scene,
                                                          trained_twinns, tmp_path):
    s1 = paths(scene.s1_paths)
    with pytest.raises(QgsProcessingException) as caught:
        processing.run("lcfusion:classifytwinns", {
            "MODEL": str(trained_twinns[0]), "S1": [*s1[:-1], s1[0]],
            "S2": paths(scene.s2_paths), "S2_MASK": [str(scene.s2_cloud_mask_path)],
            "OUTPUT": str(tmp_path / "map.tif")})
    assert "[S1]" in str(caught.value) and "given twice" in str(caught.value)
    assert not (tmp_path / "map.tif").exists()


def test_another_year_is_matched_by_order_with_a_warning(lcfusion_provider, scene, trained,
                                                         tmp_path, recording_feedback):
    model, _ = trained
    next_year = [f"{int(d[:4]) + 1}{d[4:]}" for d in scene.s2_dates]
    series = renamed(scene.s2_paths, tmp_path / "next", [f"s2_{d}.tif" for d in next_year])
    classify_fgunet(model, paths(scene.s2_paths), tmp_path / "ordered.tif")
    feedback = recording_feedback()
    classify_fgunet(model, list(reversed(series)), tmp_path / "next_year.tif", feedback)

    assert np.array_equal(class_map(tmp_path / "next_year.tif"),
                          class_map(tmp_path / "ordered.tif"))
    warnings = feedback.text("warning")
    assert "matched to the model's dates by their order in the season" in warnings
    assert ", ".join(next_year) in warnings and ", ".join(scene.s2_dates) in warnings


def test_dates_of_another_season_are_refused(lcfusion_provider, scene, trained, tmp_path):
    model, _ = trained
    later = [(date.fromisoformat(d) + timedelta(days=120)).isoformat() for d in scene.s2_dates]
    series = renamed(scene.s2_paths, tmp_path / "later", [f"s2_{d}.tif" for d in later])
    with pytest.raises(QgsProcessingException) as caught:
        classify_fgunet(model, series, tmp_path / "map.tif")
    message = str(caught.value)
    assert "[INPUT]" in message and "season" in message
    assert not (tmp_path / "map.tif").exists()


def test_layers_without_dates_keep_their_order_and_say_so(lcfusion_provider, scene, trained,
                                                          tmp_path, recording_feedback):
    model, _ = trained
    series = renamed(scene.s2_paths, tmp_path / "plain",
                     [f"scene_{'abcdefghijkl'[i]}.tif" for i in range(len(scene.s2_paths))])
    feedback = recording_feedback()
    classify_fgunet(model, series, tmp_path / "map.tif", feedback)
    assert "[INPUT] no date in the layer names or band descriptions" in feedback.text("warning")


def test_dates_in_layer_names_order_the_layers(lcfusion_provider, scene, trained, tmp_path,
                                               owned_layer):
    """A file without a date, shown in QGIS under a layer name that holds one."""
    model, _ = trained
    files = renamed(scene.s2_paths, tmp_path / "plain",
                    [f"scene_{'abcdefghijkl'[i]}.tif" for i in range(len(scene.s2_paths))])
    layers = [owned_layer(QgsRasterLayer(file, f"S2 {day}"))
              for file, day in zip(files, scene.s2_dates, strict=True)]
    classify_fgunet(model, paths(scene.s2_paths), tmp_path / "ordered.tif")
    classify_fgunet(model, list(reversed(layers)), tmp_path / "reversed.tif")
    assert np.array_equal(class_map(tmp_path / "reversed.tif"),
                          class_map(tmp_path / "ordered.tif"))
