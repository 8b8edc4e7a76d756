"""Bad inputs through Processing, for every lcfusion algorithm.

Each case runs an algorithm with `processing.run` (which calls checkParameterValues first, as
the dialog does) and expects either a clear error that names the parameter at fault and says
what is wrong, or a correct result. In every case the output folder starts with earlier
outputs at the output paths: a failed run leaves every byte of the folder as it was (no
partial file, nothing new), a successful one replaces them with complete, valid files
(Processing's meaning of choosing an existing file as output) and adds nothing unexpected.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from html import escape as html_escape
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import processing
import pytest
import rasterio
import torch
from helpers import fgunet_train_job, mrfusion_train_job, twinns_train_job, write_raster
from osgeo import ogr, osr
from processing_helpers import TINY_FOREST, TINY_MRFUSION, TINY_TWINNS, contents
from qgis.core import QgsProcessingException, QgsProcessingFeedback, QgsRasterLayer

from lcfusion.engine.families.fgunet.commands import train_fgunet
from lcfusion.engine.families.mrfusion.commands import train_mrfusion
from lcfusion.engine.families.twinns.commands import train_twinns
from lcfusion.engine.jobs import Job
from lcfusion.engine.modelfile.header import read_header
from lcfusion.engine.modelfile.storage import load_model, save_model
from lcfusion.engine.progress import NullReporter
from lcfusion.engine.sample_scene import SampleScene

ogr.UseExceptions()
osr.UseExceptions()

TRAIN_FGUNET = "lcfusion:trainfgunet"
CLASSIFY_FGUNET = "lcfusion:classifyfgunet"
TRAIN_MRFUSION = "lcfusion:trainmrfusion"
CLASSIFY_MRFUSION = "lcfusion:classifymrfusion"
TRAIN_TWINNS = "lcfusion:traintwinns"
CLASSIFY_TWINNS = "lcfusion:classifytwinns"
TRAIN_FOREST = "lcfusion:trainrandomforest"
CLASSIFY_FOREST = "lcfusion:classifyrandomforest"
EVALUATE = "lcfusion:evaluate"

#: The output parameters of each algorithm and the file each writes to in the output folder.
OUTPUTS = {
    **{alg: {"OUTPUT_MODEL": "model.lcfusion", "OUTPUT_REPORT": "report.html"}
       for alg in (TRAIN_FGUNET, TRAIN_MRFUSION, TRAIN_TWINNS, TRAIN_FOREST)},
    **{alg: {"OUTPUT": "map.tif", "OUTPUT_CONFIDENCE": "confidence.tif"}
       for alg in (CLASSIFY_FGUNET, CLASSIFY_MRFUSION, CLASSIFY_TWINNS, CLASSIFY_FOREST)},
    EVALUATE: {"OUTPUT_HTML": "report.html", "OUTPUT_CSV": "matrix.csv"},
}
#: What a successful run writes beside an output, by parameter: the styles of the maps, and
#: GDAL's statistics of the confidence map (QGIS computes them for its style).
SIDECARS = {"OUTPUT": (".qml",), "OUTPUT_CONFIDENCE": (".qml", ".tif.aux.xml")}
#: The fixture holding a trained model of each family.
MODELS = {"fgunet": "tiny_fgunet", "mrfusion": "tiny_mrfusion", "twinns": "tiny_twinns",
          "randomforest": "trained_randomforest"}
#: Engine settings that train a deep model in seconds: the cases need a model of the family
#: whose weights work, not a good one (the session's `trained*` models take minutes to train).
TINY_ENGINE = {"fgunet": {"epochs": 1, "patches_per_epoch": 16, "validation_patches": 4},
               "mrfusion": {"epochs": 1, "samples_per_epoch": 64, "validation_samples": 0},
               "twinns": {"epochs": 1, "samples_per_epoch": 64, "validation_samples": 32}}
#: Non-ASCII class names, one per class of the sample scene (codes 1..8).
NAMES = {1: "eau libre", 2: "forêt de conifères", 3: "blé d'hiver", 4: "maïs",
         5: "prairie – pâturée", 6: "Feuchtwiese (nass)", 7: "市街地", 8: "sol nu ø"}


# Inputs --------------------------------------------------------------------------------------

@dataclass
class Kit:
    """What a case builds its parameters from: the sample scene, the trained models and a
    folder for the inputs it makes."""

    scene: SampleScene
    inputs: Path
    request: pytest.FixtureRequest

    def model(self, family: str) -> str:
        value = self.request.getfixturevalue(MODELS[family])
        return str(value[0] if isinstance(value, tuple) else value)

    def model_named(self, family: str, names: dict[int, str]) -> str:
        """A copy of the family's trained model whose classes are called `names`."""
        metadata, weights = load_model(self.model(family))
        for entry in metadata["classes"]:
            entry["name"] = names[entry["code"]]
        return str(save_model(self.inputs / "modèle renommé.lcfusion", metadata, weights))

    def s2(self) -> list[str]:
        return [str(p) for p in self.scene.s2_paths]

    def s1(self) -> list[str]:
        return [str(p) for p in self.scene.s1_paths]

    def reference(self, path: Path | None = None, class_field: str = "class_id",
                  name_field: str | None = "class_name") -> dict:
        return {"REFERENCE": str(path or self.scene.reference_path),
                "CLASS_FIELD": class_field, "NAME_FIELD": name_field}

    def like(self, source: Path, name: str, data: np.ndarray | None = None, **changes) -> str:
        """A copy of the raster `source` named `name`, with other `data` or georeferencing
        (`origin`, `pixel`, `crs`, `nodata`)."""
        with rasterio.open(source) as src:
            values = src.read() if data is None else data
            georeference = {"origin": (src.transform.c, src.transform.f),
                            "pixel": src.transform.a, "crs": src.crs.to_string(),
                            "nodata": src.nodata, "descriptions": src.descriptions}
        path = self.inputs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(write_raster(path, values, **{**georeference, **changes}))

    def series_like(self, sources: Iterable[Path], folder: str,
                    change: Callable[[np.ndarray], np.ndarray], **changes) -> list[str]:
        """Copies of the rasters `sources` in `folder`, each with its data changed."""
        copies = []
        for source in sources:
            with rasterio.open(source) as src:
                data = change(src.read())
            copies.append(self.like(source, f"{folder}/{Path(source).name}", data, **changes))
        return copies

    def polygons(self, name: str, rows: Iterable[tuple[dict, ogr.Geometry | None]],
                 fields: dict[str, int], geometry_type: int = ogr.wkbPolygon,
                 epsg: int = 32631) -> str:
        """A GeoPackage layer ``reference`` of `rows` (field values, geometry)."""
        path = self.inputs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
        layer = source.CreateLayer("reference", srs, geometry_type)
        for field_name, kind in fields.items():
            layer.CreateField(ogr.FieldDefn(field_name, kind))
        for values, geometry in rows:
            feature = ogr.Feature(layer.GetLayerDefn())
            for key, value in values.items():
                if value is not None:
                    feature.SetField(key, value)
            if geometry is not None:
                feature.SetGeometry(geometry)
            layer.CreateFeature(feature)
        source = None
        return str(path)

    def scene_polygons(self) -> list[tuple[dict, ogr.Geometry]]:
        """(class_id, class_name, class_color) and polygon of every reference feature."""
        source = ogr.Open(str(self.scene.reference_path))
        layer = source.GetLayer(0)
        rows = [({key: feature.GetField(key) for key in ("class_id", "class_name",
                                                         "class_color")},
                 feature.GetGeometryRef().Clone()) for feature in layer]
        source = None
        return rows

    def reference_like(self, name: str, change: Callable[[dict, ogr.Geometry], tuple],
                       fields: dict[str, int] | None = None,
                       geometry_type: int = ogr.wkbPolygon, epsg: int = 32631,
                       class_field: str = "class_id",
                       name_field: str | None = "class_name") -> dict:
        """The reference parameters of a layer of the scene's polygons, each (values,
        geometry) passed through `change`."""
        fields = fields or {"class_id": ogr.OFTInteger, "class_name": ogr.OFTString}
        rows = [change(values, geometry) for values, geometry in self.scene_polygons()]
        rows = [({k: v for k, v in values.items() if k in fields}, geometry)
                for values, geometry in rows]
        path = self.polygons(name, rows, fields, geometry_type, epsg)
        return self.reference(Path(path), class_field, name_field)

    def one_pixel_series(self) -> list[str]:
        """The S2 dates as 1 x 1 rasters at the scene's top-left corner."""
        return [self.like(p, f"one pixel/{p.name}", np.full((10, 1, 1), 1000, np.uint16))
                for p in self.scene.s2_paths]

    def pan_ms(self) -> dict:
        return {"PAN": str(self.scene.pan_path), "MS": str(self.scene.ms_path)}

    def pan_ms_corner(self, folder: str, change: Callable[[np.ndarray], np.ndarray] = np.copy
                      ) -> dict:
        """The top-left 128 x 128 PAN pixels and 32 x 32 MS pixels of the scene, changed by
        `change` (as float32, without nodata) in `folder`."""
        parameters = {}
        for key, path, side in (("PAN", self.scene.pan_path, 128),
                                ("MS", self.scene.ms_path, 32)):
            with rasterio.open(path) as src:
                data = change(src.read()[:, :side, :side].astype(np.float32))
            parameters[key] = self.like(path, f"{folder}/{key.lower()} é.tif", data, nodata=None)
        return parameters


def unchanged(values: dict, geometry: ogr.Geometry) -> tuple[dict, ogr.Geometry]:
    return values, geometry


def renamed(values: dict, geometry: ogr.Geometry) -> tuple[dict, ogr.Geometry]:
    """The class names replaced by the non-ASCII `NAMES`."""
    return {**values, "class_name": NAMES[values["class_id"]]}, geometry


def shifted(geometry: ogr.Geometry, dx: float, dy: float) -> ogr.Geometry:
    moved = geometry.Clone()
    for ring in range(moved.GetGeometryCount()):
        part = moved.GetGeometryRef(ring)
        for i in range(part.GetPointCount()):
            x, y = part.GetPoint_2D(i)
            part.SetPoint_2D(i, x + dx, y + dy)
    return moved


def bowtie(geometry: ogr.Geometry) -> ogr.Geometry:
    """The polygon's bounding box drawn as a self-intersecting bow tie (an invalid polygon)."""
    west, east, south, north = geometry.GetEnvelope()
    return ogr.CreateGeometryFromWkt(
        f"POLYGON(({west} {south},{east} {north},{east} {south},{west} {north},{west} {south}))")


def collection(geometry: ogr.Geometry) -> ogr.Geometry:
    """A geometry collection of the polygon, a line across the parcels 500 m either side and a
    point: only the polygon is reference."""
    west, east, south, north = geometry.GetEnvelope()
    middle = (south + north) / 2
    return ogr.CreateGeometryFromWkt(
        f"GEOMETRYCOLLECTION({geometry.ExportToWkt()},"
        f"LINESTRING({west - 500} {middle},{east + 500} {middle}),POINT({west} {north + 50}))")


def with_nan_and_inf(data: np.ndarray) -> np.ndarray:
    """The data as float32 with NaN, +Inf and -Inf pixels scattered over every band."""
    values = data.astype(np.float32)
    values[:, 5::7, 3::11] = np.nan
    values[:, 2::13, 1::9] = np.inf
    values[:, 9::17, 6::5] = -np.inf
    return values


# Outcomes ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Refused:
    """The run fails with a message naming `parameter` and holding each of `words`; with
    `in_check`, checkParameterValues (the dialog's check) already refuses the values."""

    parameter: str
    words: tuple[str, ...]
    in_check: bool = False


@dataclass(frozen=True)
class Run:
    """A successful run: its results, what it told the user and the parameters it was given."""

    results: dict
    log: str
    parameters: dict


@dataclass(frozen=True)
class Works:
    """The run succeeds and `verify(run)` holds."""

    verify: Callable[[Run], None]


@dataclass(frozen=True)
class Case:
    """An algorithm, its parameters built from a `Kit`, the outcome expected; `read_only`: the
    output folder refuses writes; `outputs`: file names other than `OUTPUTS`."""

    algorithm: str
    parameters: Callable[[Kit], dict]
    outcome: Refused | Works
    read_only: bool = False
    outputs: dict[str, str] = field(default_factory=dict)


def model_classes(path: str) -> dict[int, str]:
    return {c["code"]: c["name"] for c in read_header(path).metadata["classes"]}


def class_map_values(path: str) -> tuple[np.ndarray, float]:
    with rasterio.open(path) as src:
        return src.read(1), src.nodata


# Damaged models and checks of the results ----------------------------------------------------

def truncated(kit: Kit, model: str) -> str:
    """The first three quarters of the model file."""
    target = kit.inputs / "truncated.lcfusion"
    data = Path(model).read_bytes()
    target.write_bytes(data[: len(data) * 3 // 4])
    return str(target)


def tampered(kit: Kit, model: str) -> str:
    """The model with one class renamed in its metadata, the file's length kept."""
    data = Path(model).read_bytes()
    assert data.count(b"forest") >= 1
    target = kit.inputs / "tampered.lcfusion"
    target.write_bytes(data.replace(b"forest", b"FOREST", 1))
    return str(target)


def copied(kit: Kit, source: str, name: str) -> str:
    target = kit.inputs / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)
    return str(target)


def empty_file(kit: Kit, name: str) -> str:
    target = kit.inputs / name
    target.write_bytes(b"")
    return str(target)


def assert_finite_accuracy(run: Run) -> None:
    assert 0.0 <= run.results["OA"] <= 1.0
    assert np.isfinite(run.results["KAPPA"]) and np.isfinite(run.results["MEAN_F1"])


def assert_finite_model(run: Run) -> None:
    """Accuracy and every weight of the model finite: no NaN reached the training."""
    assert_finite_accuracy(run)
    _, weights = load_model(run.results["OUTPUT_MODEL"])
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())


def assert_names_kept(run: Run) -> None:
    assert model_classes(run.results["OUTPUT_MODEL"]) == NAMES


def assert_text_classes_kept(run: Run) -> None:
    """Text classes get the codes 1..n in the names' sorted order."""
    names = model_classes(run.results["OUTPUT_MODEL"])
    assert names == dict(enumerate(sorted(NAMES.values()), start=1))


def assert_whole_codes(run: Run) -> None:
    assert list(model_classes(run.results["OUTPUT_MODEL"])) == list(range(1, 9))


def assert_classified(run: Run, shape: tuple[int, int]) -> None:
    """A class map of `shape` with a class code in every pixel."""
    values, _ = class_map_values(run.results["OUTPUT"])
    assert values.shape == shape
    assert np.isin(values, list(range(1, 9))).all()


def assert_nodata_where_not_finite(run: Run) -> None:
    """Nodata exactly where an input value (of the pixel, or of the coarser MS pixel over it)
    is NaN or infinite; a class code everywhere else."""
    values, nodata = class_map_values(run.results["OUTPUT"])
    inputs = [run.parameters[key] for key in ("INPUT", "PAN", "MS") if key in run.parameters]
    missing = np.zeros(values.shape, dtype=bool)
    for path in [p for entry in inputs for p in ([entry] if isinstance(entry, str) else entry)]:
        with rasterio.open(path) as src:
            bad = ~np.isfinite(src.read()).all(axis=0)
        ratio = values.shape[0] // bad.shape[0]
        missing |= np.kron(bad, np.ones((ratio, ratio), dtype=bool))
    assert missing.any()
    assert ((values == nodata) == missing).all()
    assert np.isin(values[~missing], list(range(1, 9))).all()


def assert_legend(run: Run) -> None:
    """The class map's default style (its .qml) names the classes `NAMES`."""
    layer = QgsRasterLayer(run.results["OUTPUT"], "map")
    assert layer.isValid()
    assert {c.value: c.label for c in layer.renderer().classes()} == NAMES


def assert_all_nodata(run: Run) -> None:
    values, nodata = class_map_values(run.results["OUTPUT"])
    assert (values == nodata).all()


def assert_perfect(run: Run) -> None:
    """The scene's truth agrees with every reference pixel (3,895 of them)."""
    assert run.results["OA"] == 1.0 and run.results["N_PIXELS"] == 3895


def assert_skipped_nulls(run: Run) -> None:
    assert run.results["OA"] == 1.0 and 0 < run.results["N_PIXELS"] < 3895
    assert "5 reference features skipped: no class value" in run.log


def assert_single_class(run: Run) -> None:
    """Perfect scores, and no Kappa: with one class its chance agreement is 1, so it is 0/0."""
    assert run.results["OA"] == 1.0 and run.results["MEAN_F1"] == 1.0
    assert "KAPPA" not in run.results
    assert 0 < run.results["N_PIXELS"] < 3895
    assert "35 reference features without a polygon left out" in run.log


def assert_repaired(run: Run) -> None:
    """The five bow ties of class 2 were repaired, not dropped: the class is learnt."""
    assert_finite_accuracy(run)
    assert "5 invalid reference polygons repaired (Make Valid)" in run.log
    assert_whole_codes(run)


def assert_report_names(run: Run) -> None:
    html = Path(run.results["OUTPUT_HTML"]).read_text(encoding="utf-8")
    table = Path(run.results["OUTPUT_CSV"]).read_text(encoding="utf-8")
    for name in NAMES.values():
        assert html_escape(name) in html and name in table


# The cases -----------------------------------------------------------------------------------

def fgunet_training(kit: Kit, **changes) -> dict:
    return {"INPUT": kit.s2(), **kit.reference(), **kit.request.getfixturevalue("tiny_training"),
            **changes}


def mrfusion_training(kit: Kit, **changes) -> dict:
    return {"PAN": str(kit.scene.pan_path), "MS": str(kit.scene.ms_path), **kit.reference(),
            "SEED": 2, **TINY_MRFUSION, **changes}


def twinns_training(kit: Kit, **changes) -> dict:
    return {"S1": kit.s1(), "S2": kit.s2(), **kit.reference(), **TINY_TWINNS, **changes}


def forest_training(kit: Kit, **changes) -> dict:
    return {"SOURCE": 0, "S2": kit.s2(), **kit.reference(), **TINY_FOREST, **changes}


CASES = {
    # trainfgunet
    "trainfgunet-reference-in-a-wrong-crs": Case(
        TRAIN_FGUNET, lambda kit: fgunet_training(kit, **kit.reference_like(
            "wrong_crs.gpkg", unchanged, epsg=4326)),
        Refused("REFERENCE", ("can be reprojected from its CRS EPSG:4326 to the rasters' "
                              "CRS EPSG:32631", "check that the layer's CRS"))),
    "trainfgunet-reference-without-features": Case(
        TRAIN_FGUNET, lambda kit: fgunet_training(kit, **kit.reference(kit.polygons(
            "empty.gpkg", [], {"class_id": ogr.OFTInteger, "class_name": ogr.OFTString}))),
        Refused("REFERENCE", ("'empty' has no features", "choose a layer"), in_check=True)),
    "trainfgunet-class-field-of-fractions": Case(
        TRAIN_FGUNET, lambda kit: fgunet_training(kit, **kit.reference_like(
            "fractions.gpkg", lambda v, g: ({**v, "class_id": v["class_id"] + 0.5}, g),
            {"class_id": ogr.OFTReal, "class_name": ogr.OFTString})),
        Refused("CLASS_FIELD", ("holds the non-integer value", "must be whole numbers"))),
    "trainfgunet-single-class": Case(
        TRAIN_FGUNET, lambda kit: fgunet_training(kit, **kit.reference_like(
            "one_class.gpkg", lambda v, g: ({**v, "class_id": 4, "class_name": "maize"}, g))),
        Refused("CLASS_FIELD", ("only one class ('maize', code 4)", "at least two"))),
    "trainfgunet-nodata-everywhere": Case(
        TRAIN_FGUNET, lambda kit: fgunet_training(kit, INPUT=kit.series_like(
            kit.scene.s2_paths, "empty", np.zeros_like)),
        Refused("INPUT", ("channels 1, 2", "nodata everywhere"))),
    "trainfgunet-nan-and-inf-pixels": Case(
        TRAIN_FGUNET, lambda kit: fgunet_training(kit, INPUT=kit.series_like(
            kit.scene.s2_paths, "nan", with_nan_and_inf, nodata=None)),
        Works(assert_finite_model)),
    "trainfgunet-1x1-rasters": Case(
        TRAIN_FGUNET, lambda kit: fgunet_training(kit, INPUT=kit.one_pixel_series()),
        Refused("INPUT", ("only 1 x 1 pixels", "at least 4 x 4"))),
    "trainfgunet-patch-larger-than-the-rasters": Case(
        TRAIN_FGUNET, lambda kit: fgunet_training(kit, PATCH_SIZE=4096),
        Refused("PATCH_SIZE", ("4096", "larger than the rasters", "at most 96"))),
    "trainfgunet-non-ascii-names-in-paths-with-spaces": Case(
        TRAIN_FGUNET, lambda kit: fgunet_training(
            kit, INPUT=[kit.like(p, f"séries S2 été/{p.name}") for p in kit.scene.s2_paths],
            **kit.reference_like("référence polygones/données d'été.gpkg", renamed)),
        Works(assert_names_kept),
        outputs={"OUTPUT_MODEL": "modèle FG-UNET é.lcfusion",
                 "OUTPUT_REPORT": "rapport d'entraînement.html"}),
    "trainfgunet-read-only-output-folder": Case(
        TRAIN_FGUNET, fgunet_training,
        Refused("OUTPUT_REPORT", ("is not writable", "choose another output path"),
                in_check=True), read_only=True),

    # classifyfgunet
    "classifyfgunet-mrfusion-model": Case(
        CLASSIFY_FGUNET, lambda kit: {"MODEL": kit.model("mrfusion"), "INPUT": kit.s2()},
        Refused("MODEL", ("is a model of the MRFusion family, not FG-UNET",
                          "use Classify with MRFusion"), in_check=True)),
    "classifyfgunet-nan-and-inf-pixels": Case(
        CLASSIFY_FGUNET, lambda kit: {
            "MODEL": kit.model("fgunet"), "TILE_SIZE": 128,
            "INPUT": kit.series_like(kit.scene.s2_paths, "nan", with_nan_and_inf, nodata=None)},
        Works(assert_nodata_where_not_finite)),
    "classifyfgunet-nodata-everywhere": Case(
        CLASSIFY_FGUNET, lambda kit: {
            "MODEL": kit.model("fgunet"), "TILE_SIZE": 128,
            "INPUT": kit.series_like(kit.scene.s2_paths, "empty", np.zeros_like)},
        Works(assert_all_nodata)),
    "classifyfgunet-1x1-rasters": Case(
        CLASSIFY_FGUNET, lambda kit: {"MODEL": kit.model("fgunet"),
                                      "INPUT": kit.one_pixel_series()},
        Works(lambda run: assert_classified(run, (1, 1)))),
    "classifyfgunet-non-ascii-class-names-in-the-legend": Case(
        CLASSIFY_FGUNET, lambda kit: {"MODEL": kit.model_named("fgunet", NAMES), "TILE_SIZE": 128,
                                      "INPUT": kit.s2()},
        Works(assert_legend)),
    "classifyfgunet-huge-tile-size": Case(
        CLASSIFY_FGUNET, lambda kit: {"MODEL": kit.model("fgunet"), "INPUT": kit.s2(),
                                      "TILE_SIZE": 1_000_000},
        Works(lambda run: assert_classified(run, (96, 96)))),
    "classifyfgunet-read-only-output-folder": Case(
        CLASSIFY_FGUNET, lambda kit: {"MODEL": kit.model("fgunet"), "INPUT": kit.s2()},
        Refused("OUTPUT", ("is not writable",), in_check=True), read_only=True),

    # trainmrfusion
    "trainmrfusion-ms-in-another-crs": Case(
        TRAIN_MRFUSION, lambda kit: mrfusion_training(
            kit, MS=kit.like(kit.scene.ms_path, "ms_utm32.tif", crs="EPSG:32632")),
        Refused("MS", ("CRS mismatch", "EPSG:32632"), in_check=True)),
    "trainmrfusion-ms-disjoint-from-the-pan": Case(
        TRAIN_MRFUSION, lambda kit: mrfusion_training(
            kit, MS=kit.like(kit.scene.ms_path, "ms_far.tif", origin=(700000.0, 5600000.0))),
        Refused("MS", ("does not cover the whole PAN image", "Clip Raster by Extent"),
                in_check=True)),
    "trainmrfusion-nan-and-inf-pixels": Case(
        TRAIN_MRFUSION, lambda kit: mrfusion_training(
            kit, PAN=kit.series_like([kit.scene.pan_path], "nan", with_nan_and_inf,
                                     nodata=None)[0],
            MS=kit.series_like([kit.scene.ms_path], "nan", with_nan_and_inf, nodata=None)[0]),
        Works(assert_finite_model)),
    "trainmrfusion-pan-nodata-everywhere": Case(
        TRAIN_MRFUSION, lambda kit: mrfusion_training(
            kit, PAN=kit.series_like([kit.scene.pan_path], "empty", np.zeros_like)[0]),
        Refused("PAN", ("channel 1 holds no valid value", "nodata everywhere"))),
    "trainmrfusion-patch-larger-than-the-pan": Case(
        TRAIN_MRFUSION, lambda kit: mrfusion_training(kit, PATCH_SIZE=4096),
        Refused("PATCH_SIZE", ("4096", "larger"))),

    # classifymrfusion
    "classifymrfusion-truncated-model": Case(
        CLASSIFY_MRFUSION, lambda kit: {"MODEL": truncated(kit, kit.model("mrfusion")),
                                        **kit.pan_ms()},
        Refused("MODEL", ("not a valid lcfusion model file", "checksum does not match",
                          "train the model again"), in_check=True)),
    "classifymrfusion-twinns-model": Case(
        CLASSIFY_MRFUSION, lambda kit: {"MODEL": kit.model("twinns"), **kit.pan_ms()},
        Refused("MODEL", ("is a model of the TWINNS family, not MRFusion",
                          "use Classify with TWINNS"), in_check=True)),
    "classifymrfusion-nan-and-inf-pixels": Case(
        CLASSIFY_MRFUSION, lambda kit: {
            "MODEL": kit.model("mrfusion"), **kit.pan_ms_corner("nan", with_nan_and_inf)},
        Works(assert_nodata_where_not_finite)),
    "classifymrfusion-paths-with-spaces-and-non-ascii": Case(
        CLASSIFY_MRFUSION, lambda kit: {
            "MODEL": copied(kit, kit.model("mrfusion"), "modèles été/mrfusion ü.lcfusion"),
            **kit.pan_ms_corner("images été")},
        Works(lambda run: assert_classified(run, (128, 128))),
        outputs={"OUTPUT": "carte des classes é.tif", "OUTPUT_CONFIDENCE": "confiance ü.tif"}),

    # traintwinns
    "traintwinns-class-field-of-nulls": Case(
        TRAIN_TWINNS, lambda kit: twinns_training(kit, **kit.reference_like(
            "nulls.gpkg", lambda v, g: ({**v, "class_id": None}, g))),
        Refused("CLASS_FIELD", ("'class_id' is empty (NULL) in all 40 features",))),
    "traintwinns-reference-far-away": Case(
        TRAIN_TWINNS, lambda kit: twinns_training(kit, **kit.reference_like(
            "far.gpkg", lambda v, g: (v, shifted(g, 250_000, -400_000)))),
        Refused("REFERENCE", ("overlaps the rasters",))),
    "traintwinns-s1-in-another-crs": Case(
        TRAIN_TWINNS, lambda kit: twinns_training(kit, S1=kit.series_like(
            kit.scene.s1_paths, "utm32", np.copy, crs="EPSG:32632")),
        Refused("S1", ("CRS", "EPSG:32632"))),
    "traintwinns-line-reference": Case(
        TRAIN_TWINNS, lambda kit: twinns_training(kit, **kit.reference_like(
            "lines.gpkg", lambda v, g: (v, g.Boundary()), geometry_type=ogr.wkbLineString)),
        Refused("REFERENCE", ("'lines' holds lines", "choose a layer of polygons"),
                in_check=True)),
    "traintwinns-huge-patch-size": Case(
        TRAIN_TWINNS, lambda kit: twinns_training(kit, PATCH_SIZE=10001),
        Refused("PATCH_SIZE", ("10001 pixels is larger than the rasters", "at most 95"))),

    # classifytwinns
    "classifytwinns-tampered-model": Case(
        CLASSIFY_TWINNS, lambda kit: {"MODEL": tampered(kit, kit.model("twinns")),
                                      "S1": kit.s1(), "S2": kit.s2()},
        Refused("MODEL", ("checksum does not match",), in_check=True)),
    "classifytwinns-randomforest-model": Case(
        CLASSIFY_TWINNS, lambda kit: {"MODEL": kit.model("randomforest"), "S1": kit.s1(),
                                      "S2": kit.s2()},
        Refused("MODEL", ("is a model of the Random Forest family, not TWINNS",
                          "use Classify with Random Forest"), in_check=True)),
    "classifytwinns-s1-disjoint-from-s2": Case(
        CLASSIFY_TWINNS, lambda kit: {
            "MODEL": kit.model("twinns"), "S2": kit.s2(),
            "S1": kit.series_like(kit.scene.s1_paths, "far", np.copy,
                                  origin=(700000.0, 5600000.0))},
        Refused("S1", ("grid",))),

    # trainrandomforest
    "trainrandomforest-invalid-polygons": Case(
        TRAIN_FOREST, lambda kit: forest_training(kit, **kit.reference_like(
            "bowties.gpkg", lambda v, g: (v, bowtie(g) if v["class_id"] == 2 else g))),
        Works(assert_repaired)),
    "trainrandomforest-geometry-collections": Case(
        TRAIN_FOREST, lambda kit: forest_training(kit, **kit.reference_like(
            "collections.gpkg", lambda v, g: (v, collection(g)),
            geometry_type=ogr.wkbGeometryCollection)),
        Works(assert_finite_accuracy)),
    "trainrandomforest-class-field-of-whole-floats": Case(
        TRAIN_FOREST, lambda kit: forest_training(kit, **kit.reference_like(
            "floats.gpkg", lambda v, g: ({**v, "class_id": float(v["class_id"])}, g),
            {"class_id": ogr.OFTReal, "class_name": ogr.OFTString})),
        Works(assert_whole_codes)),
    "trainrandomforest-non-ascii-text-classes": Case(
        TRAIN_FOREST, lambda kit: forest_training(kit, **kit.reference_like(
            "texte.gpkg", lambda v, g: ({"classe": NAMES[v["class_id"]]}, g),
            {"classe": ogr.OFTString}, class_field="classe", name_field=None)),
        Works(assert_text_classes_kept)),
    "trainrandomforest-single-class": Case(
        TRAIN_FOREST, lambda kit: forest_training(kit, **kit.reference_like(
            "one_class.gpkg", lambda v, g: ({**v, "class_id": 2, "class_name": "forest"}, g))),
        Refused("CLASS_FIELD", ("only one class ('forest', code 2)", "at least two"))),
    "trainrandomforest-huge-patch-size": Case(
        TRAIN_FOREST, lambda kit: forest_training(kit, FEATURES=1, PATCH_SIZE=999),
        Refused("PATCH_SIZE", ("999 pixels is larger than the rasters", "at most 95"))),
    "trainrandomforest-1x1-rasters": Case(
        TRAIN_FOREST, lambda kit: forest_training(kit, S2=kit.one_pixel_series()),
        Refused("REFERENCE", ("overlaps the rasters",))),
    "trainrandomforest-read-only-output-folder": Case(
        TRAIN_FOREST, forest_training, Refused("OUTPUT_REPORT", ("is not writable",),
                                               in_check=True), read_only=True),

    # classifyrandomforest
    "classifyrandomforest-fgunet-model": Case(
        CLASSIFY_FOREST, lambda kit: {"MODEL": kit.model("fgunet"), "S2": kit.s2()},
        Refused("MODEL", ("is a model of the FG-UNET family, not Random Forest",
                          "use Classify with FG-UNET"), in_check=True)),
    "classifyrandomforest-empty-model-file": Case(
        CLASSIFY_FOREST, lambda kit: {"MODEL": empty_file(kit, "empty.lcfusion"),
                                      "S2": kit.s2()},
        Refused("MODEL", ("too short",), in_check=True)),
    "classifyrandomforest-nodata-everywhere": Case(
        CLASSIFY_FOREST, lambda kit: {
            "MODEL": kit.model("randomforest"),
            "S2": kit.series_like(kit.scene.s2_paths, "empty", np.zeros_like)},
        Works(assert_all_nodata)),
    "classifyrandomforest-1x1-rasters": Case(
        CLASSIFY_FOREST, lambda kit: {"MODEL": kit.model("randomforest"),
                                      "S2": kit.one_pixel_series()},
        Works(lambda run: assert_classified(run, (1, 1)))),

    # evaluate
    "evaluate-reference-in-a-wrong-crs": Case(
        EVALUATE, lambda kit: {"INPUT": str(kit.scene.truth_path),
                               **kit.reference_like("wrong_crs.gpkg", unchanged, epsg=3857)},
        Refused("REFERENCE", ("overlaps the rasters",))),
    "evaluate-class-map-far-away": Case(
        EVALUATE, lambda kit: {"INPUT": kit.like(kit.scene.truth_path, "far.tif",
                                                 origin=(900000.0, 5600000.0)),
                               **kit.reference()},
        Refused("REFERENCE", ("overlaps the rasters",))),
    "evaluate-empty-geometries": Case(
        EVALUATE, lambda kit: {"INPUT": str(kit.scene.truth_path), **kit.reference_like(
            "empty_geometries.gpkg", lambda v, g: (v, ogr.Geometry(ogr.wkbPolygon)))},
        Refused("REFERENCE", ("none of the features", "has a polygon"))),
    "evaluate-geometry-collections": Case(
        EVALUATE, lambda kit: {"INPUT": str(kit.scene.truth_path), **kit.reference_like(
            "collections.gpkg", lambda v, g: (v, collection(g)),
            geometry_type=ogr.wkbGeometryCollection)},
        Works(assert_perfect)),
    "evaluate-some-class-values-null": Case(
        EVALUATE, lambda kit: {"INPUT": str(kit.scene.truth_path), **kit.reference_like(
            "some_nulls.gpkg", lambda v, g: (
                {**v, "class_id": None if v["class_id"] == 3 else v["class_id"]}, g))},
        Works(assert_skipped_nulls)),
    "evaluate-single-class": Case(
        EVALUATE, lambda kit: {"INPUT": str(kit.scene.truth_path), **kit.reference_like(
            "forest.gpkg", lambda v, g: (v, g if v["class_id"] == 2 else None))},
        Works(assert_single_class)),
    "evaluate-non-ascii-names-in-paths-with-spaces": Case(
        EVALUATE, lambda kit: {
            "INPUT": kit.like(kit.scene.truth_path, "carte été/vérité terrain.tif"),
            **kit.reference_like("référence polygones/données d'été.gpkg", renamed)},
        Works(assert_report_names),
        outputs={"OUTPUT_HTML": "rapport é.html", "OUTPUT_CSV": "matrice de confusion.csv"}),
    "evaluate-class-map-nodata-everywhere": Case(
        EVALUATE, lambda kit: {"INPUT": kit.like(kit.scene.truth_path, "nodata.tif",
                                                 np.full((1, 96, 96), 255, np.uint8),
                                                 nodata=255),
                               **kit.reference()},
        Refused("INPUT", ("nodata",))),
    "evaluate-read-only-output-folder": Case(
        EVALUATE, lambda kit: {"INPUT": str(kit.scene.truth_path), **kit.reference()},
        Refused("OUTPUT_HTML", ("is not writable",), in_check=True), read_only=True),
}


# Running -------------------------------------------------------------------------------------

def sidecars(parameter: str, name: str) -> list[str]:
    return [Path(name).stem + suffix for suffix in SIDECARS.get(parameter, ())]


def earlier_outputs(out: Path, names: dict[str, str]) -> None:
    """Outputs of an earlier run at the output paths (parameter -> file name), with the files
    beside them."""
    for parameter, name in names.items():
        for path in [name, *sidecars(parameter, name)]:
            (out / path).write_bytes(f"an earlier {path}\n".encode() * 50)


@pytest.fixture(scope="module")
def tiny_fgunet(tmp_path_factory, scene) -> Path:
    folder = tmp_path_factory.mktemp("tiny-fgunet")
    job = fgunet_train_job(folder, scene, folder / "model.lcfusion", **TINY_ENGINE["fgunet"])
    train_fgunet(Job.load(job), NullReporter())
    return folder / "model.lcfusion"


@pytest.fixture(scope="module")
def tiny_mrfusion(tmp_path_factory, scene) -> Path:
    folder = tmp_path_factory.mktemp("tiny-mrfusion")
    job = mrfusion_train_job(folder, scene.pan_path, scene.ms_path, scene.reference_path,
                             folder / "model.lcfusion", **TINY_ENGINE["mrfusion"])
    train_mrfusion(Job.load(job), NullReporter())
    return folder / "model.lcfusion"


@pytest.fixture(scope="module")
def tiny_twinns(tmp_path_factory, scene) -> Path:
    folder = tmp_path_factory.mktemp("tiny-twinns")
    job = twinns_train_job(folder, scene, folder / "model.lcfusion", **TINY_ENGINE["twinns"])
    train_twinns(Job.load(job), NullReporter())
    return folder / "model.lcfusion"


@pytest.fixture
def read_only():
    """Makes a folder refuse writes, even to root (chmod does not stop root): a read-only bind
    mount of the folder on itself. Skips where mounting is not permitted."""
    mounted = []

    def mount(*arguments: str) -> None:
        if shutil.which("mount") is None:
            pytest.skip("a read-only folder needs mount, which is not installed here")
        done = subprocess.run(["mount", *arguments], capture_output=True, text=True,
                              check=False)
        if done.returncode:
            pytest.skip("a read-only folder needs a read-only bind mount, which is not "
                        f"permitted here: {done.stderr.strip()}")

    def make(folder: Path) -> None:
        mount("--bind", str(folder), str(folder))
        mounted.append(folder)
        mount("-o", "remount,ro,bind", str(folder))
        with pytest.raises(OSError):
            (folder / "probe").write_bytes(b"")

    yield make
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=True)


def assert_complete(path: Path) -> None:
    """An output written whole: a raster GDAL reads to the end, a model whose checksum holds,
    a page that ends, a table, a style or statistics file that is XML."""
    if path.suffix == ".tif":
        with rasterio.open(path) as src:
            src.read()
    elif path.suffix == ".lcfusion":
        read_header(path)
    elif path.suffix == ".html":
        assert path.read_text(encoding="utf-8").rstrip().endswith("</html>")
    elif path.suffix == ".csv":
        assert len(list(csv.reader(path.open(encoding="utf-8")))) > 1
    else:
        ElementTree.parse(path)


def expect_refused(case: Case, parameters: dict, out: Path,
                   check: Callable[[str, dict], tuple[bool, str]],
                   feedback: QgsProcessingFeedback) -> None:
    """Run the case, which must fail with its message and leave `out` as it was."""
    expected = case.outcome
    if expected.in_check:
        ok, message = check(case.algorithm, parameters)
        assert not ok and f"[{expected.parameter}]: " in message, message
    before = contents(out)
    with pytest.raises(QgsProcessingException) as caught:
        processing.run(case.algorithm, parameters, feedback=feedback)
    message = str(caught.value)
    assert f"[{expected.parameter}]" in message, message
    assert all(word in message for word in expected.words), message
    for crash in ("Traceback", "internal error", "stopped unexpectedly"):
        assert crash not in message, message
    assert contents(out) == before, "the failed run changed the output folder"


def expect_works(case: Case, parameters: dict, out: Path, names: dict[str, str],
                 feedback: QgsProcessingFeedback) -> None:
    """Run the case, which must succeed, replace the earlier outputs with complete files and
    write nothing else."""
    before = contents(out)
    results = processing.run(case.algorithm, parameters, feedback=feedback)
    assert set(names) <= set(results), "an output was not written"
    after = contents(out)
    written = {path for parameter, name in names.items()
               for path in [name, *sidecars(parameter, name)]}
    assert set(after) == set(before) | written, "unexpected files in the output folder"
    for name in written:
        assert after[name] != before.get(name), f"{name} was not replaced"
        assert_complete(out / name)
    case.outcome.verify(Run(results, feedback.text(), parameters))


@pytest.mark.parametrize("case_id", list(CASES))
def test_bad_input(case_id, lcfusion_provider, scene, tmp_path, request, check,
                   recording_feedback, read_only):
    case = CASES[case_id]
    kit = Kit(scene, tmp_path / "inputs", request)
    kit.inputs.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    names = {**OUTPUTS[case.algorithm], **case.outputs}
    earlier_outputs(out, names)
    parameters = {**case.parameters(kit), **{k: str(out / v) for k, v in names.items()}}
    if case.read_only:
        read_only(out)
    feedback = recording_feedback()
    if isinstance(case.outcome, Refused):
        expect_refused(case, parameters, out, check, feedback)
    else:
        expect_works(case, parameters, out, names, feedback)
