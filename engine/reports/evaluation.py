"""The evaluate command: a class map against reference polygons, pixel by pixel.

The polygons are burned on the class map's grid; both rasters are then read window by
window, so memory does not grow with the raster. Map nodata is skipped; map codes that are
not reference classes count as wrong predictions, in extra columns after the reference
classes (rows = reference, columns = prediction).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from osgeo import gdal, ogr, osr

from ..errors import LcfusionError
from ..io.outputs import check_writable
from ..io.rasters import Grid, RasterInfo, crs_name, iter_windows, read_info, same_crs
from ..jobs import Job
from ..progress import Reporter
from ..reference.classes import ClassTable, LandCoverClass
from ..reference.polygons import Reference, ReferenceSpec, load_reference, normalized_name
from ..wording import counted
from .html import write_confusion_csv, write_evaluation_report
from .metrics import Accuracy, compute_accuracy

gdal.UseExceptions()
ogr.UseExceptions()
osr.UseExceptions()

#: Side of the windows the class map and the burned polygons are compared in.
WINDOW = 1024
#: Colour of the extra columns for map codes that are not reference classes.
UNKNOWN_COLOR = "#999999"


@dataclass
class PixelCounts:
    """Labelled pixels by (reference class index, map code), and those the map leaves out."""

    pairs: Counter = field(default_factory=Counter)
    nodata: int = 0

    @property
    def compared(self) -> int:
        return sum(self.pairs.values())

    def add(self, classes: np.ndarray, codes: np.ndarray) -> None:
        if classes.size == 0:
            return
        stacked = np.stack([classes.astype(np.int64), codes.astype(np.int64)])
        pairs, counts = np.unique(stacked, axis=1, return_counts=True)
        for (index, code), count in zip(pairs.T.tolist(), counts.tolist(), strict=True):
            self.pairs[(index, code)] += count

    def codes(self) -> Counter:
        """Pixels per map code."""
        totals: Counter = Counter()
        for (_, code), count in self.pairs.items():
            totals[code] += count
        return totals


def evaluation_outputs(job: Job) -> tuple[Path, Path]:
    """The HTML report and CSV matrix to write, checked before any work starts."""
    outputs = job.section("outputs")
    report = job.resolve(outputs.get("report"))
    matrix = job.resolve(outputs.get("matrix"))
    if report is None:
        raise LcfusionError("no output report file given", "OUTPUT_HTML")
    if matrix is None:
        raise LcfusionError("no output matrix file given", "OUTPUT_CSV")
    check_writable(report, "OUTPUT_HTML")
    check_writable(matrix, "OUTPUT_CSV")
    if report.resolve() == matrix.resolve():
        raise LcfusionError("the report and the matrix must be different files", "OUTPUT_CSV")
    return report, matrix


def class_map_info(job: Job, key: str = "class_map", parameter: str = "INPUT") -> RasterInfo:
    """The header of the class map ``inputs[key]`` (the parameter `parameter`): one band of
    integer codes on a north-up grid."""
    path = job.resolve(job.section("inputs").get(key))
    if path is None:
        raise LcfusionError("no class map given", parameter)
    info = read_info(path, parameter)
    if info.count != 1:
        raise LcfusionError(f"the class map {path.name} has {info.count} bands; choose a "
                            "single-band raster of class codes", parameter)
    if np.dtype(info.dtype).kind not in "iu":
        raise LcfusionError(f"the class map {path.name} holds {info.dtype} values; a class map "
                            "holds integer class codes (as written by the classify "
                            "algorithms)", parameter)
    return info


def polygons_crs(spec: ReferenceSpec) -> str | None:
    """The WKT of the reference layer's CRS (None when it has none or cannot be read)."""
    try:
        source = ogr.Open(spec.path)
        layer = source.GetLayerByName(spec.layer) if spec.layer else source.GetLayer(0)
        srs = layer.GetSpatialRef() if layer is not None else None
    except (RuntimeError, AttributeError):
        return None
    return srs.ExportToWkt() if srs is not None else None


def burn_reference(spec: ReferenceSpec, grid: Grid, scratch: Path, reporter: Reporter,
                   map_classes: dict[int, str]) -> Reference:
    """The polygons burned on the class map's grid, text classes taking the codes of the map's
    class table `map_classes`; an error about their position names both CRSs when they
    differ."""
    try:
        return load_reference(spec, grid, scratch, reporter, map_classes)
    except LcfusionError as exc:
        wkt = polygons_crs(spec)
        if exc.parameter != "REFERENCE" or not wkt or same_crs(wkt, grid.crs_wkt):
            raise
        raise LcfusionError(f"{exc.message} (CRS mismatch: the polygons are in "
                            f"{crs_name(wkt)}, the class map in {crs_name(grid.crs_wkt)})",
                            "REFERENCE") from exc


def _reference_summary(reference: Reference, spec: ReferenceSpec) -> str:
    """The features, labelled pixels and classes compared; with a part filter, those of the
    kept polygons (the features of the whole layer are counted where the part is chosen)."""
    pixels = counted(len(reference.pixels), "labelled pixel", thousands=True)
    classes = counted(len(reference.classes), "class")
    if spec.part:
        return (f"{pixels} in the {counted(reference.n_objects, 'polygon')} of the "
                f"{spec.part!r} part, {classes}")
    return f"{counted(reference.n_features, 'reference feature')}, {pixels}, {classes}"


def count_pixels(class_map: Path, reference: Reference, grid: Grid,
                 reporter: Reporter) -> PixelCounts:
    """Compare the map with the burned polygons window by window."""
    counts = PixelCounts()
    windows = list(iter_windows(grid.width, grid.height, WINDOW))
    with rasterio.open(class_map) as map_source, \
            rasterio.open(reference.objects_path) as objects_source:
        nodata = map_source.nodata
        for done, window in enumerate(windows, start=1):
            objects = objects_source.read(1, window=window)
            labelled = objects > 0
            if labelled.any():
                codes = map_source.read(1, window=window)[labelled]
                classes = reference.object_class[objects[labelled]]
                if nodata is not None:
                    kept = codes != nodata
                    counts.nodata += int(kept.size - np.count_nonzero(kept))
                    codes, classes = codes[kept], classes[kept]
                counts.add(classes, codes)
            reporter.progress(done / len(windows), "comparing")
    return counts


def map_legend(class_map: Path) -> tuple[dict[int, str], dict[int, str]]:
    """Names and colours per code stored in a class map: the lcfusion tag, else GDAL's
    category names, and its colour table."""
    names: dict[int, str] = {}
    colors: dict[int, str] = {}
    with rasterio.open(class_map) as source:
        try:
            tagged = json.loads(source.tags().get("LCFUSION_CLASSES", "[]"))
            names = {int(c["code"]): str(c["name"]) for c in tagged}
        except (ValueError, TypeError, KeyError):
            names = {}
        try:
            colors = {code: "#{:02x}{:02x}{:02x}".format(*rgba[:3])
                      for code, rgba in source.colormap(1).items()}
        except ValueError:
            colors = {}
    if not names:
        dataset = gdal.Open(str(class_map))
        categories = dataset.GetRasterBand(1).GetCategoryNames() or []
        names = {code: name for code, name in enumerate(categories) if name}
    return names, colors


def check_codes_against_map(reference: ClassTable, spec: ReferenceSpec,
                            map_classes: dict[int, str], reporter: Reporter) -> None:
    """Warn of reference codes the map's class table lacks, and of codes the name field and
    the map name differently (the two may not use the same codes)."""
    if not map_classes:
        return
    listed = ", ".join(f"{code} {name}" for code, name in sorted(map_classes.items()))
    for entry in reference:
        if entry.code not in map_classes:
            reporter.warning(f"the reference class {entry.code} ({entry.name}) is not a class "
                             f"of the class map (its classes: {listed}); its pixels count as "
                             "wrong predictions")
        elif (spec.name_field and entry.name != f"class {entry.code}"
              and normalized_name(entry.name) != normalized_name(map_classes[entry.code])):
            reporter.warning(
                f"code {entry.code} is {entry.name!r} in the field {spec.name_field!r} but "
                f"{map_classes[entry.code]!r} in the class map: check that the reference and "
                f"the map use the same codes (the map's classes: {listed})")


def comparison_classes(reference: ClassTable, spec: ReferenceSpec, codes: Counter,
                       legend: tuple[dict[int, str], dict[int, str]]) -> ClassTable:
    """The reference classes, then one class per map code that is not a reference class.

    Reference classes the polygons do not name take the map's names; the map's colours are
    used when the polygons give none.
    """
    names, colors = legend
    own_colors = bool(spec.color_field or spec.colors)
    entries = []
    for entry in reference:
        name = entry.name
        if name == f"class {entry.code}" and names.get(entry.code):
            name = names[entry.code]
        color = entry.color if own_colors else colors.get(entry.code, entry.color)
        entries.append(LandCoverClass(entry.index, entry.code, name, color))
    for code in sorted(set(codes) - set(reference.codes)):
        label = f"code {code} {names[code]}" if names.get(code) else f"code {code}"
        entries.append(LandCoverClass(len(entries), code, f"{label} (not in the reference)",
                                      UNKNOWN_COLOR))
    return ClassTable(tuple(entries))


def pixel_accuracy(counts: PixelCounts, classes: ClassTable, n_reference: int) -> Accuracy:
    """Metrics (scikit-learn) from the pixel counts; columns after `n_reference` are map
    codes that are not reference classes, marked ``in_reference: False``."""
    column = {entry.code: entry.index for entry in classes}
    pairs = list(counts.pairs.items())
    reference = np.array([index for (index, _), _ in pairs], dtype=np.int64)
    predicted = np.array([column[code] for (_, code), _ in pairs], dtype=np.int64)
    weights = np.array([count for _, count in pairs], dtype=np.float64)
    accuracy = compute_accuracy(reference, predicted, classes, weights=weights)
    for row in accuracy.per_class[n_reference:]:
        row["in_reference"] = False
    return accuracy


def log_accuracy(accuracy: Accuracy, counts: PixelCounts, classes: ClassTable,
                 n_reference: int, reporter: Reporter) -> None:
    if counts.nodata:
        reporter.warning(f"{counted(counts.nodata, 'reference pixel', thousands=True)} "
                         f"{'is' if counts.nodata == 1 else 'are'} nodata in the class map and "
                         f"{'was' if counts.nodata == 1 else 'were'} skipped")
    per_code = counts.codes()
    for entry in list(classes)[n_reference:]:
        pixels = per_code[entry.code]
        reporter.warning(f"the class map holds code {entry.code}, which is not a reference "
                         f"class, on {counted(pixels, 'reference pixel', thousands=True)}; "
                         + ("it counts as a wrong prediction" if pixels == 1
                            else "they count as wrong predictions"))
    kappa = "n/a" if accuracy.kappa is None else f"{accuracy.kappa:.4f}"
    reporter.info(f"accuracy of the class map on the reference polygons: OA "
                  f"{accuracy.overall_accuracy:.4f}, Kappa {kappa}, mean F1 "
                  f"{accuracy.mean_f1:.4f} on "
                  f"{counted(accuracy.n_pixels, 'pixel', thousands=True)}")
    for row in accuracy.per_class[:n_reference]:
        reporter.info(f"  {row['name']}: F1 {row['f1']:.3f} (precision {row['precision']:.3f}, "
                      f"recall {row['recall']:.3f}, {row['support']} px)")


def report_details(info: RasterInfo, spec: ReferenceSpec, source: str, reference: Reference,
                   counts: PixelCounts, classes: ClassTable, n_reference: int) -> dict[str, str]:
    """What was compared, for the report; `source` names the polygons as the user knows them."""
    per_code = counts.codes()
    unknown = ", ".join(f"{entry.code} ({per_code[entry.code]:,} px)"
                        for entry in list(classes)[n_reference:])
    fields = ", ".join(f"{role} {name}" for role, name in (
        ("class", spec.class_field), ("name", spec.name_field)) if name)
    return {
        "class map": str(info.path),
        "class map grid": info.grid.describe(),
        "reference polygons": f"{source}; fields: {fields}",
        "reference features": f"{reference.n_features:,}",
        "reference pixels": f"{len(reference.pixels):,}",
        "pixels compared": f"{counts.compared:,}",
        "pixels skipped (nodata in the class map)": f"{counts.nodata:,}",
        "map codes not in the reference (counted as wrong)": unknown or "none",
        "confusion matrix": "rows = reference, columns = prediction",
    }


def evaluate(job: Job, reporter: Reporter) -> dict:
    """Compare a class map with reference polygons; write the HTML report and CSV matrix."""
    report, matrix = evaluation_outputs(job)
    info = class_map_info(job)
    spec = ReferenceSpec.from_json(job.section("reference"))
    reporter.info(f"class map {info.path.name}: {info.grid.describe()}")
    legend = map_legend(info.path)
    with job.workdir() as scratch:
        reference = burn_reference(spec, info.grid, Path(scratch), reporter, legend[0])
        reporter.info(_reference_summary(reference, spec))
        check_codes_against_map(reference.classes, spec, legend[0], reporter)
        counts = count_pixels(info.path, reference, info.grid, reporter.span(0.1, 0.9))
    if not counts.compared:
        raise LcfusionError(
            f"the class map holds no class code on any of the {len(reference.pixels):,} pixels "
            "of the reference polygons (all nodata); check that the map covers the polygons",
            "INPUT")
    n_reference = len(reference.classes)
    classes = comparison_classes(reference.classes, spec, counts.codes(), legend)
    accuracy = pixel_accuracy(counts, classes, n_reference)
    log_accuracy(accuracy, counts, classes, n_reference, reporter)
    source = job.section("reference").get("source") or (
        f"{spec.path} (layer {spec.layer})" if spec.layer else spec.path)
    details = report_details(info, spec, source, reference, counts, classes, n_reference)
    write_evaluation_report(report, accuracy, f"Evaluation of {info.path.name}", details)
    write_confusion_csv(matrix, accuracy)
    reporter.progress(1.0, "done")
    reporter.info(f"report written to {report}, confusion matrix to {matrix}")
    return {"OUTPUT_HTML": str(report), "OUTPUT_CSV": str(matrix),
            "OA": accuracy.overall_accuracy, "KAPPA": accuracy.kappa,
            "MEAN_F1": accuracy.mean_f1, "N_PIXELS": accuracy.n_pixels}
