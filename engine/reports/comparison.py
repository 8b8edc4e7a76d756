"""The compare-maps command: which of two class maps of one grid is better on one reference.

The reference (polygons burned by the pixel-centre rule, or sample points, each labelling the
pixel it falls in) is burned on map A's grid, which map B must share. The maps, the burned
reference and the optional disagreement raster are read and written window by window. Only the
reference pixels that both maps classify are compared, so both accuracies and McNemar's test
are on the same pixels; map codes that are not reference classes count as wrong.

The disagreement raster (uint8) covers the whole map: on the compared reference pixels
0 both right, 1 only A right, 2 only B right, 3 both wrong; elsewhere 4 where the maps give
different classes; 255 (nodata) where they agree, outside the reference, or where either map
is nodata.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio

from ..errors import LcfusionError
from ..io.outputs import RasterOutput, atomic_output, check_writable, checked_raster_writes
from ..io.rasters import Grid, RasterInfo, iter_windows, write_profile
from ..jobs import Job
from ..progress import Reporter
from ..reference.classes import ClassTable, LandCoverClass
from ..reference.polygons import Reference, ReferenceSpec
from ..wording import counted
from .classmaps import class_map_info, map_legend
from .evaluation import PixelCounts, burn_reference, comparison_classes, pixel_accuracy
from .html import (
    Html,
    esc,
    key_values,
    metric_boxes,
    page,
    paragraph,
    section,
    swatch,
    table,
)
from .mcnemar import EXACT_BELOW, McNemarTest, mcnemar_counts
from .metrics import Accuracy

#: Side of the windows the maps, the burned reference and the disagreement raster are read in.
WINDOW = 1024
#: The significance level of the report's verdict.
ALPHA = 0.05
BOTH_RIGHT, ONLY_A, ONLY_B, BOTH_WRONG, MAPS_DIFFER = range(5)
DISAGREEMENT_NODATA = 255
#: The disagreement raster's legend: code, name, colour.
DISAGREEMENT_LEGEND = (
    (BOTH_RIGHT, "both right", "#bdbdbd"),
    (ONLY_A, "only map A right", "#2166ac"),
    (ONLY_B, "only map B right", "#e66101"),
    (BOTH_WRONG, "both wrong", "#b2182b"),
    (MAPS_DIFFER, "maps differ (no reference)", "#fee08b"),
)


def disagreement_classes() -> ClassTable:
    """The disagreement raster's legend as a class table (for its colour table and style)."""
    return ClassTable(tuple(LandCoverClass(index, code, name, color)
                            for index, (code, name, color) in enumerate(DISAGREEMENT_LEGEND)))


@dataclass
class Tally:
    """What the pass over the maps counts: each map's (reference class, code) pixels, the
    four outcomes on the compared pixels, the reference pixels a map leaves out (nodata), and
    over the whole grid the pixels both maps classify and those where they differ."""

    a: PixelCounts = field(default_factory=PixelCounts)
    b: PixelCounts = field(default_factory=PixelCounts)
    outcomes: np.ndarray = field(default_factory=lambda: np.zeros(4, dtype=np.int64))
    nodata_a: int = 0
    nodata_b: int = 0
    classified: int = 0
    differ: int = 0

    @property
    def compared(self) -> int:
        return int(self.outcomes.sum())


def comparison_outputs(job: Job) -> tuple[Path, Path | None]:
    """The HTML report and the optional disagreement raster, checked before any work."""
    outputs = job.section("outputs")
    report = job.resolve(outputs.get("report"))
    raster = job.resolve(outputs.get("disagreement"))
    if report is None:
        raise LcfusionError("no output report file given", "OUTPUT_HTML")
    check_writable(report, "OUTPUT_HTML")
    if raster is not None:
        check_writable(raster, "OUTPUT_DISAGREEMENT")
        if raster.resolve() == report.resolve():
            raise LcfusionError("the report and the disagreement raster must be different "
                                "files", "OUTPUT_DISAGREEMENT")
    return report, raster


def check_same_grid(map_a: RasterInfo, map_b: RasterInfo) -> None:
    """Map B must lie on map A's grid (CRS, origin, pixel size and size); else an error naming
    MAP_B with the gdalwarp call that puts it there."""
    if map_a.grid.same_as(map_b.grid):
        return
    grid = map_a.grid
    west, south, east, north = grid.bounds
    crs = rasterio.crs.CRS.from_wkt(grid.crs_wkt)
    srs = f"EPSG:{crs.to_epsg()}" if crs.to_epsg() else "<MAP_A's CRS>"
    raise LcfusionError(
        f"the class map {map_b.path.name} is not on the grid of MAP_A {map_a.path.name}: "
        f"MAP_A is {grid.describe()}, MAP_B is {map_b.grid.describe()}. Warp MAP_B to MAP_A's "
        f"grid with nearest-neighbour resampling, e.g. gdalwarp -t_srs {srs} "
        f"-te {west:.10g} {south:.10g} {east:.10g} {north:.10g} "
        f"-tr {grid.pixel_width:.10g} {grid.pixel_height:.10g} -r near "
        f"{map_b.path.name} {map_b.path.stem}_on_A.tif (or Raster > Projections > Warp with "
        "MAP_A's extent and resolution)", "MAP_B")


def nodata_mask(codes: np.ndarray, nodata: float | None) -> np.ndarray:
    """Where `codes` holds a class (not the map's nodata value)."""
    return np.ones(codes.shape, dtype=bool) if nodata is None else codes != nodata


def compare_window(tally: Tally, objects: np.ndarray, codes_a: np.ndarray,
                   codes_b: np.ndarray, valid_a: np.ndarray, valid_b: np.ndarray,
                   reference: Reference, class_codes: np.ndarray) -> np.ndarray:
    """Count one window into `tally`; returns its disagreement block."""
    both = valid_a & valid_b
    differ = both & (codes_a != codes_b)
    labelled = objects > 0
    compared = labelled & both
    tally.nodata_a += int(np.count_nonzero(labelled & ~valid_a))
    tally.nodata_b += int(np.count_nonzero(labelled & ~valid_b))
    tally.classified += int(np.count_nonzero(both))
    tally.differ += int(np.count_nonzero(differ))
    classes = reference.object_class[objects[compared]]
    a, b = codes_a[compared], codes_b[compared]
    tally.a.add(classes, a)
    tally.b.add(classes, b)
    truth = class_codes[classes]
    right_a, right_b = a == truth, b == truth
    outcome = np.where(right_a, np.where(right_b, BOTH_RIGHT, ONLY_A),
                       np.where(right_b, ONLY_B, BOTH_WRONG))
    tally.outcomes += np.bincount(outcome, minlength=4)[:4]
    block = np.full(objects.shape, DISAGREEMENT_NODATA, dtype=np.uint8)
    block[differ] = MAPS_DIFFER
    block[compared] = outcome
    return block


def compare_pixels(map_a: RasterInfo, map_b: RasterInfo, reference: Reference,
                   out: rasterio.io.DatasetWriter | None, reporter: Reporter) -> Tally:
    """One pass over both maps and the burned reference, writing the disagreement raster to
    `out` when it is asked for."""
    grid = map_a.grid
    tally = Tally()
    class_codes = np.array(reference.classes.codes, dtype=np.int64)
    windows = list(iter_windows(grid.width, grid.height, WINDOW))
    with rasterio.open(map_a.path) as source_a, rasterio.open(map_b.path) as source_b, \
            rasterio.open(reference.objects_path) as objects_source:
        for done, window in enumerate(windows, start=1):
            codes_a = source_a.read(1, window=window)
            codes_b = source_b.read(1, window=window)
            block = compare_window(tally, objects_source.read(1, window=window), codes_a,
                                   codes_b, nodata_mask(codes_a, source_a.nodata),
                                   nodata_mask(codes_b, source_b.nodata), reference,
                                   class_codes)
            if out is not None:
                out.write(block, 1, window=window)
            reporter.progress(done / len(windows), "comparing")
    return tally


def open_disagreement(stack: contextlib.ExitStack, target: Path, grid: Grid):
    """The disagreement raster, open for writing under a temporary name that replaces
    `target` once the whole raster is written and checked."""
    temporary = stack.enter_context(atomic_output(target, "OUTPUT_DISAGREEMENT"))
    stack.enter_context(checked_raster_writes(
        RasterOutput(temporary, target, "OUTPUT_DISAGREEMENT", (1, grid.height, grid.width))))
    out = stack.enter_context(rasterio.open(
        temporary, "w", **write_profile(grid, 1, "uint8", DISAGREEMENT_NODATA)))
    classes = disagreement_classes()
    out.write_colormap(1, {c.code: (*c.rgb(), 255) for c in classes})
    out.update_tags(LCFUSION_CLASSES=json.dumps(classes.to_json()))
    out.set_band_description(1, "disagreement of map A and map B")
    return out


def log_comparison(names: tuple[str, str], test: McNemarTest, accuracies: tuple[Accuracy, ...],
                   tally: Tally, reporter: Reporter) -> None:
    for name, skipped in zip(names, (tally.nodata_a, tally.nodata_b), strict=True):
        if skipped:
            reporter.warning(f"{counted(skipped, 'reference pixel', thousands=True)} "
                             f"{'is' if skipped == 1 else 'are'} nodata in {name} and left "
                             "out of the comparison")
    for name, accuracy in zip(names, accuracies, strict=True):
        reporter.info(f"{name}: OA {accuracy.overall_accuracy:.4f}, mean F1 "
                      f"{accuracy.mean_f1:.4f}")
    reporter.info(f"McNemar: right only by A {test.only_a:,}, only by B {test.only_b:,}, "
                  f"chi-square {test.chi_square:.4f}, p {test.p_value:.4g} ({test.method}) on "
                  f"{counted(tally.compared, 'pixel', thousands=True)} compared")


def verdict(test: McNemarTest) -> str:
    """Which map is more accurate at `ALPHA`, in one sentence."""
    if test.p_value >= ALPHA:
        return (f"No significant difference between the maps' accuracies (p = "
                f"{test.p_value:.4g} ≥ {ALPHA}).")
    better, worse = ("A", "B") if test.only_a > test.only_b else ("B", "A")
    return (f"Map {better} is significantly more accurate than map {worse} (p = "
            f"{test.p_value:.4g} < {ALPHA}).")


def outcome_table(tally: Tally) -> Html:
    """The 2 x 2 table of the compared pixels: A right or wrong by B right or wrong."""
    both_right, only_a, only_b, both_wrong = (int(v) for v in tally.outcomes)
    return table(("", "B right", "B wrong", "total"),
                 [("A right", both_right, only_a, both_right + only_a),
                  ("A wrong", only_b, both_wrong, only_b + both_wrong)],
                 total=("total", both_right + only_b, only_a + both_wrong, tally.compared))


def f1_table(accuracies: tuple[Accuracy, Accuracy], n_reference: int) -> Html:
    """Per reference class: support and both maps' F1 (and their difference)."""
    rows = [(str(a["code"]), a["name"], a["support"], a["f1"], b["f1"], b["f1"] - a["f1"])
            for a, b in zip(accuracies[0].per_class[:n_reference],
                            accuracies[1].per_class[:n_reference], strict=True)]
    first, second = accuracies
    return table(("code", "class", "support (pixels)", "F1 map A", "F1 map B", "B − A"), rows,
                 total=("", "mean F1", first.n_pixels, first.mean_f1, second.mean_f1,
                        second.mean_f1 - first.mean_f1))


def legend_table() -> Html:
    return table(("value", "meaning"), [
        *((str(code), Html(swatch(color) + esc(name))) for code, name, color
          in DISAGREEMENT_LEGEND),
        (str(DISAGREEMENT_NODATA), "nodata: the maps agree outside the reference, or a map "
                                   "is nodata")])


def method_note(test: McNemarTest) -> str:
    return ("McNemar's test counts only the discordant pixels: b, right only by map A, and c, "
            "right only by map B. Chi-square = (|b − c| − 1)² / (b + c), continuity-corrected, "
            f"1 degree of freedom. Below {EXACT_BELOW} discordant pixels the p-value is the "
            "two-sided exact binomial test of b among b + c at ½; otherwise the chi-square's. "
            f"This run: {test.method}. Pixels of one polygon are not independent, so with "
            "polygons the p-value is optimistic; sample points spread over the map are the "
            "test's ideal.")


def area(pixels: int, grid: Grid) -> str:
    """The area of `pixels` pixels of `grid`, in hectares where the CRS is in metres."""
    crs = rasterio.crs.CRS.from_wkt(grid.crs_wkt)
    value = pixels * abs(grid.pixel_width * grid.pixel_height)
    if crs.is_projected and crs.linear_units in ("metre", "meter", "m"):
        return f"{value / 10_000:,.2f} ha"
    return f"{value:,.6g} square {crs.linear_units or 'map units'}"


def comparison_report_html(names: tuple[str, str], test: McNemarTest,
                           accuracies: tuple[Accuracy, Accuracy], tally: Tally,
                           n_reference: int, grid: Grid, disagreement_written: bool,
                           details: dict[str, str]) -> str:
    title = f"Comparison of {names[0]} (A) and {names[1]} (B)"
    share = tally.differ / tally.classified if tally.classified else 0.0
    parts = [
        Html(f"<h1>{esc(title)}</h1>"), paragraph(verdict(test)),
        metric_boxes([("OA map A", accuracies[0].overall_accuracy),
                      ("OA map B", accuracies[1].overall_accuracy),
                      ("McNemar chi-square", test.chi_square),
                      ("p-value", f"{test.p_value:.4g}"),
                      ("Pixels compared", tally.compared)]),
        section("McNemar's test", outcome_table(tally), paragraph(method_note(test), note=True)),
        section("Per class", paragraph(
            "F1 of each reference class on the compared pixels; a class one map never gives "
            "has F1 0 there. Mean F1 averages the classes present in the reference."),
            f1_table(accuracies, n_reference)),
        section("Where the maps disagree", key_values({
            "pixels both maps classify": f"{tally.classified:,}",
            "pixels where they differ": f"{tally.differ:,} ({share:.2%})",
            "area where they differ": area(tally.differ, grid)}),
            *((Html("<h3>Disagreement raster</h3>"), legend_table())
              if disagreement_written else ())),
        section("Details", key_values(details)),
    ]
    return page(title, parts)


def map_names(map_a: RasterInfo, map_b: RasterInfo) -> tuple[str, str]:
    """The maps' file names, or their paths where the names are the same."""
    if map_a.path.name != map_b.path.name:
        return map_a.path.name, map_b.path.name
    return str(map_a.path), str(map_b.path)


def compare_maps(job: Job, reporter: Reporter) -> dict:
    """Compare two class maps on one reference: McNemar's test, both accuracies and per-class
    F1 (HTML report), and the optional disagreement raster. Both outputs are written under
    temporary names and replace their targets only once the whole run has succeeded."""
    report, disagreement = comparison_outputs(job)
    map_a = class_map_info(job, "map_a", "MAP_A")
    map_b = class_map_info(job, "map_b", "MAP_B")
    check_same_grid(map_a, map_b)
    spec = ReferenceSpec.from_json(job.section("reference"))
    names = map_names(map_a, map_b)
    reporter.info(f"map A {names[0]}, map B {names[1]}: {map_a.grid.describe()}")
    legends = (map_legend(map_a.path), map_legend(map_b.path))
    legend = legends[0] if legends[0][0] else legends[1]
    with contextlib.ExitStack() as stack:
        report_temporary = stack.enter_context(atomic_output(report, "OUTPUT_HTML"))
        out = open_disagreement(stack, disagreement, map_a.grid) if disagreement else None
        with job.workdir() as scratch:
            reference = burn_reference(spec, map_a.grid, Path(scratch), reporter, legend[0])
            under = " (under the sample points)" if spec.points else ""
            reporter.info(f"{counted(len(reference.pixels), 'labelled pixel', thousands=True)}"
                          f"{under}, {counted(len(reference.classes), 'class')}")
            tally = compare_pixels(map_a, map_b, reference, out, reporter.span(0.1, 0.9))
        if not tally.compared:
            raise LcfusionError(
                f"no pixel of the reference has a class in both maps ({tally.nodata_a:,} of "
                f"{len(reference.pixels):,} are nodata in MAP_A, {tally.nodata_b:,} in MAP_B); "
                "check that both maps cover the reference", "REFERENCE")
        n_reference = len(reference.classes)
        classes = comparison_classes(reference.classes, spec,
                                     tally.a.codes() + tally.b.codes(), legend)
        accuracies = (pixel_accuracy(tally.a, classes, n_reference),
                      pixel_accuracy(tally.b, classes, n_reference))
        _, only_a, only_b, _ = (int(v) for v in tally.outcomes)
        test = mcnemar_counts(only_a, only_b)
        log_comparison(names, test, accuracies, tally, reporter)
        details = {
            "map A": str(map_a.path), "map B": str(map_b.path), "grid": map_a.grid.describe(),
            "reference": job.section("reference").get("source") or spec.path,
            "reference kind": "sample points (the pixel under each point)" if spec.points
            else "polygons (pixel-centre rule)",
            "reference pixels": f"{len(reference.pixels):,}",
            "left out: nodata in map A / in map B": f"{tally.nodata_a:,} / {tally.nodata_b:,}",
            "map codes not in the reference (counted as wrong)": ", ".join(
                str(entry.code) for entry in list(classes)[n_reference:]) or "none",
        }
        report_temporary.write_text(comparison_report_html(
            names, test, accuracies, tally, n_reference, map_a.grid, disagreement is not None,
            details),
            encoding="utf-8")
    reporter.progress(1.0, "done")
    reporter.info(f"report written to {report}"
                  + (f", disagreement raster to {disagreement}" if disagreement else ""))
    results = {"OUTPUT_HTML": str(report), "CHI_SQUARE": test.chi_square,
               "P_VALUE": test.p_value, "ONLY_A": test.only_a, "ONLY_B": test.only_b,
               "OA_A": accuracies[0].overall_accuracy, "OA_B": accuracies[1].overall_accuracy,
               "MEAN_F1_A": accuracies[0].mean_f1, "MEAN_F1_B": accuracies[1].mean_f1,
               "N_PIXELS": tally.compared, "METHOD": test.method}
    if disagreement is not None:
        results["OUTPUT_DISAGREEMENT"] = str(disagreement)
        results["DISAGREEMENT_CLASSES"] = disagreement_classes().to_json()
    return results
