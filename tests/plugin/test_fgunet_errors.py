"""Errors of the FG-UNET algorithms: a clear message that names the parameter at fault, raised
through Processing, and nothing left behind (no partial file, no model, existing outputs kept).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import processing
import pytest
import rasterio
from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingException,
    QgsVectorLayer,
)
from rasterio.crs import CRS
from rasterio.transform import Affine

TRAIN = "lcfusion:trainfgunet"
CLASSIFY = "lcfusion:classifyfgunet"


# Helpers -------------------------------------------------------------------------------------

def series(scene) -> list[str]:
    return [str(p) for p in scene.s2_paths]


def contents(folder: Path) -> dict[str, str]:
    """Name -> SHA-256 of every file in `folder` (sub-folders included)."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            found[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def run_fails(algorithm: str, parameters: dict, out: Path) -> str:
    """Run through processing.run; assert it raises and leaves `out` exactly as it was."""
    before = contents(out)
    with pytest.raises(QgsProcessingException) as caught:
        processing.run(algorithm, parameters)
    assert contents(out) == before, "the failed run changed the output folder"
    return str(caught.value)


def check_refuses(algorithm: str, parameters: dict) -> str:
    """The message of checkParameterValues, which must refuse the parameters."""
    alg = QgsApplication.processingRegistry().createAlgorithmById(algorithm)
    ok, message = alg.checkParameterValues(parameters, QgsProcessingContext())
    assert not ok, "checkParameterValues accepted the parameters"
    assert message
    return message


def copy_raster(source: Path, target: Path, *, crs=None, transform=None,
                window=None) -> Path:
    """A copy of `source` with another CRS, transform or a sub-window."""
    with rasterio.open(source) as src:
        profile = src.profile.copy()
        data = src.read(window=window)
        descriptions = src.descriptions
    profile.update(height=data.shape[1], width=data.shape[2])
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(data)
        for band, text in enumerate(descriptions, start=1):
            dst.set_band_description(band, text or "")
    return target


@pytest.fixture
def out(tmp_path) -> Path:
    """The output folder; inputs made by the tests go elsewhere."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.fixture
def inputs(tmp_path) -> Path:
    folder = tmp_path / "inputs"
    folder.mkdir()
    return folder


@pytest.fixture
def train_parameters(lcfusion_provider, scene, tiny_training, out) -> dict:
    return {"INPUT": series(scene), "REFERENCE": str(scene.reference_path),
            "CLASS_FIELD": "class_id", "NAME_FIELD": "class_name", **tiny_training,
            "OUTPUT_MODEL": str(out / "model.lcfusion")}


@pytest.fixture
def classify_parameters(lcfusion_provider, scene, trained, out) -> dict:
    model, _ = trained
    return {"INPUT": series(scene), "MODEL": str(model), "TILE_SIZE": 128,
            "OUTPUT": str(out / "map.tif"), "OUTPUT_CONFIDENCE": str(out / "confidence.tif")}


# The time series -----------------------------------------------------------------------------

def test_crs_mismatch_between_dates(scene, inputs, out, train_parameters):
    other = copy_raster(scene.s2_paths[2], inputs / "s2_2021-05-15_utm32.tif",
                        crs=CRS.from_epsg(32632))
    layers = series(scene)
    layers[2] = str(other)
    parameters = {**train_parameters, "INPUT": layers}

    message = check_refuses(TRAIN, parameters)
    assert message.startswith("Time series rasters (in date order) [INPUT]: ")
    assert "EPSG:32631" in message and "EPSG:32632" in message
    message = run_fails(TRAIN, parameters, out)
    assert "[INPUT]" in message
    assert "different CRS" in message and "EPSG:32632" in message
    assert not (out / "model.lcfusion").exists()


@pytest.mark.parametrize("change", ["shifted origin", "smaller size"])
def test_dates_on_different_grids(scene, inputs, out, train_parameters, change):
    source = scene.s2_paths[3]
    if change == "shifted origin":
        with rasterio.open(source) as src:
            moved = src.transform * Affine.translation(3, 0)  # 3 pixels east
        other = copy_raster(source, inputs / "s2_2021-07-14_moved.tif", transform=moved)
    else:
        other = copy_raster(source, inputs / "s2_2021-07-14_cut.tif",
                            window=rasterio.windows.Window(0, 0, 90, 96))
    layers = series(scene)
    layers[3] = str(other)

    message = run_fails(TRAIN, {**train_parameters, "INPUT": layers}, out)
    assert "[INPUT]" in message
    assert "not on one grid" in message and other.name in message


def test_classify_refuses_rasters_on_different_grids(scene, inputs, out, classify_parameters):
    with rasterio.open(scene.s2_paths[0]) as src:
        moved = src.transform * Affine.translation(0, 5)
    other = copy_raster(scene.s2_paths[0], inputs / "s2_2021-01-15_moved.tif", transform=moved)
    layers = series(scene)
    layers[0] = str(other)

    message = run_fails(CLASSIFY, {**classify_parameters, "INPUT": layers}, out)
    assert "[INPUT]" in message and "not on one grid" in message


# The reference polygons ---------------------------------------------------------------------

def test_reference_polygons_that_do_not_overlap(scene, inputs, out, train_parameters):
    far = inputs / "far_away.gpkg"
    processing.run("native:translategeometry", {
        "INPUT": str(scene.reference_path), "DELTA_X": 250_000, "DELTA_Y": -400_000,
        "OUTPUT": str(far)})
    parameters = {**train_parameters, "REFERENCE": str(far)}

    message = run_fails(TRAIN, parameters, out)
    assert "[REFERENCE]" in message
    assert "overlaps the rasters" in message


def test_missing_class_field(scene, out, train_parameters):
    parameters = {**train_parameters, "CLASS_FIELD": "no_such_field"}

    # Processing itself accepts any field name; the algorithm's own check names the parameter.
    alg = QgsApplication.processingRegistry().createAlgorithmById(TRAIN)
    assert alg.parameterDefinition("CLASS_FIELD").checkValueIsAcceptable("no_such_field")
    message = check_refuses(TRAIN, parameters)
    assert message.startswith("Class field (integer codes or text names) [CLASS_FIELD]: ")
    message = run_fails(TRAIN, parameters, out)
    assert "[CLASS_FIELD]" in message and "'no_such_field'" in message
    assert "class_id" in message and "class_name" in message  # the fields the layer has


def test_class_with_too_few_polygons(scene, out, train_parameters, owned_layer):
    layer = owned_layer(QgsVectorLayer(str(scene.reference_path), "reference", "ogr"))
    kept = sorted(f.id() for f in layer.getFeatures() if f["class_id"] == 3)[:2]
    assert layer.setSubsetString(f'"class_id" <> 3 OR "fid" IN ({kept[0]}, {kept[1]})')
    assert layer.featureCount() == 40 - 5 + 2
    parameters = {**train_parameters, "REFERENCE": layer}

    message = run_fails(TRAIN, parameters, out)
    assert "[REFERENCE]" in message
    assert "too few polygons" in message
    assert "winter crop" in message and ": 2" in message


def test_split_fractions_that_do_not_add_up(scene, out, train_parameters):
    parameters = {**train_parameters, "TRAIN_FRACTION": 0.5, "VALIDATION_FRACTION": 0.2,
                  "TEST_FRACTION": 0.2}
    message = check_refuses(TRAIN, parameters)
    assert "[TRAIN_FRACTION]" in message
    assert "add up to 1" in message and "0.9" in message
    run_fails(TRAIN, parameters, out)


# The model -----------------------------------------------------------------------------------

def test_model_and_rasters_with_different_dates(scene, out, classify_parameters):
    parameters = {**classify_parameters, "INPUT": series(scene)[:5]}

    message = check_refuses(CLASSIFY, parameters)
    assert message.startswith("Time series rasters (in date order) [INPUT]: ")
    assert "expects 6 dates x 10 bands" in message and "give 5 dates x 10 bands" in message
    message = run_fails(CLASSIFY, parameters, out)
    assert "[INPUT]" in message and "expects 6 dates x 10 bands" in message


def _damaged(model: Path, target: Path, how: str) -> Path:
    data = bytearray(model.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "header cut":
        data = data[:40]
    elif how == "flipped byte":
        data[len(data) // 2] ^= 0xFF
    elif how == "text file":
        data = bytearray(b"this is not a model\n" * 10)
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize("how, reason", [
    ("truncated", "checksum does not match"),
    ("header cut", "the file is truncated"),
    ("flipped byte", "checksum does not match"),
    ("text file", "header length is implausible"),
    ("GeoTIFF", "not a valid lcfusion model file"),
])
def test_damaged_or_foreign_model_files(scene, trained, inputs, out, classify_parameters, how,
                                        reason):
    model, _ = trained
    target = inputs / "damaged.lcfusion"
    if how == "GeoTIFF":
        shutil.copy(scene.s2_paths[0], target)
    else:
        _damaged(model, target, how)
    parameters = {**classify_parameters, "MODEL": str(target)}

    message = check_refuses(CLASSIFY, parameters)
    assert message.startswith("Model file [MODEL]: damaged.lcfusion is not a valid lcfusion "
                              "model file")
    assert reason in message
    message = run_fails(CLASSIFY, parameters, out)
    assert "[MODEL]" in message and reason in message


def test_missing_model_file(inputs, out, classify_parameters):
    parameters = {**classify_parameters, "MODEL": str(inputs / "absent.lcfusion")}
    message = run_fails(CLASSIFY, parameters, out)
    assert "[MODEL]" in message and "absent.lcfusion" in message


# Existing outputs ----------------------------------------------------------------------------

def test_failed_classification_keeps_an_existing_class_map(scene, inputs, out,
                                                           classify_parameters):
    existing = out / "map.tif"
    existing.write_bytes(b"an earlier class map " * 100)
    (out / "map.qml").write_text("<qgis>an earlier style</qgis>")
    (out / "confidence.tif").write_bytes(b"an earlier confidence map")
    with rasterio.open(scene.s2_paths[0]) as src:
        moved = src.transform * Affine.translation(2, 2)
    layers = series(scene)
    layers[-1] = str(copy_raster(scene.s2_paths[-1], inputs / "moved.tif", transform=moved))

    # run_fails compares every byte of every file in the output folder.
    message = run_fails(CLASSIFY, {**classify_parameters, "INPUT": layers}, out)
    assert "not on one grid" in message


def test_failed_training_keeps_an_existing_model(scene, trained, inputs, out,
                                                 train_parameters, owned_layer):
    model, _ = trained
    existing = Path(train_parameters["OUTPUT_MODEL"])
    shutil.copy(model, existing)
    layer = owned_layer(QgsVectorLayer(str(scene.reference_path), "reference", "ogr"))
    one = min(f.id() for f in layer.getFeatures() if f["class_id"] == 5)
    assert layer.setSubsetString(f'"class_id" <> 5 OR "fid" = {one}')
    parameters = {**train_parameters, "REFERENCE": layer}

    message = run_fails(TRAIN, parameters, out)
    assert "too few polygons" in message
    assert existing.read_bytes() == model.read_bytes()
