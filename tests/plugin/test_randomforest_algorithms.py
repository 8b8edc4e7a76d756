"""The Random Forest baseline through Processing: train then classify, and the dialog's checks
of the chosen source's inputs."""

from __future__ import annotations

import processing
import pytest
import rasterio
from helpers import write_raster
from osgeo import ogr
from osgeo_utils.samples.validate_cloud_optimized_geotiff import validate
from processing_helpers import landsat_like_pair
from qgis.core import (
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)

from lcfusion.engine.jobs import Job, write_job
from lcfusion.engine.modelfile.header import read_header
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
    from lcfusion.engine.families.randomforest.commands import train_randomforest

    folder = tmp_path_factory.mktemp("s2-forest")
    job = write_job(folder, "train-randomforest",
                    inputs={"s2": {"paths": [str(p) for p in scene.s2_paths]}},
                    reference={"path": str(scene.reference_path), "layer": "reference",
                               "class_field": "class_id"},
                    split={"seed": 1}, settings={"n_trees": 5, "samples_per_class": 50},
                    outputs={"model": str(folder / "model.lcfusion")})
    train_randomforest(Job.load(job), NullReporter())
    return folder / "model.lcfusion"


def reference_with_fid_field(scene, path) -> str:
    """The scene's reference polygons in a GeoPackage whose feature id column is 'ogc_fid',
    with an integer field 'fid' holding the class codes (repeated, so no valid feature ids)."""
    source = ogr.Open(str(scene.reference_path))
    polygons = source.GetLayerByName(scene.reference_layer)
    target = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = target.CreateLayer("reference", polygons.GetSpatialRef(), ogr.wkbPolygon,
                               ["FID=ogc_fid"])
    layer.CreateField(ogr.FieldDefn("fid", ogr.OFTInteger))
    for name in ("class_id", "class_name"):
        definition = polygons.GetLayerDefn()
        layer.CreateField(definition.GetFieldDefn(definition.GetFieldIndex(name)))
    for polygon in polygons:
        feature = ogr.Feature(layer.GetLayerDefn())
        for name in ("class_id", "class_name"):
            feature.SetField(name, polygon.GetField(name))
        feature.SetField("fid", polygon.GetField("class_id"))
        feature.SetGeometry(polygon.GetGeometryRef())
        layer.CreateFeature(feature)
    target = source = None
    return f"{path}|layername=reference"


def test_train_then_classify_through_processing(lcfusion_provider, scene, tmp_path,
                                                recording_feedback, monkeypatch):
    feedback = recording_feedback()
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "forest.lcfusion"
    # The class field is named 'fid', the GeoPackage split layer's feature id column.
    results = processing.run(TRAIN, train_parameters(
        scene, FEATURES=2, PATCH_SIZE=3, OUTPUT_MODEL=str(model), REPEATS=2, SEED=4,
        REFERENCE=reference_with_fid_field(scene, tmp_path / "fid.gpkg"), CLASS_FIELD="fid",
        OUTPUT_SPLIT="split.gpkg"), feedback=feedback)
    assert 0.5 < results["OA"] <= 1.0
    meta = read_header(model).metadata
    # With repeats, the split layer is the first split's: the kept model's, seed 4.
    assert results["OUTPUT_SPLIT"] == str(tmp_path / "split.gpkg")
    split = QgsVectorLayer(results["OUTPUT_SPLIT"], "split", "ogr")
    assert all(f["fid_1"] == f["class_id"] for f in split.getFeatures())
    assert "The split layer's field 'fid_1' holds the reference field 'fid'" in feedback.text()
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
                              "OUTPUT": str(class_map), "COG": True}, context=context)
    with rasterio.open(class_map) as out, rasterio.open(scene.s2_paths[0]) as s2:
        assert out.transform == s2.transform and out.read(1).shape == (96, 96)
        assert out.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"  # as GDAL's COG driver says
    assert validate(str(class_map))[1] == []
    layer = QgsRasterLayer(str(class_map), "map")
    assert isinstance(layer.renderer(), QgsPalettedRasterRenderer)


def s2_with_bands(folder, scene, descriptions) -> list[str]:
    """Two dates of the scene's S2 with its blue, green, red and NIR bands only (B02, B03, B04,
    B08), described by `descriptions` (None: no descriptions)."""
    paths = []
    for source in scene.s2_paths[:2]:
        with rasterio.open(source) as src:
            data, transform = src.read((1, 2, 3, 7)), src.transform
        paths.append(str(write_raster(folder / source.name, data, origin=(transform.c,
                                      transform.f), pixel=transform.a, descriptions=descriptions)))
    return paths


@pytest.mark.parametrize("descriptions, indices, words", [
    (("Blue", "Green", "Red", "NIR"), ["NDVI", "NDWI", "BRIGHTNESS"],
     "MNDWI, NDBI, NDRE not added: no band of the S2 layers is identified as rededge, swir1"),
    (None, None, "no spectral index is added: no band of the S2 layers is identified as blue, "
                 "green, nir, red, rededge, swir1 (band descriptions: band 1, band 2"),
])
def test_default_indices_follow_the_band_descriptions(lcfusion_provider, scene, tmp_path,
                                                      recording_feedback, descriptions, indices,
                                                      words):
    """Bands that are not named as Sentinel-2's train with the default settings: the indices
    whose bands the descriptions identify, and a warning naming what is missing."""
    feedback = recording_feedback()
    model = tmp_path / "forest.lcfusion"
    processing.run(TRAIN, {"SOURCE": S2, "S2": s2_with_bands(tmp_path, scene, descriptions),
                           **reference(scene), **TINY_FOREST, "OUTPUT_MODEL": str(model)},
                   feedback=feedback)
    recorded = read_header(model).metadata["inputs"]["indices"]
    assert (recorded or {}).get("indices") == indices
    if indices:
        assert recorded["roles"] == {"blue": "1", "green": "2", "red": "3", "nir": "4"}
    assert words in feedback.text("warning") and "[BAND_ROLES]" in feedback.text("warning")


def test_pan_ms_source_needs_only_pan_and_ms(lcfusion_provider, scene, tmp_path):
    model = tmp_path / "panms.lcfusion"
    processing.run(TRAIN, {"SOURCE": PANMS, "PAN": str(scene.pan_path),
                           "MS": str(scene.ms_path), **reference(scene), **TINY_FOREST,
                           "OUTPUT_MODEL": str(model)})
    meta = read_header(model).metadata
    assert meta["inputs"]["source"] == "panms" and meta["architecture"]["ratio"] == 4
    assert meta["architecture"]["feature_names"] == ["PAN", "MS Blue", "MS Green", "MS Red",
                                                     "MS NIR"]


def test_pan_ms_source_aligns_a_landsat_pair_on_request(lcfusion_provider, scene, tmp_path,
                                                         check, recording_feedback):
    """As MRFusion: a Landsat-like pair is refused by default naming ALIGN_MS; with nearest
    resampling the forest trains and classifies on the cropped PAN grid, as recorded."""
    pan, ms, (x0, y0) = landsat_like_pair(tmp_path, scene)
    parameters = {"SOURCE": PANMS, "PAN": str(pan), "MS": str(ms), **reference(scene),
                  **TINY_FOREST, "OUTPUT_MODEL": str(tmp_path / "forest.lcfusion")}
    ok, message = check(TRAIN, parameters)
    assert not ok and "[MS]" in message and "[ALIGN_MS]" in message
    feedback = recording_feedback()
    processing.run(TRAIN, {**parameters, "ALIGN_MS": 2}, feedback=feedback)
    assert "MS resampled (nearest)" in feedback.text("info")
    assert read_header(tmp_path / "forest.lcfusion").metadata["inputs"]["align_ms"] == "nearest"
    class_map = tmp_path / "map.tif"
    processing.run(CLASSIFY, {"MODEL": str(tmp_path / "forest.lcfusion"), "PAN": str(pan),
                              "MS": str(ms), "OUTPUT": str(class_map)})
    with rasterio.open(class_map) as out:
        assert out.transform == rasterio.Affine(5.0, 0.0, x0, 0.0, -5.0, y0)
        assert (out.width, out.height) == (190, 190)


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
