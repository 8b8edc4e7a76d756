"""The sample-design and area-accuracy commands: good-practice area estimates of a class map.

``sample-design`` draws a stratified random sample of pixel centres, strata = map classes,
sized for a target standard error of overall accuracy (Olofsson et al. 2014, eq. 13).
``area-accuracy`` takes the labelled points back and writes the error matrix in estimated
area proportions, the accuracies and the area of each class with 95 % confidence intervals
(`areas`). The class map is read strip by strip: memory does not grow with the raster.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.windows import Window

from ..errors import LcfusionError
from ..io.outputs import check_writable
from ..io.rasters import RasterInfo, crs_name, iter_windows
from ..jobs import Job
from ..progress import Reporter
from ..wording import counted
from .areas import Z95, AreaEstimates, allocate, sample_size, stratified_estimates
from .classmaps import class_map_info, map_legend
from .html import Html, esc, key_values, page, paragraph, section, table, write_text

#: Pixels read at once: the class map is read in strips of full rows, so that the ranks of a
#: class's pixels, and so a seeded sample, do not depend on how many rows a strip holds.
STRIP_PIXELS = 1 << 20
SQUARE_METRES_PER_HECTARE = 10_000.0
MATRIX_AXES = "rows = map, columns = reference (estimated area proportions)"
METHOD = ("Stratified estimators of Olofsson et al., Good practices for estimating area and "
          "assessing accuracy of land change, Remote Sensing of Environment 148:42-57, 2014 "
          f"(strata = map classes); 95 % confidence intervals are ± {Z95:g} standard errors.")


@dataclass
class Census:
    """Pixels per map code (nodata excluded), the area of one pixel in m², nodata pixels."""

    pixels: dict[int, int] = field(default_factory=dict)
    pixel_area: float = 0.0
    nodata: int = 0

    @property
    def codes(self) -> list[int]:
        return sorted(self.pixels)

    def area_ha(self, code: int) -> float:
        return self.pixels.get(code, 0) * self.pixel_area / SQUARE_METRES_PER_HECTARE


def pixel_area_m2(info: RasterInfo) -> float:
    """The ground area of one pixel in m²: the class map must be in a projected CRS."""
    crs = CRS.from_wkt(info.grid.crs_wkt)
    if crs.is_geographic:
        raise LcfusionError(f"the class map {info.path.name} is in a geographic CRS "
                            f"({crs_name(info.grid.crs_wkt)}, degrees): areas need a projected "
                            "CRS in metres; warp the map to one (Raster > Projections > Warp) "
                            "and try again", "INPUT")
    _, factor = crs.linear_units_factor
    transform = info.grid.transform
    return abs(transform[1] * transform[5] - transform[2] * transform[4]) * factor ** 2


def code_counts(block: np.ndarray) -> tuple[list[int], list[int]]:
    """The codes present in a block and their pixel counts (bincount for 8- and 16-bit
    unsigned codes, several times faster than unique)."""
    if block.dtype in (np.uint8, np.uint16):
        counts = np.bincount(block.ravel())
        codes = np.flatnonzero(counts)
        return codes.tolist(), counts[codes].tolist()
    codes, counts = np.unique(block, return_counts=True)
    return codes.tolist(), counts.tolist()


def strips(info: RasterInfo, pixels: int) -> list[Window]:
    """Windows of full rows, about `pixels` each (at least one row)."""
    width = info.grid.width
    return list(iter_windows(width, info.grid.height, max(1, pixels // width), width))


def count_classes(info: RasterInfo, reporter: Reporter, pixels: int = STRIP_PIXELS) -> Census:
    """Pixels per class code of the class map, strip by strip (nodata excluded)."""
    census = Census(pixel_area=pixel_area_m2(info))
    windows = strips(info, pixels)
    with rasterio.open(info.path) as source:
        nodata = source.nodata
        for done, part in enumerate(windows, start=1):
            for code, count in zip(*code_counts(source.read(1, window=part)), strict=True):
                if nodata is not None and code == nodata:
                    census.nodata += count
                else:
                    census.pixels[int(code)] = census.pixels.get(int(code), 0) + count
            reporter.progress(done / len(windows), "counting the classes")
    if not census.pixels:
        raise LcfusionError(f"the class map {info.path.name} holds only nodata; choose a map "
                            "with classified pixels", "INPUT")
    return census


def draw_points(info: RasterInfo, census: Census, sizes: dict[int, int], seed: int,
                reporter: Reporter, pixels: int = STRIP_PIXELS) -> list[tuple[float, float, int]]:
    """`sizes[code]` distinct pixels of each class, uniformly at random (seeded), as the map
    coordinates of their centres with their code: the picks are ranks among the class's
    pixels in row-major order, found in a second pass over the strips."""
    rng = np.random.default_rng(seed)
    picks = {code: np.sort(rng.choice(census.pixels[code], size=count, replace=False))
             for code, count in sorted(sizes.items()) if count > 0}
    seen = dict.fromkeys(picks, 0)
    transform = rasterio.Affine.from_gdal(*info.grid.transform)
    points: list[tuple[float, float, int]] = []
    windows = strips(info, pixels)
    with rasterio.open(info.path) as source:
        for done, part in enumerate(windows, start=1):
            block = source.read(1, window=part)
            for code, count in zip(*code_counts(block), strict=True):
                if code not in picks:
                    continue
                chosen = picks[code]
                low, high = np.searchsorted(chosen, [seen[code], seen[code] + count])
                if high > low:
                    flat = np.flatnonzero(block.ravel() == code)[chosen[low:high] - seen[code]]
                    rows, cols = np.divmod(flat, block.shape[1])
                    xs, ys = transform * (cols + part.col_off + 0.5, rows + part.row_off + 0.5)
                    points.extend((float(x), float(y), int(code))
                                  for x, y in zip(np.atleast_1d(xs), np.atleast_1d(ys),
                                                  strict=True))
                seen[code] += count
            reporter.progress(done / len(windows), "drawing the sample")
    return points


def expected_accuracies(settings: dict, codes: list[int]) -> dict[int, float]:
    """The expected user's accuracy of each class: the per-class values given as
    ``{code: accuracy}`` (or text "code: accuracy, ..."), the default for the others."""
    default = float(settings.get("users_accuracy", 0.9))
    if not 0 < default < 1:
        raise LcfusionError(f"the expected user's accuracy must lie between 0 and 1 (not "
                            f"{default:g}); 0.9 is a common choice", "USERS_ACCURACY")
    given = settings.get("users_accuracies") or {}
    if isinstance(given, str):
        given = parse_accuracies(given)
    accuracies = {code: default for code in codes}
    for code, value in given.items():
        code = int(code)
        if code not in accuracies:
            raise LcfusionError(f"class {code} has an expected user's accuracy but is not in "
                                f"the class map (its classes: {', '.join(map(str, codes))})",
                                "USERS_ACCURACIES")
        if not 0 < float(value) < 1:
            raise LcfusionError(f"the expected user's accuracy of class {code} must lie "
                                f"between 0 and 1, not {value}", "USERS_ACCURACIES")
        accuracies[code] = float(value)
    return accuracies


def parse_accuracies(text: str) -> dict[int, float]:
    """"1: 0.7, 2: 0.6" -> {1: 0.7, 2: 0.6}."""
    result: dict[int, float] = {}
    for item in filter(None, (part.strip() for part in text.replace(";", ",").split(","))):
        code, colon, value = item.partition(":")
        try:
            if not colon:
                raise ValueError(item)
            result[int(code)] = float(value)
        except ValueError as exc:
            raise LcfusionError(f"cannot read {item!r}: write the expected user's accuracies "
                                "as code: accuracy pairs separated by commas, as "
                                "'1: 0.7, 2: 0.6'", "USERS_ACCURACIES") from exc
    return result


def sample_design(job: Job, reporter: Reporter) -> dict:
    """Size, allocate and draw a stratified random sample of the class map's pixels."""
    settings = job.section("settings")
    info = class_map_info(job)
    target_se = float(settings.get("target_se", 0.01))
    if not 0 < target_se < 0.5:
        raise LcfusionError(f"the target standard error of overall accuracy must lie between "
                            f"0 and 0.5 (not {target_se:g}); 0.01 is usual", "TARGET_SE")
    minimum = int(settings.get("minimum", 50))
    if minimum < 2:
        raise LcfusionError(f"at least 2 points per class are needed for a variance (not "
                            f"{minimum})", "MINIMUM")
    total = int(settings.get("total") or 0)
    if total < 0:
        raise LcfusionError(f"the total sample size cannot be negative ({total}); give 0 to "
                            "compute it from the target standard error", "TOTAL")
    reporter.info(f"class map {info.path.name}: {info.grid.describe()}")
    census = count_classes(info, reporter.span(0.0, 0.45))
    codes = census.codes
    accuracies = expected_accuracies(settings, codes)
    areas = np.array([census.pixels[c] for c in codes], dtype=np.float64)
    target = sample_size(areas, np.array([accuracies[c] for c in codes]), target_se)
    total = total or target
    sizes = dict(zip(codes, allocate(total, areas, minimum,
                                     available=areas.astype(np.int64)).tolist(), strict=True))
    names = map_legend(info.path)[0]
    reporter.info(f"sample size for a standard error of {target_se:g} on overall accuracy: "
                  f"{target} points (Olofsson et al. 2014, eq. 13); {sum(sizes.values())} "
                  f"allocated, at least {minimum} per class, the rest in proportion to area")
    for code in codes:
        reporter.info(f"  class {code} {names.get(code, '')}".rstrip() + ": "
                      f"{census.area_ha(code):,.2f} ha, expected user's accuracy "
                      f"{accuracies[code]:g}, {counted(sizes[code], 'point')}")
        if sizes[code] < minimum:
            reporter.warning(f"class {code} has only {counted(sizes[code], 'pixel')}: all are "
                             "in the sample")
    points = draw_points(info, census, sizes, int(settings.get("seed", 0)),
                         reporter.span(0.45, 1.0))
    reporter.progress(1.0, "done")
    return {"POINTS": [[x, y, code] for x, y, code in points], "N_POINTS": len(points),
            "N_TARGET": target,
            "CLASSES": [{"code": c, "name": names.get(c, f"class {c}"),
                         "pixels": census.pixels[c], "area_ha": census.area_ha(c),
                         "users_accuracy": accuracies[c], "points": sizes[c]} for c in codes]}


@dataclass
class Sample:
    """The labelled points on the map: (map code, reference code) pairs, and those left out."""

    pairs: list[tuple[int, int]] = field(default_factory=list)
    unlabelled: int = 0
    outside: int = 0
    nodata: int = 0
    moved: int = 0


def read_sample(info: RasterInfo, points: list, reporter: Reporter) -> Sample:
    """The map code under each labelled point (map CRS), skipping unlabelled points and
    points off the map or on nodata; a point is [x, y, reference or None] with, optionally,
    the stratum it was drawn in, which should be the map's code under it."""
    sample = Sample()
    transform = ~rasterio.Affine.from_gdal(*info.grid.transform)
    with rasterio.open(info.path) as source:
        nodata = source.nodata
        for done, (x, y, reference, *drawn_in) in enumerate(points, start=1):
            if reference is None:
                sample.unlabelled += 1
                continue
            col, row = (math.floor(v) for v in transform * (x, y))
            if not (0 <= row < info.grid.height and 0 <= col < info.grid.width):
                sample.outside += 1
                continue
            code = int(source.read(1, window=Window(col, row, 1, 1))[0, 0])
            if nodata is not None and code == nodata:
                sample.nodata += 1
                continue
            sample.pairs.append((code, int(reference)))
            stratum = drawn_in[0] if drawn_in else None
            sample.moved += stratum is not None and stratum != code
            if done % 200 == 0:
                reporter.progress(done / len(points), "reading the map under the points")
    for count, what in ((sample.unlabelled, "without a reference class (empty field)"),
                        (sample.outside, "outside the class map"),
                        (sample.nodata, "on nodata pixels of the class map")):
        if count:
            reporter.warning(f"{counted(count, 'point')} {'is' if count == 1 else 'are'} "
                             f"{what} and {'was' if count == 1 else 'were'} left out")
    if sample.moved:
        one = sample.moved == 1
        reporter.warning(f"{counted(sample.moved, 'point')} {'was' if one else 'were'} drawn "
                         f"in another stratum than the map's class under "
                         f"{'it' if one else 'them'}: is this the class map the sample was "
                         "drawn from? The estimates take the strata of this map")
    return sample


def sample_matrix(sample: Sample, census: Census, names: dict[int, str]
                  ) -> tuple[list[int], np.ndarray]:
    """The classes (map classes, then reference-only codes) and the counts n_ij; a map class
    with fewer than 2 labelled points is refused, naming it."""
    codes = census.codes + sorted({r for _, r in sample.pairs} - set(census.pixels))
    index = {code: i for i, code in enumerate(codes)}
    counts = np.zeros((len(codes), len(codes)), dtype=np.int64)
    for mapped, reference in sample.pairs:
        counts[index[mapped], index[reference]] += 1
    for code in census.codes:
        n = int(counts[index[code]].sum())
        if n < 2:
            label = f"{code} {names[code]}" if names.get(code) else str(code)
            raise LcfusionError(
                f"class {label} covers {census.area_ha(code):,.2f} ha of the map but has "
                f"{counted(n, 'labelled point')}; every mapped class needs at least 2 (50 or "
                "more for useful intervals): label more points of it, or draw the sample with "
                "Sample design for area estimation", "POINTS")
    return codes, counts


def area_accuracy(job: Job, reporter: Reporter) -> dict:
    """Estimate the class areas and accuracies from the labelled sample; write the report."""
    report, table_csv, matrix_csv = area_outputs(job)
    info = class_map_info(job)
    points = job.section("inputs").get("points") or []
    if not points:
        raise LcfusionError("the point layer has no points; give the sample points with their "
                            "reference class", "POINTS")
    reporter.info(f"class map {info.path.name}: {info.grid.describe()}")
    census = count_classes(info, reporter.span(0.0, 0.7))
    sample = read_sample(info, points, reporter.span(0.7, 0.9))
    names = map_legend(info.path)[0]
    codes, counts = sample_matrix(sample, census, names)
    mapped = np.array([census.area_ha(c) for c in codes])
    estimates = stratified_estimates(counts, mapped)
    labels = [f"{c} {names[c]}" if names.get(c) else f"class {c}" for c in codes]
    log_estimates(estimates, labels, counts, reporter)
    details = {"class map": str(info.path), "class map grid": info.grid.describe(),
               "pixel area": f"{census.pixel_area:,.4g} m²",
               "classified area (nodata excluded)": f"{mapped.sum():,.2f} ha",
               "nodata pixels": f"{census.nodata:,}",
               "points used": f"{len(sample.pairs):,}",
               "points left out": (f"{sample.unlabelled:,} unlabelled, {sample.outside:,} "
                                   f"outside the map, {sample.nodata:,} on nodata"),
               "error matrix": MATRIX_AXES, "method": METHOD}
    write_text(report, area_report_html(estimates, labels, counts,
                                        f"Area and accuracy of {info.path.name}", details),
               "OUTPUT_HTML")
    write_text(table_csv, estimates_csv(estimates, codes, labels, counts), "OUTPUT_CSV")
    write_text(matrix_csv, matrix_csv_text(estimates, labels), "OUTPUT_MATRIX")
    reporter.progress(1.0, "done")
    reporter.info(f"report written to {report}, estimates to {table_csv}, error matrix to "
                  f"{matrix_csv}")
    return {"OUTPUT_HTML": str(report), "OUTPUT_CSV": str(table_csv),
            "OUTPUT_MATRIX": str(matrix_csv), "OA": estimates.overall,
            "OA_CI95": estimates.overall_ci, "N_POINTS": len(sample.pairs),
            "TOTAL_AREA_HA": float(mapped.sum()),
            "CLASSES": [class_row(estimates, i, c, labels[i], counts)
                        for i, c in enumerate(codes)]}


def area_outputs(job: Job) -> tuple[Path, Path, Path]:
    """The report, estimates CSV and matrix CSV, checked before any work starts."""
    outputs = job.section("outputs")
    paths = []
    for key, parameter in (("report", "OUTPUT_HTML"), ("table", "OUTPUT_CSV"),
                           ("matrix", "OUTPUT_MATRIX")):
        path = job.resolve(outputs.get(key))
        if path is None:
            raise LcfusionError(f"no {key} file given", parameter)
        check_writable(path, parameter)
        paths.append(path)
    if len({p.resolve() for p in paths}) != len(paths):
        raise LcfusionError("the report and the two CSV files must be different files",
                            "OUTPUT_CSV")
    return paths[0], paths[1], paths[2]


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def class_row(e: AreaEstimates, i: int, code: int, label: str, counts: np.ndarray) -> dict:
    """One class's figures, as the CSV and the engine's outputs give them (areas in ha)."""
    return {"code": code, "class": label, "mapped_area_ha": float(e.mapped_areas[i]),
            "sample_points": int(counts[i].sum()),
            "estimated_area_ha": float(e.areas[i]),
            "area_ci95_ha": float(Z95 * e.areas_se[i]), "area_se_ha": float(e.areas_se[i]),
            "users_accuracy": _finite(e.users[i]), "users_ci95": _finite(e.users_ci[i]),
            "producers_accuracy": _finite(e.producers[i]),
            "producers_ci95": _finite(e.producers_ci[i])}


def _csv(rows: list[list]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def estimates_csv(e: AreaEstimates, codes: list[int], labels: list[str],
                  counts: np.ndarray) -> str:
    rows = [class_row(e, i, c, labels[i], counts) for i, c in enumerate(codes)]
    return _csv([list(rows[0])] + [["" if v is None else v for v in row.values()]
                                   for row in rows])


def matrix_csv_text(e: AreaEstimates, labels: list[str]) -> str:
    p = e.proportions
    rows = [[MATRIX_AXES, *labels, "total"]]
    rows += [[label, *p[i].tolist(), float(p[i].sum())] for i, label in enumerate(labels)]
    rows.append(["total", *p.sum(axis=0).tolist(), float(p.sum())])
    return _csv(rows)


def log_estimates(e: AreaEstimates, labels: list[str], counts: np.ndarray,
                  reporter: Reporter) -> None:
    reporter.info(f"overall accuracy {e.overall:.4f} ± {e.overall_ci:.4f} (95 % CI) on "
                  f"{counted(int(counts.sum()), 'point')}")
    for i, label in enumerate(labels):
        reporter.info(f"  {label}: {e.areas[i]:,.2f} ± {Z95 * e.areas_se[i]:,.2f} ha "
                      f"(mapped {e.mapped_areas[i]:,.2f} ha), user's accuracy "
                      f"{_text(e.users[i], e.users_ci[i])}, producer's accuracy "
                      f"{_text(e.producers[i], e.producers_ci[i])}")


def _text(value: float, ci: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f} ± {ci:.3f}"


def area_report_html(e: AreaEstimates, labels: list[str], counts: np.ndarray, title: str,
                     details: dict[str, str]) -> str:
    """The report: headline, areas, accuracies, the error matrix in area proportions."""
    areas = table(("class", "mapped area (ha)", "estimated area (ha)", "± 95 % CI (ha)",
                   "user's accuracy", "± 95 % CI", "producer's accuracy", "± 95 % CI",
                   "sample points"),
                  ([label, float(e.mapped_areas[i]), float(e.areas[i]),
                    float(Z95 * e.areas_se[i]), float(e.users[i]), float(e.users_ci[i]),
                    float(e.producers[i]), float(e.producers_ci[i]), int(counts[i].sum())]
                   for i, label in enumerate(labels)),
                  total=["total", float(e.mapped_areas.sum()), float(e.areas.sum()), "", "",
                         "", "", "", int(counts.sum())])
    p = e.proportions
    matrix = table(("map \\ reference", *labels, "total"),
                   ([label, *map(float, p[i]), float(p[i].sum())]
                    for i, label in enumerate(labels)),
                   total=["total", *map(float, p.sum(axis=0)), float(p.sum())])
    headline = key_values({"overall accuracy": f"{e.overall:.4f} ± {e.overall_ci:.4f}",
                           "sample points": f"{int(counts.sum()):,}",
                           "classified area": f"{e.mapped_areas.sum():,.2f} ha"})
    parts = [Html(f"<h1>{esc(title)}</h1>"),
             section("Overall accuracy (95 % confidence interval)", headline),
             section("Areas and accuracies per class", areas, paragraph(
                 "Estimated areas come from the reference labels of the sample, weighted by "
                 "the mapped area of each stratum; the mapped area is the pixel count of the "
                 "map, biased by its errors.", note=True)),
             section("Error matrix in estimated area proportions", matrix,
                     paragraph(MATRIX_AXES, note=True)),
             section("Details", key_values(details))]
    return page(title, parts)
