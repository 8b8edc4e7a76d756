"""MRFusion through Processing: train and classify with the engine as a child process, and the
dialog checks of the PAN/MS pair before anything runs."""

from __future__ import annotations

import processing
import rasterio
from processing_helpers import landsat_like_pair
from processing_helpers import mrfusion_train_parameters as train_parameters
from qgis.core import (
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProject,
    QgsRasterLayer,
)

from lcfusion.engine.modelfile.header import read_header

TRAIN = "lcfusion:trainmrfusion"
CLASSIFY = "lcfusion:classifymrfusion"


def raster(path, name: str) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(path), name)
    assert layer.isValid(), path
    return layer


def test_train_then_classify_through_processing(lcfusion_provider, scene, tmp_path,
                                                recording_feedback):
    feedback = recording_feedback()
    model = tmp_path / "mrfusion.lcfusion"
    results = processing.run(TRAIN, {**train_parameters(scene), "BRANCHES": 1,
                                     "OUTPUT_MODEL": str(model)}, feedback=feedback)
    assert results["OUTPUT_MODEL"] == str(model)
    assert 0.0 <= results["OA"] <= 1.0
    header = read_header(model)
    assert header.family == "mrfusion"
    assert header.metadata["architecture"]["branches"] == "pan"
    # The dialog's default split keeps validation polygons (best epoch, early stopping).
    split = header.metadata["training"]["split"]
    assert (split["train"], split["validation"], split["test"]) == (0.6, 0.2, 0.2)
    log = feedback.text("info")
    assert "ratio 4" in log and "PAN and MS" not in log and "PAN branch only" in log

    class_map = tmp_path / "map.tif"
    context = QgsProcessingContext()
    context.setProject(QgsProject())
    results = processing.run(CLASSIFY, {"MODEL": str(model), "PAN": str(scene.pan_path),
                                        "MS": str(scene.ms_path), "TILE_SIZE": 192,
                                        "OUTPUT": str(class_map)}, context=context)
    with rasterio.open(results["OUTPUT"]) as out, rasterio.open(scene.pan_path) as pan:
        assert out.transform == pan.transform and (out.width, out.height) == (384, 384)
    layer = raster(class_map, "map")
    assert isinstance(layer.renderer(), QgsPalettedRasterRenderer)
    assert [c.label for c in layer.renderer().classes()][:2] == ["water", "forest"]


def test_landsat_pair_is_aligned_on_request(lcfusion_provider, scene, tmp_path, check,
                                            recording_feedback):
    """A Landsat-like pair (grids half a PAN pixel apart, odd PAN rows) is refused by default,
    naming ALIGN_MS; with it, the MS is resampled, the PAN cropped, both logged, the model
    records the choice and the class map lies exactly on the cropped PAN grid."""
    pan, ms, (x0, y0) = landsat_like_pair(tmp_path, scene)
    parameters = train_parameters(scene, PAN=str(pan), MS=str(ms), PATCH_SIZE=18)
    ok, message = check(TRAIN, parameters)
    assert not ok and "[MS]" in message and "[ALIGN_MS]" in message
    assert "0.50 PAN pixels" in message

    feedback = recording_feedback()
    model = tmp_path / "landsat.lcfusion"
    processing.run(TRAIN, {**parameters, "ALIGN_MS": 1, "OUTPUT_MODEL": str(model)},
                   feedback=feedback)
    log = feedback.text("info")
    assert ("MS resampled (bilinear) onto a grid of 2 x 2 PAN pixels aligned with the PAN grid: "
            "its pixel edges moved by +2.5 in x and -2.5 in y (map units; 0.50 and 0.50 PAN "
            "pixels); 95 x 95 MS pixels kept of 96 x 96") in log
    assert ("PAN cropped to the ground the MS covers, 190 x 190 of 191 x 191 pixels (1 column "
            "at the right, 1 row at the bottom)") in log
    assert read_header(model).metadata["inputs"]["align_ms"] == "bilinear"

    ok, message = check(CLASSIFY, {"MODEL": str(model), "PAN": str(pan), "MS": str(ms),
                                   "ALIGN_MS": 1, "OUTPUT": "TEMPORARY_OUTPUT"})
    assert not ok and "[ALIGN_MS]" in message
    class_map = tmp_path / "landsat_map.tif"
    processing.run(CLASSIFY, {"MODEL": str(model), "PAN": str(pan), "MS": str(ms),
                              "OUTPUT": str(class_map)})
    with rasterio.open(class_map) as out:
        assert out.transform == rasterio.Affine(5.0, 0.0, x0, 0.0, -5.0, y0)
        assert (out.width, out.height) == (190, 190)


def test_multiband_pan_is_refused(lcfusion_provider, scene, check):
    ok, message = check(TRAIN, train_parameters(scene, PAN=str(scene.ms_path)))
    assert not ok
    assert "[PAN]" in message and "single-band" in message


def test_crs_mismatch_is_refused(lcfusion_provider, scene, tmp_path, check):
    ms = tmp_path / "ms_32632.tif"
    with rasterio.open(scene.ms_path) as src:
        profile, data = {**src.profile, "crs": "EPSG:32632"}, src.read()
    with rasterio.open(ms, "w", **profile) as dst:
        dst.write(data)
    ok, message = check(TRAIN, train_parameters(scene, MS=str(ms)))
    assert not ok
    assert "[MS]" in message and "CRS mismatch" in message


def test_non_integer_ratio_is_refused(lcfusion_provider, scene, tmp_path, check):
    ms = tmp_path / "ms_ratio.tif"
    with rasterio.open(scene.ms_path) as src:
        t = src.transform
        profile = {**src.profile, "transform": rasterio.Affine(t.a * 0.6, 0, t.c, 0, t.e * 0.6,
                                                               t.f)}
        data = src.read()
    with rasterio.open(ms, "w", **profile) as dst:
        dst.write(data)
    ok, message = check(TRAIN, train_parameters(scene, MS=str(ms)))
    assert not ok
    assert "[MS]" in message and "not a whole number" in message


def test_patch_not_divisible_by_the_ratio_is_refused(lcfusion_provider, scene, check):
    ok, message = check(TRAIN, train_parameters(scene, PATCH_SIZE=30))
    assert not ok
    assert "[PATCH_SIZE]" in message and "28 or 32" in message


def test_classify_checks_the_model_against_the_pair(lcfusion_provider, scene, tmp_path,
                                                    trained_mrfusion, trained, check):
    model = str(trained_mrfusion[0])
    three = tmp_path / "ms3.tif"
    with rasterio.open(scene.ms_path) as src:
        profile, data = {**src.profile, "count": 3}, src.read()[:3]
    with rasterio.open(three, "w", **profile) as dst:
        dst.write(data)
    base = {"PAN": str(scene.pan_path), "OUTPUT": str(tmp_path / "map.tif")}
    ok, message = check(CLASSIFY, {**base, "MODEL": model, "MS": str(three)})
    assert not ok and "[MS]" in message and "4 bands" in message
    ok, message = check(CLASSIFY, {**base, "MODEL": str(trained[0]), "MS": str(scene.ms_path)})
    assert not ok and "[MODEL]" in message and "of the FG-UNET family, not MRFusion" in message
    ok, message = check(CLASSIFY, {**base, "MODEL": model, "MS": str(scene.ms_path)})
    assert ok, message
