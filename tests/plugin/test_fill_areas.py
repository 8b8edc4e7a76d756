"""Scenes with a fill area (0 in every band at the edges of the footprint) and no declared
nodata, as Landsat and Sentinel-2 tiles often come: every classify algorithm warns with the
value and its share, and with FILL_VALUE leaves the fill out of both maps; nodata the rasters
declare reaches the maps in every family."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import processing
import pytest
import rasterio

#: The fill border on the 10 m grid: the top rows and the left columns.
TOP, LEFT = 8, 12
#: Pixels away from the border where the fill cannot reach a pixel's receptive field.
REACH = 28


def with_fill_border(source: Path, target: Path, nodata: float | None, fill: float = 0
                     ) -> str:
    """A copy of `source` (same name and band descriptions, in the folder `target`) whose
    border is `fill` in every band, with `nodata` declared (None: no nodata at all)."""
    with rasterio.open(source) as src:
        data, profile, descriptions = src.read(), src.profile, src.descriptions
        scale = src.width // 96
    data[:, : TOP * scale] = fill
    data[:, :, : LEFT * scale] = fill
    profile.update(nodata=nodata)
    target.mkdir(exist_ok=True)
    with rasterio.open(target / source.name, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = descriptions
    return str(target / source.name)


def border(scale: int = 1) -> np.ndarray:
    mask = np.zeros((96 * scale, 96 * scale), dtype=bool)
    mask[: TOP * scale] = True
    mask[:, : LEFT * scale] = True
    return mask


def interior(scale: int = 1) -> tuple[slice, slice]:
    return slice((TOP + REACH) * scale, None), slice((LEFT + REACH) * scale, None)


def inputs(family: str, scene, folder: Path, nodata: float | None) -> dict:
    """The classify parameters of `family` on the scene's layers with a fill border."""
    def copies(paths, name):
        return [with_fill_border(p, folder / name, nodata) for p in paths]

    if family == "fgunet":
        return {"INPUT": copies(scene.s2_paths, "s2"), "TILE_SIZE": 128, "MARGIN": 20}
    if family == "mrfusion":
        return {"PAN": copies([scene.pan_path], "pan")[0],
                "MS": copies([scene.ms_path], "ms")[0], "TILE_SIZE": 192}
    s2 = {"S2": copies(scene.s2_paths, "s2"), "S2_MASK": [str(scene.s2_cloud_mask_path)]}
    if family == "twinns":
        # S1 in dB: its fill (0) is above every backscatter value; NaN is its nodata.
        return {**s2, "S1": copies(scene.s1_paths, "s1")}
    return s2


FAMILIES = {"fgunet": ("trained", 1), "mrfusion": ("trained_mrfusion", 4),
            "twinns": ("trained_twinns", 1), "randomforest": ("trained_randomforest", 1)}


def classify(request, family: str, folder: Path, parameters: dict, feedback=None
             ) -> tuple[np.ndarray, np.ndarray]:
    """The class map and the confidence map of a classify run."""
    model, _ = request.getfixturevalue(FAMILIES[family][0])
    results = processing.run(f"lcfusion:classify{family}", {
        "MODEL": str(model), **parameters, "OUTPUT": str(folder / "map.tif"),
        "OUTPUT_CONFIDENCE": str(folder / "confidence.tif")}, feedback=feedback)
    with rasterio.open(results["OUTPUT"]) as ds:
        classes = ds.read(1, masked=True)
    with rasterio.open(results["OUTPUT_CONFIDENCE"]) as ds:
        confidence = ds.read(1)
    return classes, confidence


@pytest.mark.parametrize("family", list(FAMILIES))
def test_fill_value_makes_the_fill_nodata_in_both_maps(lcfusion_provider, request, family,
                                                       scene, tmp_path, recording_feedback):
    parameters = inputs(family, scene, tmp_path, nodata=None)
    feedback = recording_feedback()
    classes, confidence = classify(request, family, tmp_path, {**parameters, "FILL_VALUE": 0},
                                   feedback)
    scale = FAMILIES[family][1]
    assert classes.mask[border(scale)].all()
    assert np.isnan(confidence[border(scale)]).all()
    assert not classes.mask[~border(scale)].any()
    assert np.isfinite(confidence[~border(scale)]).all()
    assert re.search(r"0 in every band is read as nodata \(about (19\.8|29\.3)% of",
                     feedback.text("info"))
    assert "FILL_VALUE" not in feedback.text("warning")


def test_fill_without_nodata_is_named_and_the_interior_kept(lcfusion_provider, request, scene,
                                                            tmp_path, recording_feedback):
    parameters = inputs("fgunet", scene, tmp_path, nodata=None)
    feedback = recording_feedback()
    default = tmp_path / "default"
    default.mkdir()
    classes, confidence = classify(request, "fgunet", default, parameters, feedback)
    warning = feedback.text("warning")
    # the largest share: the border, and in the third date also the scene's own hole
    # (declared nodata in the sample scene, not in the copies)
    assert (f"about 29.3% of the pixels of {scene.s2_paths[2].name} are 0 in every band"
            in warning)
    assert "[FILL_VALUE] to 0" in warning
    assert not classes.mask.any()  # by default the fill is classified, with the warning
    treated, treated_confidence = classify(request, "fgunet", tmp_path,
                                           {**parameters, "FILL_VALUE": 0})
    assert np.array_equal(treated[interior()], classes[interior()])
    assert np.allclose(treated_confidence[interior()], confidence[interior()])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_declared_nodata_reaches_both_maps(lcfusion_provider, request, family, scene,
                                           tmp_path, recording_feedback):
    feedback = recording_feedback()
    classes, confidence = classify(request, family, tmp_path,
                                   inputs(family, scene, tmp_path, nodata=0), feedback)
    scale = FAMILIES[family][1]
    assert classes.mask[border(scale)].all()
    assert np.isnan(confidence[border(scale)]).all()
    assert not classes.mask[~border(scale)].any()
    assert "FILL_VALUE" not in feedback.text()


def test_a_fill_value_other_than_zero(lcfusion_provider, request, scene, tmp_path,
                                      recording_feedback):
    parameters = {"INPUT": [with_fill_border(p, tmp_path / "s2", None, fill=65535)
                            for p in scene.s2_paths], "TILE_SIZE": 128}
    feedback = recording_feedback()
    classes, _ = classify(request, "fgunet", tmp_path, {**parameters, "FILL_VALUE": 65535},
                          feedback)
    assert classes.mask[border()].all() and not classes.mask[~border()].any()
    assert "65535 in every band is read as nodata" in feedback.text("info")


def test_fill_inside_reference_polygons_gives_no_training_samples(
        lcfusion_provider, scene, tmp_path, tiny_training, recording_feedback):
    parameters = {"INPUT": [with_fill_border(p, tmp_path / "s2", None)
                            for p in scene.s2_paths],
                  "REFERENCE": f"{scene.reference_path}|layername=reference",
                  "CLASS_FIELD": "class_id", **tiny_training,
                  "OUTPUT_MODEL": str(tmp_path / "model.lcfusion")}
    feedback = recording_feedback()
    processing.run("lcfusion:trainfgunet", {**parameters, "FILL_VALUE": 0}, feedback=feedback)
    dropped = re.search(r"(\d+) labelled pixels fall on nodata and are not used",
                        feedback.text("info"))
    assert dropped and int(dropped.group(1)) > 0
    assert (f"0 in every band is read as nodata (about 29.3% of {scene.s2_paths[2].name})"
            in feedback.text("info"))
