"""MRFusion on a real WorldView-2 PAN + MS pair: Rotterdam pair 1 (SpaceNet 6), no labels.

The PAN is 600 x 600 at 0.5 m, the MS 300 x 300 x 4 bands (B, G, R, NIR) at 1 m; their
pixel-size ratio is 2.000123. The data come without land cover, so classes are derived here
from the MS: vegetation (NDVI > 0.5), sealed (NDVI < 0.2, NIR >= 200) and dark (NDVI < 0.2,
NIR < 200: shadows and dark roofs; there is no water in pair 1), sieved, cut along a 32 m grid
so that no polygon dominates a split, polygonized and shrunk by 1 m so that no mixed boundary
pixel is labelled. The model is trained and tested on the polygons of the north-west
128 m x 128 m (one 256-pixel tile, which keeps the test evaluation short); the map of the
whole pair is compared with the polygons of the whole pair. Pair 1 has no fill (nodata).
"""

import json

import numpy as np
import pytest
import rasterio
from helpers import shared_data
from osgeo import gdal, ogr, osr
from rasterio.features import rasterize

from lcfusion.engine.families.mrfusion.commands import classify_mrfusion, train_mrfusion
from lcfusion.engine.io.panms import PanMsPair
from lcfusion.engine.io.series import SeriesSpec
from lcfusion.engine.jobs import Job, write_job
from lcfusion.engine.modelfile.header import read_metadata
from lcfusion.engine.progress import NullReporter

pytestmark = pytest.mark.realdata
gdal.UseExceptions()

CLASSES = {1: "vegetation", 2: "sealed", 3: "dark"}
NDVI_VEGETATION, NDVI_BARE, NIR_DARK = 0.5, 0.2, 200
SIEVE_PIXELS = 16  # MS pixels: smaller regions merge into their largest neighbour
MIN_AREA, SHRINK, MIN_PART = 40.0, 1.0, 10.0  # m2, m, m2
CHUNK = 32  # MS pixels: regions are cut along a grid of this step, so none dominates a split
REGION = 128  # MS pixels: the training and test polygons lie in the north-west REGION square
SETTINGS = {"epochs": 2, "samples_per_epoch": 384, "batch_size": 32, "learning_rate": 1e-3,
            "patch_size": 32, "validation_samples": 0, "tile_size": 256}
OA_MARGIN, MIN_KAPPA, MIN_MEAN_F1, MIN_F1 = 0.2, 0.6, 0.6, 0.3  # held-out test polygons
MIN_AGREEMENT, MIN_RECALL = 0.85, 0.5  # map vs derived classes inside the polygons
RATIO_NOTE = "PAN/MS pixel-size ratio 2.000123 x 2.000123 taken as 2"


class RecordingReporter(NullReporter):
    """Keeps the log lines."""

    def __init__(self):
        self.messages: list[tuple[str, str]] = []

    def log(self, message: str, level: str = "info") -> None:
        self.messages.append((level, message))

    def infos(self) -> list[str]:
        return [message for level, message in self.messages if level == "info"]


def pair_paths() -> tuple[str, str]:
    """PAN and MS of pair 1."""
    return (str(shared_data("rotterdam_pan_ms", "pan1.tif")),
            str(shared_data("rotterdam_pan_ms", "ms1.tif")))


def derive_classes(ms_path: str) -> np.ndarray:
    """The sieved class raster on the MS grid; 0 where no class applies."""
    with rasterio.open(ms_path) as src:
        _, _, red, nir = src.read().astype(np.float64)
    ndvi = (nir - red) / np.maximum(nir + red, 1.0)
    classes = np.zeros(ndvi.shape, dtype=np.uint8)
    classes[ndvi > NDVI_VEGETATION] = 1
    bare = ndvi < NDVI_BARE
    classes[bare & (nir >= NIR_DARK)] = 2
    classes[bare & (nir < NIR_DARK)] = 3
    raster = gdal.GetDriverByName("MEM").Create("", classes.shape[1], classes.shape[0], 1,
                                                gdal.GDT_Byte)
    band = raster.GetRasterBand(1)
    band.WriteArray(classes)
    gdal.SieveFilter(band, None, band, SIEVE_PIXELS, 8)
    return band.ReadAsArray()


def polygonize(classes: np.ndarray, ms_path: str, path, layer_name: str) -> list[int]:
    """Add a layer of class polygons, cut along the CHUNK grid and shrunk, to a GeoPackage;
    return their class ids."""
    with rasterio.open(ms_path) as src:
        transform, wkt = src.transform, src.crs.to_wkt()
    classes = classes.copy()
    classes[::CHUNK] = 0
    classes[:, ::CHUNK] = 0
    raster = gdal.GetDriverByName("MEM").Create("", classes.shape[1], classes.shape[0], 2,
                                                gdal.GDT_Byte)
    raster.SetGeoTransform(transform.to_gdal())
    raster.SetProjection(wkt)
    raster.GetRasterBand(1).WriteArray(classes)
    raster.GetRasterBand(2).WriteArray((classes > 0).astype(np.uint8))
    srs = osr.SpatialReference(wkt=wkt)
    memory = ogr.GetDriverByName("Memory").CreateDataSource("regions")
    regions = memory.CreateLayer("regions", srs, ogr.wkbPolygon)
    regions.CreateField(ogr.FieldDefn("class_id", ogr.OFTInteger))
    gdal.Polygonize(raster.GetRasterBand(1), raster.GetRasterBand(2), regions, 0)
    driver = ogr.GetDriverByName("GPKG")
    target = driver.Open(str(path), 1) if path.exists() else driver.CreateDataSource(str(path))
    layer = target.CreateLayer(layer_name, srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class_id", ogr.OFTInteger))
    layer.CreateField(ogr.FieldDefn("class_name", ogr.OFTString))
    kept = []
    for region in regions:
        if region.GetGeometryRef().GetArea() < MIN_AREA:
            continue
        shrunk = region.GetGeometryRef().Buffer(-SHRINK)
        parts = ([shrunk.GetGeometryRef(i) for i in range(shrunk.GetGeometryCount())]
                 if ogr.GT_Flatten(shrunk.GetGeometryType()) == ogr.wkbMultiPolygon
                 else [shrunk])
        for part in parts:
            if part.IsEmpty() or part.GetArea() < MIN_PART:
                continue
            code = region.GetField("class_id")
            feature = ogr.Feature(layer.GetLayerDefn())
            feature.SetField("class_id", code)
            feature.SetField("class_name", CLASSES[code])
            feature.SetGeometry(part)
            layer.CreateFeature(feature)
            kept.append(code)
    target = None
    return kept


def burn(path, layer_name: str, pan_path: str) -> np.ndarray:
    """A layer's class ids on the PAN grid (pixel centres), 0 outside its polygons."""
    with rasterio.open(pan_path) as pan:
        shape, transform = (pan.height, pan.width), pan.transform
    source = ogr.Open(str(path))
    shapes = [(json.loads(feature.GetGeometryRef().ExportToJson()),
               feature.GetField("class_id")) for feature in source.GetLayerByName(layer_name)]
    return rasterize(shapes, out_shape=shape, transform=transform, dtype="uint8")


@pytest.fixture(scope="module")
def rotterdam(tmp_path_factory):
    """Derived polygons, a model trained briefly on them, and the classified pair."""
    pan, ms = pair_paths()
    folder = tmp_path_factory.mktemp("rotterdam")
    classes = derive_classes(ms)
    reference = folder / "reference.gpkg"
    everywhere = polygonize(classes, ms, reference, "whole_pair")
    region = np.zeros_like(classes)
    region[:REGION, :REGION] = classes[:REGION, :REGION]
    training = polygonize(region, ms, reference, "north_west")
    model = folder / "mrfusion.lcfusion"
    inputs = {"pan": {"paths": [pan]}, "ms": {"paths": [ms]}}
    train = write_job(folder / "train", "train-mrfusion", inputs=inputs,
                      reference={"path": str(reference), "layer": "north_west",
                                 "class_field": "class_id", "name_field": "class_name"},
                      split={"train": 0.5, "validation": 0.0, "test": 0.5, "seed": 1},
                      settings=SETTINGS, outputs={"model": str(model)})
    train_log = RecordingReporter()
    outputs = train_mrfusion(Job.load(train), train_log)
    class_map, confidence = folder / "landcover.tif", folder / "confidence.tif"
    classify = write_job(folder / "classify", "classify-mrfusion",
                         inputs={"model": str(model), **inputs}, settings={"tile_size": 256},
                         outputs={"class_map": str(class_map), "confidence": str(confidence)})
    classify_log = RecordingReporter()
    classify_mrfusion(Job.load(classify), classify_log)
    return {"pan": pan, "ms": ms, "classes": classes, "reference": reference,
            "everywhere": everywhere, "training": training, "model": model,
            "outputs": outputs, "train_log": train_log, "classify_log": classify_log,
            "map": class_map, "confidence": confidence}


def test_the_alignment_takes_the_ratio_as_2_with_no_offset():
    """The real pair's 2.000123 ratio is accepted as 2, and the notes say so."""
    pan, ms = pair_paths()
    alignment = PanMsPair(SeriesSpec((pan,)), SeriesSpec((ms,))).alignment
    assert alignment.ratio == 2
    assert (alignment.offset_rows, alignment.offset_cols) == (0, 0)
    assert alignment.exact_ratio == pytest.approx(2.000123, abs=1e-6)
    assert 0.03 < alignment.misalignment < 0.045
    assert RATIO_NOTE in alignment.notes


@pytest.mark.slow
def test_the_reference_has_enough_polygons_of_every_class_on_both_sides(rotterdam):
    """Every derived class has polygons for training and for testing."""
    for polygons in (rotterdam["everywhere"], rotterdam["training"]):
        assert min(polygons.count(code) for code in CLASSES) >= 3
    summary = read_metadata(rotterdam["model"])["training"]["split_summary"]
    assert [row["name"] for row in summary] == list(CLASSES.values())
    for row in summary:
        assert row["train_objects"] >= 2 and row["test_objects"] >= 2, row
        assert row["train_pixels"] > 500 and row["test_pixels"] > 300, row


@pytest.mark.slow
def test_both_commands_log_the_reconciled_ratio(rotterdam):
    """Training and classification say that the 2.000123 ratio was taken as 2."""
    for log in (rotterdam["train_log"], rotterdam["classify_log"]):
        reconciled = [m for m in log.infos() if m.startswith("reconciled: ")]
        assert f"reconciled: {RATIO_NOTE}" in reconciled
        assert any("MS grid snapped onto the PAN grid" in m and "0.037 PAN pixels" in m
                   for m in reconciled)
    assert any("MS patch 16 x 16 x 4 bands" in m for m in rotterdam["train_log"].infos())


@pytest.mark.slow
def test_accuracy_on_held_out_polygons_is_well_above_chance(rotterdam):
    """Brief training separates the three classes on polygons it has not seen."""
    metrics = read_metadata(rotterdam["model"])["metrics"]
    support = np.array([row["support"] for row in metrics["per_class"]])
    assert rotterdam["outputs"]["OA"] == pytest.approx(metrics["overall_accuracy"])
    assert metrics["overall_accuracy"] > support.max() / support.sum() + OA_MARGIN
    assert metrics["kappa"] > MIN_KAPPA
    assert metrics["mean_f1"] > MIN_MEAN_F1
    assert min(row["f1"] for row in metrics["per_class"]) > MIN_F1, metrics["per_class"]


@pytest.mark.slow
def test_the_map_lies_exactly_on_the_pan_grid(rotterdam):
    """Class and confidence maps: PAN size, PAN transform (exactly), PAN CRS."""
    with rasterio.open(rotterdam["pan"]) as pan:
        grid = (pan.width, pan.height, pan.transform.to_gdal(), pan.crs)
    with rasterio.open(rotterdam["map"]) as out:
        assert (out.width, out.height, out.transform.to_gdal(), out.crs) == grid
        assert (out.width, out.height) == (600, 600)
        assert out.count == 1 and out.dtypes[0] == "uint8"
        assert out.tags()["LCFUSION_FAMILY"] == "mrfusion"
        labels = out.read(1)
    assert set(np.unique(labels)) == set(CLASSES)
    with rasterio.open(rotterdam["confidence"]) as out:
        assert (out.width, out.height, out.transform.to_gdal(), out.crs) == grid
        confidence = out.read(1)
    assert np.isfinite(confidence).all()
    assert confidence.min() >= 1 / len(CLASSES) - 1e-6 and confidence.max() <= 1 + 1e-6


@pytest.mark.slow
def test_the_map_agrees_with_the_derived_classes(rotterdam):
    """Inside the polygons of the whole pair, the map is the class derived from the MS, also
    on the ground outside the training area, and not once flipped."""
    truth = burn(rotterdam["reference"], "whole_pair", rotterdam["pan"])
    inside = truth > 0
    upsampled = np.repeat(np.repeat(rotterdam["classes"], 2, axis=0), 2, axis=1)
    assert (upsampled[inside] == truth[inside]).all()
    with rasterio.open(rotterdam["map"]) as out:
        labels = out.read(1)
    unseen = inside.copy()
    unseen[: 2 * REGION, : 2 * REGION] = False

    def agreement(candidate: np.ndarray, where: np.ndarray) -> float:
        return float((candidate[where] == truth[where]).mean())

    assert agreement(labels, inside) > MIN_AGREEMENT
    assert agreement(labels, unseen) > MIN_AGREEMENT
    for code in CLASSES:
        assert agreement(labels, unseen & (truth == code)) > MIN_RECALL, CLASSES[code]
    assert agreement(labels[::-1], inside) < agreement(labels, inside) - 0.2
    assert agreement(labels[:, ::-1], inside) < agreement(labels, inside) - 0.2
