"""TWINNS on real Sentinel-1 + Sentinel-2 monthly composites: Belgium (WorldCereal test patch).

The patch is 100 x 100 pixels at 10 m (EPSG:32631) with 12 monthly composites of each sensor,
2020-11 .. 2021-10, all UInt16 with nodata 65535. Preparation done here, in a temporary folder:

* S1 (VV, VH) is stored as DN = 10^((sigma0_dB + 83) / 20); it is converted back to
  sigma0 dB = 20 log10(DN) - 83 as float32 GeoTIFFs on the same grid, nodata NaN.
* S2 (9 bands B02 .. B12) of 2020-12 and 2021-01 holds nodata only: those files are left out,
  so the S2 series has 10 dates and S1 12. The other months have no nodata; their few residual
  clouds (B02 > 3000) and zero values are written as per-date masks, and gaps are filled.
* There is no ground truth. The WorldCereal crop-type output assigns other_crop to 99.45 % of
  the patch and its other classes to isolated pixels, so it cannot be used as it is. The
  pseudo-reference is the model's leading specific crop (arg-max of the seven crop
  probabilities, other_crop left out), sieved and polygonized; regions are shrunk by one pixel,
  those under 1 ha are dropped, the rest cut along a 100 m grid so that every class has several
  polygons, and the three largest classes are kept (maize, sunflower, wheat). These are labels
  of a model that saw the same inputs: they follow field and village boundaries, not real crops.
"""

import json
from datetime import date

import numpy as np
import pytest
import rasterio
from helpers import shared_data
from osgeo import gdal, ogr, osr
from rasterio.features import rasterize
from rasterio.windows import Window

from lcfusion.engine.families.twinns.commands import (
    TWINNSInputs,
    TWINNSTrainConfig,
    classify_twinns,
    train_twinns,
)
from lcfusion.engine.jobs import Job, write_job
from lcfusion.engine.modelfile.header import read_metadata
from lcfusion.engine.progress import NullReporter

pytestmark = pytest.mark.realdata
gdal.UseExceptions()

MONTHS = [f"2020-{m:02d}" for m in (11, 12)] + [f"2021-{m:02d}" for m in range(1, 11)]
EMPTY_S2 = ["2020-12", "2021-01"]
S2_DATES = [m for m in MONTHS if m not in EMPTY_S2]
S2_BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12"]
NODATA = 65535
WORLDCEREAL = ["barley", "maize", "millet_sorghum", "other_crop", "rapeseed_rape",
               "soy_soybeans", "sunflower", "wheat"]  # classification codes 0 .. 7
OTHER_CROP = 3
CLASSES = {1: "maize", 6: "sunflower", 7: "wheat"}  # the three largest leading crops
CLOUD_B02 = 3000  # S2 DN: brighter blue is residual cloud
SIEVE_PIXELS = 16  # smaller leading-crop regions merge into their largest neighbour
MIN_FIELD_PIXELS = 100  # regions (after the one-pixel shrink) under 1 ha are left out
CHUNK = 10  # pixels: regions are cut along this grid, so that every class has several polygons
MIN_PIXELS = 16  # smaller pieces are left out
N_CLASSES = 3
#: tile_size = CHUNK: the test evaluation runs only the grid cells that hold test polygons.
SETTINGS = {"epochs": 3, "samples_per_epoch": 512, "batch_size": 64, "learning_rate": 2e-3,
            "validation_samples": 128, "tile_size": CHUNK}
SPLIT = {"train": 0.6, "validation": 0.2, "test": 0.2, "seed": 3}
#: Over split seeds 0 .. 8: OA 0.875 .. 0.957, majority share 0.56 .. 0.675 (OA - majority
#: >= 0.25), per-class F1 >= 0.83, map agreement inside the polygons 0.91 .. 0.94.
OA_MARGIN, MIN_KAPPA, MIN_MEAN_F1, MIN_F1, MIN_AGREEMENT = 0.15, 0.6, 0.75, 0.6, 0.85

class RecordingReporter(NullReporter):
    """Keeps the log lines."""

    def __init__(self):
        self.lines: list[str] = []

    def log(self, message: str, level: str = "info") -> None:
        self.lines.append(message)


def source(name: str) -> str:
    return str(shared_data("belgium_s1s2", name))


def s1_to_db(path: str, target) -> None:
    """An S1 DN file as sigma0 dB, float32, nodata NaN, on the same grid."""
    with rasterio.open(path) as src:
        dn = src.read().astype(np.float64)
        profile = {**src.profile, "dtype": "float32", "nodata": float("nan")}
        descriptions, tags = src.descriptions, src.tags()
    with np.errstate(divide="ignore"):
        db = np.where((dn > 0) & (dn != NODATA), 20 * np.log10(dn) - 83, np.nan)
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(db.astype(np.float32))
        dst.descriptions = descriptions
        dst.update_tags(TIME_LABEL=tags["TIME_LABEL"], UNIT="sigma0 dB")


def only_nodata(path: str) -> bool:
    with rasterio.open(path) as src:
        return bool((src.read() == src.nodata).all())


def residual_mask(path: str, target) -> int:
    """A single-band mask of an S2 date (1 = residual cloud or a zero value); its count."""
    with rasterio.open(path) as src:
        data = src.read()
        profile = {**src.profile, "count": 1, "dtype": "uint8", "nodata": None}
    mask = ((data[0] > CLOUD_B02) | (data == 0).any(axis=0)).astype(np.uint8)
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(mask, 1)
    return int(mask.sum())


def leading_crop() -> tuple[np.ndarray, rasterio.Affine, str]:
    """The crop-type model's most probable specific crop per pixel (other_crop left out)."""
    with rasterio.open(source("croptype_model_output.tif")) as src:
        probabilities = src.read()[2:]
        transform, wkt = src.transform, src.crs.to_wkt()
    crops = np.array([c for c in range(len(WORLDCEREAL)) if c != OTHER_CROP])
    return crops[np.argmax(probabilities[crops], axis=0)].astype(np.uint8), transform, wkt


def squares(transform: rasterio.Affine, size: int, step: int) -> list[ogr.Geometry]:
    """The cells of a `step`-pixel grid over a `size` x `size` raster."""
    cells = []
    for row in range(0, size, step):
        for col in range(0, size, step):
            ring = ogr.Geometry(ogr.wkbLinearRing)
            for dc, dr in ((0, 0), (step, 0), (step, step), (0, step), (0, 0)):
                ring.AddPoint_2D(*(transform * (col + dc, row + dr)))
            cell = ogr.Geometry(ogr.wkbPolygon)
            cell.AddGeometry(ring)
            cells.append(cell)
    return cells


def polygon_parts(geometry: ogr.Geometry) -> list[ogr.Geometry]:
    """The polygons of a geometry, as copies that outlive it."""
    kind = ogr.GT_Flatten(geometry.GetGeometryType())
    if kind == ogr.wkbPolygon:
        return [geometry.Clone()]
    if kind in (ogr.wkbMultiPolygon, ogr.wkbGeometryCollection):
        return [p for i in range(geometry.GetGeometryCount())
                for p in polygon_parts(geometry.GetGeometryRef(i))]
    return []


def derive_reference(path) -> dict[int, int]:
    """Write the pseudo-reference polygons of the N_CLASSES largest leading crops; return the
    number of polygons per kept class code."""
    crops, transform, wkt = leading_crop()
    size = crops.shape[0]
    raster = gdal.GetDriverByName("MEM").Create("", crops.shape[1], size, 1, gdal.GDT_Byte)
    raster.SetGeoTransform(transform.to_gdal())
    raster.SetProjection(wkt)
    band = raster.GetRasterBand(1)
    band.WriteArray(crops + 1)
    gdal.SieveFilter(band, None, band, SIEVE_PIXELS, 4)
    srs = osr.SpatialReference(wkt=wkt)
    memory = ogr.GetDriverByName("Memory").CreateDataSource("regions")
    regions = memory.CreateLayer("regions", srs, ogr.wkbPolygon)
    regions.CreateField(ogr.FieldDefn("value", ogr.OFTInteger))
    gdal.Polygonize(band, None, regions, 0)
    cells = squares(transform, size, CHUNK)
    pieces = []
    for region in regions:
        shrunk = region.GetGeometryRef().Buffer(-abs(transform.a))
        if shrunk.GetArea() < MIN_FIELD_PIXELS * transform.a ** 2:
            continue
        for cell in cells:
            for part in polygon_parts(shrunk.Intersection(cell)):
                if part.GetArea() >= MIN_PIXELS * transform.a ** 2:
                    pieces.append((region.GetField("value") - 1, part))
    area = {}
    for code, part in pieces:
        area[code] = area.get(code, 0.0) + part.GetArea()
    kept = sorted(sorted(area, key=area.get, reverse=True)[:N_CLASSES])
    target = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = target.CreateLayer("reference", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class_id", ogr.OFTInteger))
    layer.CreateField(ogr.FieldDefn("class_name", ogr.OFTString))
    counts = dict.fromkeys(kept, 0)
    for code, part in pieces:
        if code not in counts:
            continue
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("class_id", int(code))
        feature.SetField("class_name", WORLDCEREAL[code])
        feature.SetGeometry(part)
        layer.CreateFeature(feature)
        counts[code] += 1
    target = None
    return counts


def burn(path, shape: tuple[int, int], transform) -> np.ndarray:
    """The polygons' class ids on the grid (pixel centres), 255 outside them."""
    layer_source = ogr.Open(str(path))
    shapes = [(json.loads(f.GetGeometryRef().ExportToJson()), f.GetField("class_id"))
              for f in layer_source.GetLayer("reference")]
    return rasterize(shapes, out_shape=shape, transform=transform, fill=255, dtype="uint8")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """S1 in dB, the non-empty S2 dates with their masks, the pseudo-reference polygons."""
    folder = tmp_path_factory.mktemp("belgium")
    s1 = []
    for month in MONTHS:
        s1.append(str(folder / f"s1_db_{month}.tif"))
        s1_to_db(source(f"s1_{month}.tif"), s1[-1])
    s2_all = [source(f"s2_{month}.tif") for month in MONTHS]
    s2_months = [m for m, path in zip(MONTHS, s2_all, strict=True) if not only_nodata(path)]
    s2 = [source(f"s2_{month}.tif") for month in s2_months]
    masks, masked = [], {}
    for path, month in zip(s2, s2_months, strict=True):
        masks.append(str(folder / f"s2_mask_{month}.tif"))
        masked[month] = residual_mask(path, masks[-1])
    reference = folder / "reference.gpkg"
    polygons = derive_reference(reference)
    inputs = {"s1": {"paths": s1}, "s2": {"paths": s2, "masks": masks, "gapfill": True}}
    return {"folder": folder, "s1": s1, "s2": s2, "s2_all": s2_all, "s2_months": s2_months,
            "masked": masked,
            "inputs": inputs, "reference": reference, "polygons": polygons}


@pytest.fixture(scope="module")
def belgium(prepared):
    """A TWINNS model trained briefly on the pseudo-reference, and the classified patch."""
    folder = prepared["folder"]
    model = folder / "twinns.lcfusion"
    train = write_job(folder / "train", "train-twinns", inputs=prepared["inputs"],
                      reference={"path": str(prepared["reference"]), "layer": "reference",
                                 "class_field": "class_id", "name_field": "class_name"},
                      split=SPLIT, settings=SETTINGS, outputs={"model": str(model)})
    train_log = RecordingReporter()
    outputs = train_twinns(Job.load(train), train_log)
    class_map, confidence = folder / "crops.tif", folder / "confidence.tif"
    classify = write_job(folder / "classify", "classify-twinns",
                         inputs={"model": str(model), **prepared["inputs"]},
                         settings={"tile_size": 64},
                         outputs={"class_map": str(class_map), "confidence": str(confidence)})
    classify_log = RecordingReporter()
    classify_twinns(Job.load(classify), classify_log)
    return {**prepared, "model": model, "outputs": outputs, "train_log": train_log,
            "classify_log": classify_log, "map": class_map, "confidence": confidence}


def test_the_data_are_what_the_readme_says(prepared):
    """12 S1 months in dB with the documented medians; 2 empty S2 months; a few masked pixels."""
    assert prepared["s2_months"] == S2_DATES
    for path in prepared["s1"]:
        with rasterio.open(path) as src:
            vv, vh = src.read()
            assert src.descriptions == ("VV", "VH") and src.dtypes[0] == "float32"
        assert np.isfinite(vv).all() and np.isfinite(vh).all()
        assert -11.7 < np.median(vv) < -8.3 and -18.4 < np.median(vh) < -15.3, path
    converted = prepared["s1"][MONTHS.index("2021-03")]
    with rasterio.open(source("s1_2021-03.tif")) as raw, rasterio.open(converted) as db:
        assert db.transform == raw.transform and db.crs == raw.crs
        dn, value = raw.read(1)[0, 0], db.read(1)[0, 0]
    assert value == pytest.approx(20 * np.log10(dn) - 83, abs=1e-4)
    assert 0 < sum(prepared["masked"].values()) < 0.001 * 100 * 100 * len(S2_DATES)


def test_the_inputs_accept_the_real_pair_with_different_date_counts(prepared):
    """Same grid, 12 S1 dates and 10 S2 dates; describe() names both spans and the steps."""
    inputs = TWINNSInputs.from_job(prepared["inputs"], TWINNSTrainConfig().index_config(), "db")
    assert (inputs.s1.n_dates, inputs.s2.n_dates) == (12, 10)
    assert inputs.s1.series.dates == MONTHS and inputs.s2.series.dates == S2_DATES
    assert inputs.s2.series.band_names == S2_BANDS
    assert (inputs.s1.channels, inputs.s2.channels) == (2, 15)
    with rasterio.open(prepared["s2"][0]) as s2:
        assert (inputs.grid.width, inputs.grid.height) == (s2.width, s2.height)
        assert inputs.grid.transform == s2.transform.to_gdal()
    s1_line, s2_line = inputs.describe()
    assert s1_line.startswith("Sentinel-1: 12 dates x 2 bands (12 single-date rasters), "
                              f"dates {', '.join(MONTHS)}")
    # The log shows which months S2 lacks.
    assert s2_line.startswith("Sentinel-2: 10 dates x 9 bands (10 single-date rasters), "
                              f"dates {', '.join(S2_DATES)}, masked by s2_mask_2020-11.tif")
    assert "gaps filled by temporal interpolation" in s2_line
    assert "VV, VH" in s1_line and "B12, NDVI" in s2_line


def test_empty_months_given_anyway_are_interpolated(prepared):
    """With all 12 S2 files and gap-filling, 2020-12 is interpolated between 2020-11 and
    2021-02 (months taken as their 15th)."""
    inputs = TWINNSInputs.from_job({"s1": prepared["inputs"]["s1"],
                                    "s2": {"paths": prepared["s2_all"], "gapfill": True}},
                                   None, "db")
    with inputs.s2.open() as reader:
        data = reader.read(Window(0, 0, 100, 100)).reshape(12, 9, 100, 100)
    assert np.isfinite(data).all()
    november, december, february = data[0], data[1], data[3]
    weight = (date(2020, 12, 15) - date(2020, 11, 15)) / (date(2021, 2, 15) - date(2020, 11, 15))
    np.testing.assert_allclose(december, november + weight * (february - november), rtol=1e-5,
                               atol=0.01)


def test_the_pseudo_reference_has_enough_polygons_per_class(prepared):
    """The three kept classes each have polygons for training, validation and test."""
    assert sorted(prepared["polygons"]) == sorted(CLASSES)
    assert min(prepared["polygons"].values()) >= 3
    layer_source = ogr.Open(str(prepared["reference"]))
    definition = layer_source.GetLayer("reference").GetLayerDefn()
    kinds = {definition.GetFieldDefn(i).GetName(): definition.GetFieldDefn(i).GetType()
             for i in range(definition.GetFieldCount())}
    assert kinds == {"class_id": ogr.OFTInteger, "class_name": ogr.OFTString}


@pytest.mark.slow
def test_training_beats_the_majority_class_and_records_the_inputs(belgium):
    """Held-out accuracy clearly above the majority share; dates, gap-filling and attention
    per date are in the model file."""
    meta = read_metadata(belgium["model"])
    metrics = meta["metrics"]
    support = np.array([row["support"] for row in metrics["per_class"]])
    assert belgium["outputs"]["OA"] == pytest.approx(metrics["overall_accuracy"])
    assert metrics["overall_accuracy"] > support.max() / support.sum() + OA_MARGIN, metrics
    assert metrics["kappa"] > MIN_KAPPA and metrics["mean_f1"] > MIN_MEAN_F1, metrics
    assert min(row["f1"] for row in metrics["per_class"]) > MIN_F1, metrics["per_class"]
    s1, s2 = meta["inputs"]["s1"], meta["inputs"]["s2"]
    assert s1["dates"] == MONTHS and s2["dates"] == S2_DATES and len(S2_DATES) < len(MONTHS)
    assert (s1["gapfill"], s2["gapfill"], s2["masked"]) == (False, True, True)
    assert [c["name"] for c in meta["classes"]] == list(CLASSES.values())
    for row in meta["training"]["split_summary"]:
        assert min(row[f"{part}_objects"] for part in ("train", "validation", "test")) >= 1
    for key, dates in (("s1", MONTHS), ("s2", S2_DATES)):
        attention = meta["attention"][key]
        assert attention["dates"] == dates and attention["pixels_from"] == "test"
        assert set(attention["by_class"]) == set(CLASSES.values())
        for weights in attention["by_class"].values():
            assert len(weights) == len(dates)
            assert sum(weights) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.slow
def test_the_map_lies_on_the_input_grid_and_follows_the_pseudo_reference(belgium):
    """Class and confidence maps on the S2 grid exactly; the map agrees with the polygons."""
    with rasterio.open(belgium["s2"][0]) as s2:
        grid = (s2.width, s2.height, s2.transform.to_gdal(), s2.crs)
    with rasterio.open(belgium["map"]) as out:
        assert (out.width, out.height, out.transform.to_gdal(), out.crs) == grid
        assert out.count == 1 and out.dtypes[0] == "uint8"
        assert out.tags()["LCFUSION_FAMILY"] == "twinns"
        labels = out.read(1)
    assert set(np.unique(labels)) <= set(CLASSES)
    with rasterio.open(belgium["confidence"]) as out:
        assert (out.width, out.height, out.transform.to_gdal(), out.crs) == grid
        confidence = out.read(1)
    assert np.isfinite(confidence).all()
    assert confidence.min() >= 1 / len(CLASSES) - 1e-6 and confidence.max() <= 1 + 1e-6
    truth = burn(belgium["reference"], labels.shape, rasterio.Affine.from_gdal(*grid[2]))
    inside = truth != 255
    assert (labels[inside] == truth[inside]).mean() > MIN_AGREEMENT
    assert any("10,000 pixels in" in line and "pixels per second" in line
               for line in belgium["classify_log"].lines)
