"""Two tiny class maps of one grid and their reference (polygons or points), with everything
comparemaps must find in them counted by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from helpers import write_raster
from osgeo import ogr, osr

ogr.UseExceptions()

X0, Y0, PIXEL = 500000.0, 5000000.0, 10.0
NODATA = 255
CLASSES = ((1, "water"), (2, "forest"), (3, "crop"))

#: The truth, 12 x 10 pixels: water rows 0-3, forest rows 4-7, crop rows 8-9, in columns 0-9;
#: columns 10-11 are outside the reference.
#: Map A: right everywhere but row 7 (forest given as water); 1 in columns 10-11.
#: Map B: water over water and forest, but forest at (7, 0) and (7, 1), forest over crop (B
#: never gives crop), nodata at (9, 9); in columns 10-11, 2 in rows 0-4 and 1 below.
MAP_A = np.ones((10, 12), dtype=np.uint8)
MAP_A[4:7, :10] = 2
MAP_A[8:, :10] = 3
MAP_B = np.ones((10, 12), dtype=np.uint8)
MAP_B[7, :2] = 2
MAP_B[8:, :10] = 2
MAP_B[9, 9] = NODATA
MAP_B[:5, 10:] = 2

# By hand, on the 99 reference pixels both maps classify ((9, 9) is nodata in B):
#   water rows 0-3 (40): both right; forest rows 4-6 (30): only A right; row 7 columns 0-1:
#   only B right (2); row 7 columns 2-9: both wrong (8); crop (19): only A right.
BOTH_RIGHT, ONLY_A, ONLY_B, BOTH_WRONG = 40, 30 + 19, 2, 8
N_PIXELS = 99
CHI_SQUARE = (abs(ONLY_A - ONLY_B) - 1) ** 2 / (ONLY_A + ONLY_B)   # 46² / 51 = 2116 / 51
OA_A, OA_B = (BOTH_RIGHT + ONLY_A) / N_PIXELS, (BOTH_RIGHT + ONLY_B) / N_PIXELS  # 89/99, 42/99
# F1 = 2 TP / (2 TP + FP + FN). A: water 40 TP, 10 FP; forest 30 TP, 10 FN; crop 19 TP.
# B: water 40 TP, 38 FP; forest 2 TP, 19 FP, 38 FN; crop 19 FN (never given: F1 0).
F1_A = (80 / 90, 60 / 70, 1.0)
F1_B = (80 / 118, 4 / 61, 0.0)
#: The disagreement raster: 0 both right, 1 only A, 2 only B, 3 both wrong, 4 the maps differ
#: outside the reference, 255 elsewhere (the maps agree there, or B is nodata).
DISAGREEMENT = np.full((10, 12), NODATA, dtype=np.uint8)
DISAGREEMENT[:4, :10] = 0
DISAGREEMENT[4:7, :10] = 1
DISAGREEMENT[7, :10] = 3
DISAGREEMENT[7, :2] = 2
DISAGREEMENT[8:, :10] = 1
DISAGREEMENT[9, 9] = NODATA
DISAGREEMENT[:5, 10:] = 4

#: Sample points (row, column, class) placed off the pixel centres: both right, only A
#: twice, only B, both wrong.
POINTS = ((0, 0, 1), (5, 3, 2), (8, 2, 3), (7, 0, 2), (7, 5, 2))


def utm() -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32631)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def write_map(path: Path, data: np.ndarray, origin: tuple[float, float] = (X0, Y0)) -> Path:
    return write_raster(path, data, origin=origin, pixel=PIXEL, crs="EPSG:32631",
                        nodata=NODATA)


def box(col0: int, row0: int, col1: int, row1: int) -> ogr.Geometry:
    """A polygon over pixel columns [col0, col1) and rows [row0, row1)."""
    x0, x1 = X0 + PIXEL * col0, X0 + PIXEL * col1
    y0, y1 = Y0 - PIXEL * row0, Y0 - PIXEL * row1
    return ogr.CreateGeometryFromWkt(
        f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))")


def point(row: int, col: int) -> ogr.Geometry:
    """A point inside pixel (row, col), away from its centre."""
    return ogr.CreateGeometryFromWkt(
        f"POINT({X0 + PIXEL * (col + 0.8)} {Y0 - PIXEL * (row + 0.3)})")


def write_features(path: Path, kind: int, features) -> Path:
    """A GeoPackage layer "reference" with the fields code and label."""
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = source.CreateLayer("reference", utm(), kind)
    layer.CreateField(ogr.FieldDefn("code", ogr.OFTInteger))
    layer.CreateField(ogr.FieldDefn("label", ogr.OFTString))
    names = dict(CLASSES)
    for code, geometry in features:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("code", code)
        feature.SetField("label", names[code])
        feature.SetGeometry(geometry)
        layer.CreateFeature(feature)
    source = None
    return path


def write_polygons(path: Path) -> Path:
    return write_features(path, ogr.wkbPolygon, ((1, box(0, 0, 10, 4)), (2, box(0, 4, 10, 8)),
                                                 (3, box(0, 8, 10, 10))))


def write_points(path: Path) -> Path:
    return write_features(path, ogr.wkbPoint,
                          ((code, point(row, col)) for row, col, code in POINTS))


def write_pair(folder: Path) -> tuple[Path, Path]:
    return write_map(folder / "map_a.tif", MAP_A), write_map(folder / "map_b.tif", MAP_B)
