"""A deterministic synthetic scene: reference polygons plus co-registered S2, S1, MS and PAN.

The scene is a grid of rectangular parcels with eight land-cover classes, built so that pairs
of classes can be told apart by one source only:

* winter crop vs summer crop: same endmembers, different phenology (S2 time series only);
  the single MS/PAN date is where both greenness curves cross, and S1 is shared.
* grassland vs wet meadow: identical optical data; the wet meadow is flooded in winter and
  early spring, which lowers its S1 backscatter on those dates only.
* built-up vs bare soil: identical means everywhere; built-up carries a PAN texture finer
  than one MS pixel with zero mean over every MS pixel.

With ``context=True`` four classes are added, in two *pixel twins*: each parcel of them is a
mosaic of two materials at the 10 m pixel scale, and the twins share both materials and their
shares, so a pixel's values (every S2 band and date, S1, MS and PAN) have the same
distribution in both; only the arrangement of the pixels tells them apart, in every source:

* orchard vs wooded pasture: fruit trees over a grass sward, one third trees; the orchard's
  trees stand in rows every 3 pixels (30 m) along the parcel, the pasture's in clumps.
* residential vs industrial: roofs and lawns, half roofs; the houses of the residential area
  are single pixels scattered among gardens, the industrial halls large blocks among lawns.

A per-pixel classifier (the pixel Random Forest) can do no better than guess within a twin pair,
so its overall accuracy is bounded by the *per-pixel ceiling* (`per_pixel_ceiling`): the share
of pixels it could classify if it were perfect on everything but the pairs a source cannot
separate per pixel (`PIXEL_TWINS`, which also holds the single-source pairs above). On all
labelled polygons of the default context scene (160 x 160, seed 7) it is 0.686 for S2, 0.780
for S1 + S2 and 0.698 for PAN + MS; ``make demo`` prints it for its test polygons. A model that
sees patches (FG-UNET, MRFusion, TWINNS) can pass it: the 3 x 3 local variance alone tells
the twins apart on about four pixels in five (the tests measure it).

Per-parcel variations are centred within each class (area weighted), so class means follow
the design exactly and only per-pixel noise blurs them. Pure numpy, rasterio and osgeo.ogr.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import rasterio
from osgeo import gdal, ogr, osr
from rasterio.crs import CRS
from rasterio.transform import Affine, from_origin

from .io.rasters import Grid, write_profile
from .reference.classes import ClassTable

gdal.UseExceptions()
ogr.UseExceptions()
osr.UseExceptions()

WATER, FOREST, WINTER_CROP, SUMMER_CROP, GRASSLAND, WET_MEADOW, BUILT_UP, BARE_SOIL = range(1, 9)
ORCHARD, WOODED_PASTURE, RESIDENTIAL, INDUSTRIAL = range(9, 13)

SAMPLE_CLASSES = ClassTable.build(
    range(1, 9),
    names={
        WATER: "water",
        FOREST: "forest",
        WINTER_CROP: "winter crop",
        SUMMER_CROP: "summer crop",
        GRASSLAND: "grassland",
        WET_MEADOW: "wet meadow",
        BUILT_UP: "built-up",
        BARE_SOIL: "bare soil",
    },
    colors={
        WATER: "#1f78b4",
        FOREST: "#1b5e20",
        WINTER_CROP: "#e3c565",
        SUMMER_CROP: "#ff8c00",
        GRASSLAND: "#a6d96a",
        WET_MEADOW: "#008080",
        BUILT_UP: "#e31a1c",
        BARE_SOIL: "#c8a77a",
    },
)

#: The classes of a context scene: the eight above and the two context twin pairs.
CONTEXT_CLASSES = ClassTable.build(
    range(1, 13),
    names={
        **{entry.code: entry.name for entry in SAMPLE_CLASSES},
        ORCHARD: "orchard",
        WOODED_PASTURE: "wooded pasture",
        RESIDENTIAL: "residential",
        INDUSTRIAL: "industrial",
    },
    colors={
        **{entry.code: entry.color for entry in SAMPLE_CLASSES},
        ORCHARD: "#9c27b0",
        WOODED_PASTURE: "#607d3b",
        RESIDENTIAL: "#f48fb1",
        INDUSTRIAL: "#5c5c5c",
    },
)

#: Per source, the class pairs whose pixels have the same distribution of that source's values:
#: a per-pixel classifier can only guess between them (pairs of absent classes do not matter).
PIXEL_TWINS: dict[str, tuple[tuple[int, int], ...]] = {
    "s2": ((GRASSLAND, WET_MEADOW), (BUILT_UP, BARE_SOIL), (ORCHARD, WOODED_PASTURE),
           (RESIDENTIAL, INDUSTRIAL)),
    "s1s2": ((BUILT_UP, BARE_SOIL), (ORCHARD, WOODED_PASTURE), (RESIDENTIAL, INDUSTRIAL)),
    "panms": ((WINTER_CROP, SUMMER_CROP), (GRASSLAND, WET_MEADOW), (ORCHARD, WOODED_PASTURE),
              (RESIDENTIAL, INDUSTRIAL)),
}
#: The context twin pairs: separable by the arrangement of their pixels only, in every source.
CONTEXT_TWINS = ((ORCHARD, WOODED_PASTURE), (RESIDENTIAL, INDUSTRIAL))

S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
S1_BANDS = ("VV", "VH")
MS_BANDS = ("Blue", "Green", "Red", "NIR")
#: Indices of the MS bands among the S2 bands, and the PAN weights of the MS bands.
MS_FROM_S2 = (0, 1, 2, 6)
PAN_WEIGHTS = (0.15, 0.30, 0.30, 0.25)
REFERENCE_LAYER = "reference"
#: Every class needs at least this many labelled parcels.
MIN_LABELLED_PARCELS = 5
#: Reflectance to uint16 digital numbers (S2, MS, PAN).
DN_SCALE = 10000.0

S2_START = date(2021, 1, 15)
S1_START = date(2021, 1, 7)

_PARCEL_MIN_SIDE = 8
_PARCEL_MAX_SIDE = 24
#: Empirical grid side that reliably holds 5 parcels per class of 8 with the parcel sizes above.
_MIN_GRID_SIDE_HINT = 96

# Endmember reflectances on the S2 bands.
_GREEN_VEG = np.array([0.030, 0.060, 0.030, 0.100, 0.300, 0.400, 0.450, 0.470, 0.220, 0.100])
_DRY_VEG = np.array([0.080, 0.110, 0.140, 0.170, 0.200, 0.220, 0.240, 0.250, 0.320, 0.250])
_SOIL = np.array([0.090, 0.120, 0.160, 0.190, 0.210, 0.230, 0.250, 0.260, 0.320, 0.280])
_WATER = np.array([0.060, 0.050, 0.030, 0.020, 0.015, 0.012, 0.010, 0.008, 0.005, 0.003])
_CONIFER = np.array([0.020, 0.045, 0.025, 0.080, 0.220, 0.300, 0.330, 0.340, 0.150, 0.070])
_PAVED = np.array([0.120, 0.140, 0.160, 0.175, 0.190, 0.200, 0.210, 0.215, 0.250, 0.230])
_ROOF = np.array([0.160, 0.170, 0.250, 0.270, 0.280, 0.290, 0.300, 0.300, 0.360, 0.300])

# The materials of the context classes' pixels (the other classes' pixels use their class's).
_FRUIT_TREE, _SWARD, _ROOFS, _LAWN = range(101, 105)
#: Context class -> (first material, its share of the parcel, second material).
_CONTEXT_MATERIALS = {
    ORCHARD: (_FRUIT_TREE, 1 / 3, _SWARD),
    WOODED_PASTURE: (_FRUIT_TREE, 1 / 3, _SWARD),
    RESIDENTIAL: (_ROOFS, 1 / 2, _LAWN),
    INDUSTRIAL: (_ROOFS, 1 / 2, _LAWN),
}
_ORCHARD_ROW_PERIOD = 3
#: Smoothing (pixels) of the random fields whose upper quantile places clumps and halls.
_CLUMP_SIGMA = 4.0
_HALL_SIGMA = 3.0

# Noise and variation levels (reflectance, days, dB).
_PARCEL_BRIGHTNESS_SD = 0.04
_PARCEL_SHIFT_SD_DAYS = 6.0
_PARCEL_S1_SD_DB = 0.7
_S2_RELATIVE_NOISE = 0.04
_S2_ABSOLUTE_NOISE = 0.003
_SCENE_RELATIVE_NOISE = 0.03
_SENSOR_NOISE = 0.003
_S1_LOOKS = 4.0
_URBAN_TEXTURE_AMPLITUDE = 0.06
_URBAN_PERIOD_PAN_PIXELS = (3.0, 6.0)
_CLOUD_COVER = (0.10, 0.30)
_CLOUD_REFLECTANCE = (0.30, 0.50)
_CLOUD_NOISE = 0.01
_STRIP_FRACTION = 0.10
_FLOOD_VV_DB = -6.0
_FLOOD_VH_DB = -3.0
_FLOOD_UNTIL_DOY = 100.0
_FLOOD_FROM_DOY = 320.0
#: Written as the GeoPackage's last-change time instead of "now", so the file is reproducible.
_GPKG_TIMESTAMP = "2021-01-01T00:00:00Z"


@dataclass(frozen=True)
class SampleSceneConfig:
    """Size, geometry and randomness of a sample scene (S2/S1/MS share one 10 m grid)."""

    width: int = 160
    height: int = 160
    n_s2_dates: int = 9
    n_s1_dates: int = 12
    pan_ratio: int = 4
    pixel_size: float = 10.0
    origin_x: float = 600000.0
    origin_y: float = 5600000.0
    epsg: int = 32631
    label_fraction: float = 0.5
    seed: int = 7
    #: Add the context twin pairs (orchard / wooded pasture, residential / industrial).
    context: bool = False

    @property
    def classes(self) -> ClassTable:
        """The legend of the scene."""
        return CONTEXT_CLASSES if self.context else SAMPLE_CLASSES


@dataclass(frozen=True)
class SampleScene:
    """Paths, dates and legend of a generated scene."""

    folder: Path
    s2_paths: tuple[Path, ...]  # date order
    s2_dates: tuple[str, ...]  # ISO yyyy-mm-dd
    s2_cloud_mask_path: Path  # one band per S2 date: 1 = cloud, 0 = clear
    s1_paths: tuple[Path, ...]  # date order
    s1_dates: tuple[str, ...]  # ISO yyyy-mm-dd, none shared with S2
    pan_path: Path
    ms_path: Path
    reference_path: Path  # GeoPackage
    reference_layer: str  # "reference"
    truth_path: Path  # class code of every pixel on the S2 grid
    classes: ClassTable
    pan_date: str  # ISO date of the PAN/MS acquisition, where both crops look alike


@dataclass(frozen=True)
class _Parcels:
    """Parcel rectangles (grid rows/columns), classes and centred per-parcel variations, and
    the parcels' units: the pixels of one material in one parcel (one unit per parcel, two
    in a context class's parcel)."""

    rows: np.ndarray
    cols: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    codes: np.ndarray
    brightness: np.ndarray
    shift_days: np.ndarray
    s1_offset_db: np.ndarray
    id_map: np.ndarray
    unit_parcel: np.ndarray
    unit_material: np.ndarray
    unit_map: np.ndarray


def generate_sample_scene(
    folder: Path, config: SampleSceneConfig = SampleSceneConfig()
) -> SampleScene:
    """Write the sample scene described by `config` into `folder` and describe it."""
    _validate(config)
    parcels = _make_parcels(config, _rng(config, 0), _rng(config, 5))
    labelled = _choose_labelled(parcels, config, _rng(config, 1))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    crs = CRS.from_epsg(config.epsg)
    transform = from_origin(config.origin_x, config.origin_y, config.pixel_size, config.pixel_size)

    s2_dates = _dates(S2_START, config.n_s2_dates)
    s2_paths = tuple(folder / f"s2_{d.isoformat()}.tif" for d in s2_dates)
    cloud_mask = _write_s2(parcels, s2_dates, s2_paths, crs, transform, _rng(config, 2))
    cloud_mask_path = folder / "s2_cloudmask.tif"
    _write_raster(
        cloud_mask_path, cloud_mask, crs, transform, None, [d.isoformat() for d in s2_dates]
    )

    s1_dates = _dates(S1_START, config.n_s1_dates, avoid=set(s2_dates))
    s1_paths = tuple(folder / f"s1_{d.isoformat()}.tif" for d in s1_dates)
    _write_s1(parcels, s1_dates, s1_paths, crs, transform, _rng(config, 3))

    pan_day = _crop_crossing_day()
    pan_date = (date(S2_START.year, 1, 1) + timedelta(days=round(pan_day) - 1)).isoformat()
    ms_path, pan_path = folder / "ms.tif", folder / "pan.tif"
    _write_ms_pan(
        parcels, pan_day, pan_date, ms_path, pan_path, config, crs, transform, _rng(config, 4)
    )

    truth_path = folder / "truth.tif"
    _write_raster(
        truth_path,
        parcels.codes[parcels.id_map][None].astype(np.uint8),
        crs,
        transform,
        0,
        ["class"],
        colormap={c.code: (*c.rgb(), 255) for c in config.classes},
    )
    reference_path = folder / "reference.gpkg"
    _write_reference(reference_path, parcels, labelled, config)
    return SampleScene(
        folder=folder,
        s2_paths=s2_paths,
        s2_dates=tuple(d.isoformat() for d in s2_dates),
        s2_cloud_mask_path=cloud_mask_path,
        s1_paths=s1_paths,
        s1_dates=tuple(d.isoformat() for d in s1_dates),
        pan_path=pan_path,
        ms_path=ms_path,
        reference_path=reference_path,
        reference_layer=REFERENCE_LAYER,
        truth_path=truth_path,
        classes=config.classes,
        pan_date=pan_date,
    )


def _validate(config: SampleSceneConfig) -> None:
    """Reject configurations that cannot carry the designed properties."""
    if config.width < 16 or config.height < 16:
        raise ValueError(
            f"sample scene width and height must be at least 16 pixels "
            f"(got {config.width}x{config.height})"
        )
    for name in ("n_s2_dates", "n_s1_dates"):
        value = getattr(config, name)
        if not 4 <= value <= 100:
            raise ValueError(f"{name} must be between 4 and 100 (got {value})")
    if config.pan_ratio < 2:
        raise ValueError(f"pan_ratio must be at least 2 (got {config.pan_ratio})")
    if not config.pixel_size > 0:
        raise ValueError(f"pixel_size must be positive (got {config.pixel_size})")
    if not 0 < config.label_fraction <= 1:
        raise ValueError(f"label_fraction must be in (0, 1] (got {config.label_fraction})")


def _rng(config: SampleSceneConfig, stream: int) -> np.random.Generator:
    """An independent random stream per scene component, so components do not interact."""
    return np.random.default_rng([config.seed, stream])


def _dates(start: date, count: int, avoid: Collection[date] = ()) -> list[date]:
    """`count` dates from `start` spread over one year; a date in `avoid` moves one day on."""
    step = 365 // count
    days = (start + timedelta(days=i * step) for i in range(count))
    return [day + timedelta(days=1) if day in avoid else day for day in days]


def _day_of_year(day: date) -> float:
    return float(day.timetuple().tm_yday)


def _split_grid(height: int, width: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """Recursive splitting into rectangles (row, col, height, width) with sides of 8-24."""
    stack = [(0, 0, height, width)]
    leaves = []
    while stack:
        row, col, rows, cols = stack.pop()
        along_rows = rows >= cols
        side = rows if along_rows else cols
        if side > _PARCEL_MAX_SIDE or (side >= 2 * _PARCEL_MIN_SIDE and rng.random() < 0.5):
            cut = int(rng.integers(_PARCEL_MIN_SIDE, side - _PARCEL_MIN_SIDE + 1))
            if along_rows:
                stack += [(row, col, cut, cols), (row + cut, col, rows - cut, cols)]
            else:
                stack += [(row, col, rows, cut), (row, col + cut, rows, cols - cut)]
        else:
            leaves.append((row, col, rows, cols))
    return sorted(leaves)


def _centred(values: np.ndarray, codes: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """`values` minus their area-weighted mean within each class."""
    out = values.copy()
    for code in np.unique(codes):
        members = codes == code
        out[members] -= np.average(values[members], weights=areas[members])
    return out


def _make_parcels(
    config: SampleSceneConfig, rng: np.random.Generator, pattern_rng: np.random.Generator
) -> _Parcels:
    """Parcels with balanced, shuffled classes; raises if a class gets too few parcels.
    `pattern_rng` arranges the materials of the context classes' parcels."""
    rects = np.array(_split_grid(config.height, config.width, rng), dtype=np.int64)
    count = len(rects)
    needed = MIN_LABELLED_PARCELS * len(config.classes)
    if count < needed:
        raise ValueError(
            f"a {config.width}x{config.height} sample scene holds only {count} parcels, but the "
            f"minimum is {needed} ({MIN_LABELLED_PARCELS} labelled parcels for each of the "
            f"{len(config.classes)} classes); use a grid of at least about "
            f"{_min_grid_side(len(config.classes))}x{_min_grid_side(len(config.classes))} pixels"
        )
    codes = np.resize(np.array(config.classes.codes), count)
    rng.shuffle(codes)
    rows, cols, heights, widths = rects.T
    areas = (heights * widths).astype(float)
    id_map = np.empty((config.height, config.width), dtype=np.int32)
    for index, (row, col, n_rows, n_cols) in enumerate(rects):
        id_map[row : row + n_rows, col : col + n_cols] = index
    unit_parcel, unit_material, unit_map = _make_units(rects, codes, id_map, pattern_rng)
    return _Parcels(
        rows=rows,
        cols=cols,
        heights=heights,
        widths=widths,
        codes=codes,
        brightness=1.0 + _centred(rng.normal(0, _PARCEL_BRIGHTNESS_SD, count), codes, areas),
        shift_days=_centred(rng.normal(0, _PARCEL_SHIFT_SD_DAYS, count), codes, areas),
        s1_offset_db=_centred(rng.normal(0, _PARCEL_S1_SD_DB, count), codes, areas),
        id_map=id_map,
        unit_parcel=unit_parcel,
        unit_material=unit_material,
        unit_map=unit_map,
    )


def _min_grid_side(n_classes: int) -> int:
    """The grid side that holds enough parcels for `n_classes`, a multiple of 8."""
    return 8 * int(np.ceil(_MIN_GRID_SIDE_HINT * np.sqrt(n_classes / 8) / 8))


def _make_units(
    rects: np.ndarray, codes: np.ndarray, id_map: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parcel and material of every unit, and the unit of every pixel: unit i < parcels is
    parcel i (its class's material, or a context class's second material); each context
    parcel adds a unit of its first material on the pixels of its pattern."""
    unit_parcel = list(range(len(codes)))
    unit_material = [_CONTEXT_MATERIALS[code][2] if code in _CONTEXT_MATERIALS else code
                     for code in codes]
    unit_map = id_map.copy()
    for index in np.flatnonzero(np.isin(codes, list(_CONTEXT_MATERIALS))):
        row, col, n_rows, n_cols = rects[index]
        first, share, _ = _CONTEXT_MATERIALS[int(codes[index])]
        pattern = _context_pattern(int(codes[index]), int(n_rows), int(n_cols), share, rng)
        unit_map[row : row + n_rows, col : col + n_cols][pattern] = len(unit_parcel)
        unit_parcel.append(int(index))
        unit_material.append(first)
    return np.array(unit_parcel), np.array(unit_material), unit_map


def _context_pattern(
    code: int, rows: int, cols: int, share: float, rng: np.random.Generator
) -> np.ndarray:
    """Where a context parcel of `rows` x `cols` pixels holds its first material (about
    `share` of its pixels): orchard rows, pasture clumps, scattered houses or large halls."""
    if code == ORCHARD:
        phase = int(rng.integers(_ORCHARD_ROW_PERIOD))
        along_rows = cols >= rows  # the rows of trees run along the parcel's longer side
        lines = (np.arange(rows if along_rows else cols) + phase) % _ORCHARD_ROW_PERIOD == 0
        return np.broadcast_to(lines[:, None] if along_rows else lines[None, :], (rows, cols))
    noise = rng.standard_normal((rows, cols))
    if code == RESIDENTIAL:
        return noise < np.quantile(noise, share)
    field = _smoothed(noise, _CLUMP_SIGMA if code == WOODED_PASTURE else _HALL_SIGMA)
    return field > np.quantile(field, 1 - share)


def _smoothed(image: np.ndarray, sigma: float) -> np.ndarray:
    """`image` blurred by a Gaussian of `sigma` pixels (mirrored at its edges)."""
    radius = int(np.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    out = image
    for axis in (0, 1):
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)],
                        mode="symmetric")
        out = np.apply_along_axis(np.convolve, axis, padded, kernel, mode="valid")
    return out


def _choose_labelled(
    parcels: _Parcels, config: SampleSceneConfig, rng: np.random.Generator
) -> np.ndarray:
    """Indices of the labelled parcels: `label_fraction` of each class, at least 5."""
    chosen = []
    for code in config.classes.codes:
        members = np.flatnonzero(parcels.codes == code)
        wanted = max(MIN_LABELLED_PARCELS, round(config.label_fraction * len(members)))
        chosen.append(rng.permutation(members)[: min(wanted, len(members))])
    return np.sort(np.concatenate(chosen))


# Phenology: greenness (vegetation fraction) as a function of day of year.


def _bump(doy: np.ndarray, peak: float, width: float) -> np.ndarray:
    return np.exp(-(((doy - peak) / width) ** 2))


def _winter_crop_greenness(doy: np.ndarray) -> np.ndarray:
    """Sown in autumn, green in winter, peak in early May, harvested in July."""
    winter_cover = 1 / (1 + np.exp((doy - 70) / 12)) + 1 / (1 + np.exp(-(doy - 320) / 15))
    return 0.05 + 0.25 * winter_cover + 0.6 * _bump(doy, 125, 40)


def _summer_crop_greenness(doy: np.ndarray) -> np.ndarray:
    """Bare until May, peak in early August, harvested in September."""
    return 0.05 + 0.85 * _bump(doy, 215, 38)


def _grass_greenness(doy: np.ndarray) -> np.ndarray:
    return 0.45 + 0.35 * _bump(doy, 140, 70)


def _forest_greenness(doy: np.ndarray) -> np.ndarray:
    return 0.8 + 0.2 * _bump(doy, 190, 90)


def _fruit_tree_greenness(doy: np.ndarray) -> np.ndarray:
    """Deciduous: bare in winter, in leaf from May to September."""
    return 0.15 + 0.75 * _bump(doy, 180, 60)


def _sward_greenness(doy: np.ndarray) -> np.ndarray:
    """The mown grass under fruit trees, with patches of bare soil."""
    return 0.35 + 0.3 * _bump(doy, 150, 60)


def _lawn_greenness(doy: np.ndarray) -> np.ndarray:
    """Watered lawns and gardens: green all year."""
    return 0.7 + 0.1 * _bump(doy, 160, 80)


def _crop_crossing_day() -> float:
    """Day of year between both crop peaks where both crops have the same greenness."""
    low, high = 125.0, 215.0
    for _ in range(60):
        middle = (low + high) / 2
        winter = _winter_crop_greenness(np.array(middle))
        summer = _summer_crop_greenness(np.array(middle))
        low, high = (middle, high) if winter > summer else (low, middle)
    return (low + high) / 2


def _mix(first: np.ndarray, second: np.ndarray, fraction: np.ndarray) -> np.ndarray:
    return fraction[:, None] * first + (1 - fraction[:, None]) * second


def _constant(spectrum: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    return lambda doy: np.broadcast_to(spectrum, (doy.size, spectrum.size))


_S2_MODEL: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    WATER: _constant(_WATER),
    FOREST: lambda doy: _mix(_CONIFER, _DRY_VEG, _forest_greenness(doy)),
    WINTER_CROP: lambda doy: _mix(_GREEN_VEG, _SOIL, _winter_crop_greenness(doy)),
    SUMMER_CROP: lambda doy: _mix(_GREEN_VEG, _SOIL, _summer_crop_greenness(doy)),
    GRASSLAND: lambda doy: _mix(_GREEN_VEG, _DRY_VEG, _grass_greenness(doy)),
    WET_MEADOW: lambda doy: _mix(_GREEN_VEG, _DRY_VEG, _grass_greenness(doy)),
    BUILT_UP: _constant(_PAVED),
    BARE_SOIL: _constant(_PAVED),
    _FRUIT_TREE: lambda doy: _mix(_GREEN_VEG, _DRY_VEG, _fruit_tree_greenness(doy)),
    _SWARD: lambda doy: _mix(_GREEN_VEG, _SOIL, _sward_greenness(doy)),
    _ROOFS: _constant(_ROOF),
    _LAWN: lambda doy: _mix(_GREEN_VEG, _DRY_VEG, _lawn_greenness(doy)),
}


def _crop_backscatter(doy: np.ndarray) -> np.ndarray:
    """Shared by both crops: driven by the mean greenness of the two crop types."""
    green = (_winter_crop_greenness(doy) + _summer_crop_greenness(doy)) / 2
    return np.stack([-13.0 + 3.0 * green, -21.0 + 7.0 * green], axis=1)


def _grass_backscatter(doy: np.ndarray) -> np.ndarray:
    green = _grass_greenness(doy)
    return np.stack([-11.0 + 1.5 * green, -18.0 + 3.0 * green], axis=1)


def _wet_meadow_backscatter(doy: np.ndarray) -> np.ndarray:
    flooded = ((doy < _FLOOD_UNTIL_DOY) | (doy >= _FLOOD_FROM_DOY)).astype(float)
    return _grass_backscatter(doy) + flooded[:, None] * np.array([_FLOOD_VV_DB, _FLOOD_VH_DB])


def _forest_backscatter(doy: np.ndarray) -> np.ndarray:
    season = _bump(doy, 190, 90)
    return np.stack([-7.5 + 0.5 * season, -12.0 + 0.5 * season], axis=1)


_S1_MODEL: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    WATER: _constant(np.array([-22.0, -28.0])),
    FOREST: _forest_backscatter,
    WINTER_CROP: _crop_backscatter,
    SUMMER_CROP: _crop_backscatter,
    GRASSLAND: _grass_backscatter,
    WET_MEADOW: _wet_meadow_backscatter,
    BUILT_UP: _constant(np.array([-9.0, -17.0])),
    BARE_SOIL: _constant(np.array([-9.0, -17.0])),
    _FRUIT_TREE: lambda doy: np.stack(
        [-10.0 + 2.0 * _fruit_tree_greenness(doy), -17.0 + 4.0 * _fruit_tree_greenness(doy)],
        axis=1),
    _SWARD: lambda doy: np.stack(
        [-12.0 + 1.5 * _sward_greenness(doy), -20.0 + 3.0 * _sward_greenness(doy)], axis=1),
    _ROOFS: _constant(np.array([-5.0, -14.0])),
    _LAWN: _grass_backscatter,
}


def _unit_values(
    parcels: _Parcels, model: dict[int, Callable[[np.ndarray], np.ndarray]], bands: int, doy: float
) -> np.ndarray:
    """Noise-free per-unit values (units, bands) of `model` on day `doy`."""
    local_doy = doy - parcels.shift_days[parcels.unit_parcel]
    out = np.empty((parcels.unit_parcel.size, bands))
    for material in np.unique(parcels.unit_material):
        members = parcels.unit_material == material
        out[members] = model[int(material)](local_doy[members])
    return out


def _unit_reflectance(parcels: _Parcels, doy: float) -> np.ndarray:
    """Noise-free S2 reflectance (units, bands) including the per-parcel brightness."""
    brightness = parcels.brightness[parcels.unit_parcel]
    return _unit_values(parcels, _S2_MODEL, len(S2_BANDS), doy) * brightness[:, None]


def _unit_backscatter(parcels: _Parcels, doy: float) -> np.ndarray:
    """Noise-free S1 backscatter in dB (units, VV/VH) including the per-parcel offset."""
    offset = parcels.s1_offset_db[parcels.unit_parcel]
    return _unit_values(parcels, _S1_MODEL, len(S1_BANDS), doy) + offset[:, None]


def _to_dn(reflectance: np.ndarray) -> np.ndarray:
    """uint16 digital numbers; 0 is reserved for nodata."""
    return np.clip(np.rint(reflectance * DN_SCALE), 1, 65535).astype(np.uint16)


def _cloud_field(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A smooth positive field made of random Gaussian blobs."""
    height, width = shape
    rows = np.arange(height, dtype=float)[:, None]
    cols = np.arange(width, dtype=float)[None, :]
    field = np.zeros(shape)
    for _ in range(12):
        centre_row = rng.uniform(-0.1, 1.1) * height
        centre_col = rng.uniform(-0.1, 1.1) * width
        sigma = rng.uniform(0.05, 0.15) * min(height, width)
        field += np.exp(-((rows - centre_row) ** 2) / (2 * sigma**2)) * np.exp(
            -((cols - centre_col) ** 2) / (2 * sigma**2)
        )
    return field


def _write_s2(
    parcels: _Parcels,
    dates: list[date],
    paths: tuple[Path, ...],
    crs: CRS,
    transform: Affine,
    rng: np.random.Generator,
) -> np.ndarray:
    """Write the S2 time series; returns the cloud mask (dates, rows, cols) as uint8."""
    shape = parcels.id_map.shape
    n_cloudy = 3 if len(dates) >= 9 else 2
    order = rng.permutation(len(dates))
    cloudy, strip_date = set(order[:n_cloudy].tolist()), int(order[n_cloudy])
    strip_width = max(1, round(_STRIP_FRACTION * shape[1]))
    strip = slice(0, strip_width) if rng.random() < 0.5 else slice(shape[1] - strip_width, None)
    cloud_mask = np.zeros((len(dates), *shape), dtype=np.uint8)
    for index, (day, path) in enumerate(zip(dates, paths, strict=True)):
        reflectance = _unit_reflectance(parcels, _day_of_year(day)).T[:, parcels.unit_map]
        reflectance *= 1 + _S2_RELATIVE_NOISE * rng.standard_normal(reflectance.shape)
        reflectance += _S2_ABSOLUTE_NOISE * rng.standard_normal(reflectance.shape)
        if index in cloudy:
            field = _cloud_field(shape, rng)
            threshold = np.quantile(field, 1 - rng.uniform(*_CLOUD_COVER))
            cloud = field > threshold
            low, high = _CLOUD_REFLECTANCE
            level = low + (high - low) * (field - threshold) / (field.max() - threshold)
            noise = _CLOUD_NOISE * rng.standard_normal(reflectance.shape)
            reflectance = np.where(cloud, level + noise, reflectance)
            cloud_mask[index] = cloud
        dn = _to_dn(reflectance)
        if index == strip_date:
            dn[:, :, strip] = 0
        _write_raster(path, dn, crs, transform, 0, list(S2_BANDS))
    return cloud_mask


def _write_s1(
    parcels: _Parcels,
    dates: list[date],
    paths: tuple[Path, ...],
    crs: CRS,
    transform: Affine,
    rng: np.random.Generator,
) -> None:
    """Write the S1 time series: dB backscatter with multiplicative gamma speckle."""
    for day, path in zip(dates, paths, strict=True):
        db = _unit_backscatter(parcels, _day_of_year(day)).T[:, parcels.unit_map]
        power = 10 ** (db / 10)
        power *= rng.gamma(_S1_LOOKS, 1 / _S1_LOOKS, power.shape)
        _write_raster(
            path, (10 * np.log10(power)).astype(np.float32), crs, transform, np.nan, list(S1_BANDS)
        )


def _urban_texture(rows: int, cols: int, ratio: int, rng: np.random.Generator) -> np.ndarray:
    """Roofs and streets with a period of 3-6 PAN pixels, zero mean over each MS pixel."""
    period_row, period_col = rng.uniform(*_URBAN_PERIOD_PAN_PIXELS, 2)
    phase_row, phase_col = rng.uniform(0, 2 * np.pi, 2)
    row_wave = np.sin(2 * np.pi * np.arange(rows) / period_row + phase_row)[:, None]
    col_wave = np.sin(2 * np.pi * np.arange(cols) / period_col + phase_col)[None, :]
    texture = np.where((row_wave > -0.2) & (col_wave > -0.2), 1.0, -1.0)
    blocks = texture.reshape(rows // ratio, ratio, cols // ratio, ratio)
    blocks -= blocks.mean(axis=(1, 3), keepdims=True)
    return _URBAN_TEXTURE_AMPLITUDE * texture


def _write_ms_pan(
    parcels: _Parcels,
    doy: float,
    acquisition_date: str,
    ms_path: Path,
    pan_path: Path,
    config: SampleSceneConfig,
    crs: CRS,
    transform: Affine,
    rng: np.random.Generator,
) -> None:
    """Write MS (S2 grid) and PAN (pan_ratio finer) of one cloud-free date `doy`."""
    scene = _unit_reflectance(parcels, doy)[:, MS_FROM_S2].T[:, parcels.unit_map]
    scene *= 1 + _SCENE_RELATIVE_NOISE * rng.standard_normal(parcels.id_map.shape)
    ms = scene + _SENSOR_NOISE * rng.standard_normal(scene.shape)
    tags = {"ACQUISITION_DATE": acquisition_date}
    _write_raster(ms_path, _to_dn(ms), crs, transform, 0, list(MS_BANDS), tags=tags)

    ratio = config.pan_ratio
    pan_10m = np.tensordot(np.array(PAN_WEIGHTS), scene, axes=1).astype(np.float32)
    pan = np.repeat(np.repeat(pan_10m, ratio, axis=0), ratio, axis=1)
    for index in np.flatnonzero(parcels.codes == BUILT_UP):
        top, left = parcels.rows[index] * ratio, parcels.cols[index] * ratio
        rows, cols = parcels.heights[index] * ratio, parcels.widths[index] * ratio
        pan[top : top + rows, left : left + cols] += _urban_texture(rows, cols, ratio, rng)
    noise = rng.standard_normal(pan.shape, dtype=np.float32)
    noise *= _SENSOR_NOISE
    pan += noise
    pan_transform = transform * Affine.scale(1 / ratio)
    _write_raster(pan_path, _to_dn(pan)[None], crs, pan_transform, 0, ["PAN"], tags=tags)


def _write_raster(
    path: Path,
    data: np.ndarray,
    crs: CRS,
    transform: Affine,
    nodata: float | None,
    descriptions: list[str],
    tags: dict[str, str] | None = None,
    colormap: dict[int, tuple[int, int, int, int]] | None = None,
) -> None:
    """Write a (bands, rows, cols) array as a tiled, DEFLATE-compressed GeoTIFF (the colour
    table before the pixels: libtiff refuses it once a block is written)."""
    count, height, width = data.shape
    grid = Grid(crs.to_wkt(), transform.to_gdal(), width, height)
    with rasterio.open(path, "w", **write_profile(grid, count, data.dtype.name, nodata)) as dst:
        if colormap:
            dst.write_colormap(1, colormap)
        dst.descriptions = tuple(descriptions)
        if tags:
            dst.update_tags(**tags)
        dst.write(data)


def _write_reference(
    path: Path, parcels: _Parcels, labelled: np.ndarray, config: SampleSceneConfig
) -> None:
    """Write labelled parcels, shrunk inwards by one pixel, as a GeoPackage layer."""
    if path.exists():
        path.unlink()
    previous = gdal.GetThreadLocalConfigOption("OGR_CURRENT_DATE", None)
    gdal.SetThreadLocalConfigOption("OGR_CURRENT_DATE", _GPKG_TIMESTAMP)
    try:
        _write_reference_layer(path, parcels, labelled, config)
    finally:
        gdal.SetThreadLocalConfigOption("OGR_CURRENT_DATE", previous)


def _write_reference_layer(
    path: Path, parcels: _Parcels, labelled: np.ndarray, config: SampleSceneConfig
) -> None:
    """Create the layer; the file is closed when this returns (the last references go)."""
    try:
        dataset = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    except RuntimeError as error:
        raise OSError(f"cannot create GeoPackage {path}: {error}") from error
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(config.epsg)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    layer = dataset.CreateLayer(REFERENCE_LAYER, srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class_id", ogr.OFTInteger))
    layer.CreateField(ogr.FieldDefn("class_name", ogr.OFTString))
    layer.CreateField(ogr.FieldDefn("class_color", ogr.OFTString))
    definition = layer.GetLayerDefn()
    size = config.pixel_size
    layer.StartTransaction()
    for index in labelled:
        left = config.origin_x + (parcels.cols[index] + 1) * size
        right = config.origin_x + (parcels.cols[index] + parcels.widths[index] - 1) * size
        top = config.origin_y - (parcels.rows[index] + 1) * size
        bottom = config.origin_y - (parcels.rows[index] + parcels.heights[index] - 1) * size
        ring = ogr.Geometry(ogr.wkbLinearRing)
        for x, y in ((left, bottom), (right, bottom), (right, top), (left, top), (left, bottom)):
            ring.AddPoint_2D(float(x), float(y))
        polygon = ogr.Geometry(ogr.wkbPolygon)
        polygon.AddGeometry(ring)
        code = int(parcels.codes[index])
        feature = ogr.Feature(definition)
        feature.SetField("class_id", code)
        feature.SetField("class_name", config.classes.by_code(code).name)
        feature.SetField("class_color", config.classes.by_code(code).color)
        feature.SetGeometry(polygon)
        layer.CreateFeature(feature)
    layer.CommitTransaction()


def per_pixel_ceiling(support: Mapping[int, int], source: str) -> float:
    """The highest overall accuracy a per-pixel classifier of `source` can reach on pixels of
    `support` (class code -> pixel count): right on every pixel, except that of each pair of
    `PIXEL_TWINS[source]` only the class with more pixels can be told (the pair's pixels
    share one distribution of values, so one rule labels them all)."""
    total = sum(support.values())
    if total == 0:
        raise ValueError("per_pixel_ceiling needs at least one pixel")
    lost = sum(min(support.get(first, 0), support.get(second, 0))
               for first, second in PIXEL_TWINS[source])
    return (total - lost) / total
