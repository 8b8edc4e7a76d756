"""Reference polygons: class table, object ids rasterized on a grid, labelled pixels."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from osgeo import gdal, ogr, osr

from ..errors import LcfusionError
from ..io.rasters import Grid, iter_windows, write_profile
from ..progress import NullReporter, Reporter
from ..wording import counted
from .classes import NODATA_UINT16, ClassTable, normalize_color

gdal.UseExceptions()
ogr.UseExceptions()
osr.UseExceptions()

_INTEGER_TYPES = (ogr.OFTInteger, ogr.OFTInteger64)


@dataclass(frozen=True)
class ReferenceSpec:
    """Where the reference polygons are and which fields hold their class."""

    path: str
    class_field: str
    layer: str | None = None
    name_field: str | None = None
    color_field: str | None = None
    colors: dict[str, str] = field(default_factory=dict)
    #: Only the features whose `part_field` holds `part` (e.g. the test polygons of a split).
    part_field: str | None = None
    part: str | None = None
    #: The column that holds each named field, where the file stores it under another name
    #: (the plugin exports fields under safe names: a field called "fid" would otherwise
    #: become the GeoPackage's feature id).
    columns: dict[str, str] = field(default_factory=dict)
    #: Sample points instead of polygons: each labels the pixel it falls in (comparemaps).
    points: bool = False

    @classmethod
    def from_json(cls, data: dict) -> ReferenceSpec:
        return cls(
            path=str(data["path"]),
            class_field=str(data.get("class_field") or ""),
            layer=data.get("layer") or None,
            name_field=data.get("name_field") or None,
            color_field=data.get("color_field") or None,
            colors={str(k): str(v) for k, v in (data.get("colors") or {}).items()},
            part_field=data.get("part_field") or None,
            part=data.get("part") or None,
            columns={str(k): str(v) for k, v in (data.get("columns") or {}).items()},
            points=bool(data.get("points")),
        )


@dataclass
class LabelledPixels:
    """Every labelled pixel: row, column and object id (1-based)."""

    rows: np.ndarray
    cols: np.ndarray
    objects: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.size)


@dataclass
class Reference:
    """Reference polygons burned on a grid. Object ids are 1..n; 0 means unlabelled.
    `object_feature` gives each object's position (0-based) among the layer's features."""

    classes: ClassTable
    object_class: np.ndarray
    object_area: np.ndarray
    object_pixels: np.ndarray
    objects_path: Path
    pixels: LabelledPixels
    n_features: int
    object_feature: np.ndarray

    @property
    def n_objects(self) -> int:
        return int(self.object_class.size - 1)

    def present_objects(self) -> np.ndarray:
        """Ids of objects with at least one pixel on the grid."""
        return np.flatnonzero(self.object_pixels > 0)

    def pixel_classes(self) -> np.ndarray:
        return self.object_class[self.pixels.objects]


def _open_layer(spec: ReferenceSpec) -> tuple[ogr.DataSource, ogr.Layer]:
    try:
        source = ogr.Open(spec.path)
    except RuntimeError as exc:
        raise LcfusionError(f"cannot open the polygons {spec.path}: {exc}", "REFERENCE") from exc
    if source is None:
        raise LcfusionError(f"cannot open the polygons {spec.path}", "REFERENCE")
    layer = source.GetLayerByName(spec.layer) if spec.layer else source.GetLayer(0)
    if layer is None:
        raise LcfusionError(f"the layer {spec.layer!r} is not in {spec.path}", "REFERENCE")
    return source, layer


def _field_index(layer: ogr.Layer, spec: ReferenceSpec, name: str | None,
                 parameter: str) -> int | None:
    """The index of the column holding the field `name` (None without a name)."""
    if not name:
        return None
    definition = layer.GetLayerDefn()
    index = definition.GetFieldIndex(spec.columns.get(name, name))
    if index < 0:
        named = {column: field_name for field_name, column in spec.columns.items()}
        fields = [named.get(definition.GetFieldDefn(i).GetName(),
                            definition.GetFieldDefn(i).GetName())
                  for i in range(definition.GetFieldCount())]
        raise LcfusionError(
            f"the field {name!r} is not in the reference layer (its fields: "
            f"{', '.join(fields) or 'none'}); choose one of them", parameter)
    return index


def _transform_to(layer: ogr.Layer, grid: Grid, reporter: Reporter):
    source_srs = layer.GetSpatialRef()
    target = osr.SpatialReference()
    target.ImportFromWkt(grid.crs_wkt)
    target.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    if source_srs is None:
        reporter.warning("the reference polygons have no CRS; they are taken to be in the "
                         "rasters' CRS")
        return None, target
    source_srs = source_srs.Clone()
    source_srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    if source_srs.IsSame(target):
        return None, target
    reporter.info("reprojecting the reference polygons to the rasters' CRS")
    return osr.CoordinateTransformation(source_srs, target), target


def _class_value(feature: ogr.Feature, index: int, field_type: int, parameter: str):
    if not feature.IsFieldSetAndNotNull(index):
        return None
    if field_type in _INTEGER_TYPES:
        return int(feature.GetFieldAsInteger64(index))
    if field_type == ogr.OFTReal:
        value = feature.GetFieldAsDouble(index)
        if not np.isfinite(value) or value != int(value):
            raise LcfusionError(
                f"the class field holds the non-integer value {value}; class codes must be "
                "whole numbers (or text names)", parameter)
        return int(value)
    text = feature.GetFieldAsString(index).strip()
    return text or None


def normalized_name(name: str) -> str:
    """A class name as compared between maps and references: case and spaces ignored."""
    return " ".join(name.split()).casefold()


def load_reference(spec: ReferenceSpec, grid: Grid, workdir: Path,
                   reporter: Reporter | None = None,
                   map_classes: dict[int, str] | None = None) -> Reference:
    """Read the polygons, build the class table and burn object ids on `grid`.

    Pixels are labelled by the pixel-centre rule; a pixel in polygons of one class goes to the
    first of them, a pixel in polygons of different classes is ambiguous and left out (warned).
    With a part filter, every feature is burned to find these pixels before the other parts'
    pixels are dropped, so a part keeps exactly the pixels it has in the whole layer.
    `map_classes` (code -> name) is the class table of a map the polygons are compared with:
    text classes then take its codes (an empty table: numbered in alphabetical order, said).
    """
    reporter = reporter or NullReporter()
    if not spec.class_field:
        raise LcfusionError("no class field given; choose the field that holds the class "
                            "of each polygon", "CLASS_FIELD")
    source, layer = _open_layer(spec)
    class_index = _field_index(layer, spec, spec.class_field, "CLASS_FIELD")
    name_index = _field_index(layer, spec, spec.name_field, "NAME_FIELD")
    color_index = _field_index(layer, spec, spec.color_field, "COLOR_FIELD")
    part_index = _field_index(layer, spec, spec.part_field, "PART") if spec.part else None
    field_type = layer.GetLayerDefn().GetFieldDefn(class_index).GetType()
    if field_type not in (*_INTEGER_TYPES, ogr.OFTReal, ogr.OFTString):
        raise LcfusionError(
            f"the class field {spec.class_field!r} must hold integers or text", "CLASS_FIELD")
    transform, target_srs = _transform_to(layer, grid, reporter)

    values, names, colors, areas, positions, geometries = [], {}, {}, [], [], []
    burned = _BurnList()
    skipped = Counter()
    n_features = 0
    other_parts = Counter()
    for feature in layer:
        n_features += 1
        in_part = True
        if part_index is not None:
            part = feature.GetFieldAsString(part_index).strip()
            if part.casefold() != spec.part.casefold():
                other_parts[part or "(empty)"] += 1
                in_part = False
        value = _class_value(feature, class_index, field_type, "CLASS_FIELD")
        geometry, reason = _polygon(feature, value, transform, spec.points)
        if reason:
            if in_part:
                skipped[reason] += 1
            continue
        if not in_part:
            burned.add(geometry, value, 0)
            continue
        values.append(value)
        areas.append(0.0 if spec.points else geometry.GetArea())
        positions.append(n_features - 1)
        geometries.append(geometry)
        burned.add(geometry, value, len(values))
        if name_index is not None and feature.IsFieldSetAndNotNull(name_index):
            names.setdefault(value, feature.GetFieldAsString(name_index).strip())
        if color_index is not None and feature.IsFieldSetAndNotNull(color_index):
            colors.setdefault(value, feature.GetFieldAsString(color_index).strip())
    del source
    if part_index is not None:
        _log_part(spec, n_features, other_parts, reporter)
    for reason, count in sorted(skipped.items()):
        reporter.warning(f"{counted(count, 'reference feature')} skipped: {reason}")
    if not values and n_features and skipped["no class value"] == n_features - sum(
            other_parts.values()):
        raise LcfusionError(
            f"the class field {spec.class_field!r} is empty (NULL) in all {n_features} "
            "features; choose the field that holds the class of each polygon", "CLASS_FIELD")
    if not values:
        raise LcfusionError(
            f"none of the {n_features} features has both a polygon and a class value in "
            f"{spec.class_field!r}", "REFERENCE")

    classes, codes_of = _class_table(values, names, colors, spec, field_type, reporter,
                                     map_classes)
    object_class = np.full(len(values) + 1, -1, dtype=np.int32)
    object_class[1:] = [classes.by_code(codes_of(v)).index for v in values]
    object_area = np.zeros(len(values) + 1, dtype=np.float64)
    object_area[1:] = areas

    objects_path = workdir / "reference_objects.tif"
    overlaps = burned.burn(grid, target_srs, workdir, objects_path)
    if overlaps.ambiguous and spec.points:
        reporter.warning(
            f"[REFERENCE] {counted(overlaps.ambiguous, 'pixel', thousands=True)} "
            f"{'holds' if overlaps.ambiguous == 1 else 'hold'} sample points of different "
            f"classes ({counted(overlaps.polygons, 'point')} concerned): these ambiguous pixels "
            "are left out; correct the points' classes to use them")
    elif overlaps.ambiguous:
        reporter.warning(
            f"[REFERENCE] {counted(overlaps.ambiguous, 'pixel', thousands=True)} "
            f"{'is' if overlaps.ambiguous == 1 else 'are'} covered by polygons of different "
            f"classes ({counted(overlaps.polygons, 'polygon')} concerned): these ambiguous "
            "pixels are left out of training, validation, test and evaluation; correct the "
            "overlapping polygons to use them")
    pixels, object_pixels = _scan_objects(objects_path, grid, len(values), reporter)
    if len(pixels) == 0 and not overlaps.covered:
        west, south, east, north = _extent(geometries)
        shapes = "points" if spec.points else "polygons"
        raise LcfusionError(
            f"none of the {len(values)} {shapes} overlaps the rasters: the {shapes} cover "
            f"x {west:.1f}..{east:.1f}, y {south:.1f}..{north:.1f} but the "
            f"rasters are {grid.describe()}; check that both cover the same area and that the "
            "layer's CRS is right", "REFERENCE")
    if len(pixels) == 0:
        raise LcfusionError(
            f"every pixel of the {len(values)} polygons is also covered by a polygon of another "
            "class; correct the overlapping polygons", "REFERENCE")
    if spec.points:
        _log_points_without_pixels(object_pixels, geometries, reporter)
    else:
        _log_objects_without_pixels(object_pixels, geometries, grid, reporter)
    object_feature = np.array([-1, *positions], dtype=np.int64)
    return Reference(classes, object_class, object_area, object_pixels, objects_path, pixels,
                     n_features, object_feature)


def _polygon(feature: ogr.Feature, value, transform,
             points: bool = False) -> tuple[ogr.Geometry | None, str]:
    """The feature's polygon (with `points`, its point) in the grid's CRS, or why it cannot be
    burned."""
    geometry = feature.GetGeometryRef()
    if value is None:
        return None, "no class value"
    if geometry is None or geometry.IsEmpty():
        return None, "no geometry"
    geometry = geometry.Clone()
    if transform is not None:
        try:
            geometry.Transform(transform)
        except RuntimeError:
            return None, "cannot be reprojected to the rasters' CRS"
    flat = ogr.GT_Flatten(geometry.GetGeometryType())
    if points and flat not in (ogr.wkbPoint, ogr.wkbMultiPoint):
        return None, "not a point"
    if not points and flat not in (ogr.wkbPolygon, ogr.wkbMultiPolygon,
                                   ogr.wkbGeometryCollection):
        return None, "not a polygon"
    return geometry, ""


def _extent(geometries: list[ogr.Geometry]) -> tuple[float, float, float, float]:
    """(west, south, east, north) of all the geometries."""
    envelopes = np.array([g.GetEnvelope() for g in geometries])
    return (envelopes[:, 0].min(), envelopes[:, 2].min(), envelopes[:, 1].max(),
            envelopes[:, 3].max())


@dataclass(frozen=True)
class Overlaps:
    """What burning found: pixels covered by polygons of different classes (of the kept
    polygons), the polygons concerned, and the pixels any kept polygon covers."""

    ambiguous: int
    polygons: int
    covered: int


@dataclass
class _BurnList:
    """Every polygon with a class, in layer order, with its object id (0: not kept, e.g. in
    another part of a split; it still takes part in finding overlaps)."""

    geometries: list = field(default_factory=list)
    values: list = field(default_factory=list)
    objects: list = field(default_factory=list)

    def add(self, geometry: ogr.Geometry, value, object_id: int) -> None:
        self.geometries.append(geometry)
        self.values.append(value)
        self.objects.append(object_id)

    def burn(self, grid: Grid, srs: osr.SpatialReference, workdir: Path,
             objects_path: Path) -> Overlaps:
        """Write the object id of each pixel to `objects_path` by the pixel-centre rule.

        A pixel covered by polygons of one class goes to the first of them; a pixel covered by
        polygons of different classes is ambiguous and left unlabelled (0). Two burns find
        them: one where the polygon of the highest class wins, one where the lowest does.
        """
        rank = {value: i for i, value in enumerate(sorted(set(self.values), key=str))}
        ranks = [rank[value] for value in self.values]
        n = len(ranks)
        highest = workdir / "reference_highest_class.tif"
        lowest = workdir / "reference_lowest_class.tif"
        self._rasterize(sorted(range(n), key=lambda i: (ranks[i], -i)), grid, srs, highest)
        self._rasterize(sorted(range(n), key=lambda i: (-ranks[i], -i)), grid, srs, lowest)
        rank_of = np.array([-1, *ranks], dtype=np.int64)
        object_of = np.array([0, *self.objects], dtype=np.uint32)
        ambiguous = covered = 0
        concerned: set[int] = set()
        with rasterio.open(highest) as high_source, rasterio.open(lowest) as low_source, \
                rasterio.open(objects_path, "w", **write_profile(grid, 1, "uint32", 0)) as out:
            for window in iter_windows(grid.width, grid.height, 1024):
                high = high_source.read(1, window=window)
                low = low_source.read(1, window=window)
                kept = (object_of[high] > 0) | (object_of[low] > 0)
                mixed = rank_of[high] != rank_of[low]
                counted_here = mixed & kept
                ambiguous += int(np.count_nonzero(counted_here))
                covered += int(np.count_nonzero(kept))
                concerned.update(np.unique(high[counted_here]).tolist())
                concerned.update(np.unique(low[counted_here]).tolist())
                objects = object_of[high]
                objects[mixed] = 0
                out.write(objects, 1, window=window)
        highest.unlink()
        lowest.unlink()
        return Overlaps(ambiguous, len(concerned), covered)

    def _rasterize(self, order: list[int], grid: Grid, srs: osr.SpatialReference,
                   path: Path) -> None:
        """Burn 1-based positions in `order`; the last polygon burned on a pixel wins."""
        memory = ogr.GetDriverByName("Memory").CreateDataSource("burn")
        layer = memory.CreateLayer("burn", srs, ogr.wkbUnknown)
        layer.CreateField(ogr.FieldDefn("burn", ogr.OFTInteger))
        for index in order:
            feature = ogr.Feature(layer.GetLayerDefn())
            feature.SetField("burn", index + 1)
            feature.SetGeometry(self.geometries[index])
            layer.CreateFeature(feature)
        with rasterio.open(path, "w", **write_profile(grid, 1, "uint32", 0)):
            pass
        target = gdal.Open(str(path), gdal.GA_Update)
        gdal.RasterizeLayer(target, [1], layer, options=["ATTRIBUTE=burn"])
        target.FlushCache()
        target = None


def _covers_pixel_centre(geometry: ogr.Geometry, grid: Grid) -> bool:
    """Whether the polygon holds the centre of any pixel of the grid (north-up)."""
    west, east, south, north = geometry.GetEnvelope()
    x0, dx, _, y0, _, dy = grid.transform
    col0, col1 = max(0, int(np.floor((west - x0) / dx))), min(grid.width,
                                                            int(np.ceil((east - x0) / dx)))
    row0, row1 = max(0, int(np.floor((north - y0) / dy))), min(grid.height,
                                                             int(np.ceil((south - y0) / dy)))
    if col1 <= col0 or row1 <= row0:
        return False
    target = gdal.GetDriverByName("MEM").Create("", col1 - col0, row1 - row0, 1, gdal.GDT_Byte)
    target.SetGeoTransform((x0 + col0 * dx, dx, 0.0, y0 + row0 * dy, 0.0, dy))
    target.SetProjection(grid.crs_wkt)
    srs = osr.SpatialReference(wkt=grid.crs_wkt)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    memory = ogr.GetDriverByName("Memory").CreateDataSource("one")
    layer = memory.CreateLayer("one", srs, ogr.wkbUnknown)
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetGeometry(geometry)
    layer.CreateFeature(feature)
    gdal.RasterizeLayer(target, [1], layer, burn_values=[1])
    return bool(target.GetRasterBand(1).ReadAsArray().any())


def _log_objects_without_pixels(object_pixels: np.ndarray, geometries: list[ogr.Geometry],
                                grid: Grid, reporter: Reporter) -> None:
    """Say which polygons are left out for want of pixels: those that hold no pixel centre,
    and those all of whose pixels belong to other polygons or are ambiguous."""
    empty = np.flatnonzero(object_pixels[1:] == 0)
    inside = sum(_covers_pixel_centre(geometries[i], grid) for i in empty)
    outside = len(empty) - inside
    total = counted(len(geometries), "polygon")
    if outside:
        reporter.info(f"{outside} of {total} {'covers' if outside == 1 else 'cover'} no pixel "
                      f"centre of the rasters and {'is' if outside == 1 else 'are'} left out")
    if inside:
        reporter.info(f"{inside} of {total} {'lies' if inside == 1 else 'lie'} inside other "
                      f"polygons (each of {'its' if inside == 1 else 'their'} pixels is "
                      "labelled by another polygon or ambiguous) and "
                      f"{'is' if inside == 1 else 'are'} left out")


def _log_points_without_pixels(object_pixels: np.ndarray, geometries: list[ogr.Geometry],
                               reporter: Reporter) -> None:
    """Say how many sample points are left out: off the rasters, or in a pixel that an earlier
    point labels (or points of different classes make ambiguous)."""
    empty = np.flatnonzero(object_pixels[1:] == 0)
    if empty.size:
        total = counted(len(geometries), "sample point")
        reporter.info(f"{empty.size} of {total} {'labels' if empty.size == 1 else 'label'} no "
                      "pixel of their own (off the rasters, in the pixel of an earlier point, "
                      "or in an ambiguous pixel) and "
                      f"{'is' if empty.size == 1 else 'are'} left out")


def _log_part(spec: ReferenceSpec, n_features: int, other_parts: Counter,
              reporter: Reporter) -> None:
    """Say how many features the part filter kept; none is an error naming PART."""
    kept = n_features - sum(other_parts.values())
    found = ", ".join(f"{value} ({count})" for value, count in sorted(other_parts.items()))
    if not kept:
        raise LcfusionError(
            f"none of the {n_features} reference features has {spec.part!r} in the field "
            f"{spec.part_field!r} (its values: {found or 'none'}); choose the split layer "
            "written by a training, or another part", "PART")
    reporter.info(f"{kept} of {counted(n_features, 'reference feature')} "
                  f"{'is' if kept == 1 else 'are'} in the {spec.part!r} part "
                  f"(field {spec.part_field!r}); the others are left out")


def _class_table(values, names, colors, spec: ReferenceSpec, field_type: int,
                 reporter: Reporter, map_classes: dict[int, str] | None = None):
    """The class table and a function mapping a field value to its code.

    A class's colour comes from the colour field, else from the layer's style (`spec.colors`),
    else from its name or the default palette (`ClassTable.build`). Text values take the codes
    of `map_classes` when it holds a table (see `load_reference`), else are numbered 1..n in
    alphabetical order.
    """
    refused = set()

    def colour_for(value) -> str | None:
        text = colors.get(value) or spec.colors.get(str(value))
        if not text:
            return None
        try:
            return normalize_color(text)
        except ValueError:
            if text not in refused:
                refused.add(text)
                reporter.warning(f"the colour {text!r} of class {value!r} is not #rrggbb; a "
                                 "default colour is used")
            return None

    if field_type == ogr.OFTString and all(v.isascii() and v.isdigit() for v in values):
        reporter.info(f"the class field {spec.class_field!r} is text, but every value is a whole "
                      "number: they are taken as class codes")
        values = [int(v) for v in values]
        names = {int(k): v for k, v in names.items()}
        colors = {int(k): v for k, v in colors.items()}
        field_type = ogr.OFTInteger
    if field_type == ogr.OFTString:
        ordered = sorted(set(values))
        if map_classes:
            code_of = _map_codes(ordered, map_classes, spec, reporter)
            return ClassTable.build(
                code_of.values(),
                names={code_of[v]: map_classes[code_of[v]] for v in ordered},
                colors={code_of[v]: colour_for(v) for v in ordered if colour_for(v)},
            ), code_of.__getitem__
        code_of = {name: code for code, name in enumerate(ordered, start=1)}
        if map_classes is not None:
            reporter.warning(
                f"the class map has no class table: the names of the class field "
                f"{spec.class_field!r} are numbered in alphabetical order ("
                + ", ".join(f"{code} {name}" for name, code in code_of.items())
                + "); the figures are right only if the map uses these codes")
        table = ClassTable.build(
            code_of.values(),
            names={code_of[v]: names.get(v) or v for v in ordered},
            colors={code_of[v]: colour_for(v) for v in ordered if colour_for(v)},
        )
        return table, code_of.__getitem__
    codes = sorted(set(values))
    bad = [c for c in codes if c < 0 or c >= NODATA_UINT16]
    if bad:
        raise LcfusionError(
            f"class codes must be between 0 and {NODATA_UINT16 - 1}, found {bad[:5]}",
            "CLASS_FIELD")
    table = ClassTable.build(
        codes,
        names={c: names.get(c) for c in codes if names.get(c)},
        colors={c: colour_for(c) for c in codes if colour_for(c)},
    )
    return table, int


def _map_codes(values: list[str], map_classes: dict[int, str], spec: ReferenceSpec,
               reporter: Reporter) -> dict[str, int]:
    """The map's code of each text class value, names compared case- and space-insensitively;
    a value the map does not name is an error naming CLASS_FIELD."""
    code_by_name: dict[str, int] = {}
    for code, name in sorted(map_classes.items()):
        code_by_name.setdefault(normalized_name(name), code)
    unknown = [v for v in values if normalized_name(v) not in code_by_name]
    if unknown:
        listed = ", ".join(f"{code} {name}" for code, name in sorted(map_classes.items()))
        raise LcfusionError(
            f"{', '.join(repr(v) for v in unknown)} "
            f"{'is not a class' if len(unknown) == 1 else 'are not classes'} of the class map "
            f"(its classes: {listed}); the class field {spec.class_field!r} must hold the "
            "map's class names, or choose the field of integer codes", "CLASS_FIELD")
    code_of = {v: code_by_name[normalized_name(v)] for v in values}
    reporter.info(f"the names of the class field {spec.class_field!r} take the codes of the "
                  "class map's table: " + ", ".join(f"{v} = {code}" for v, code in
                                                    code_of.items()))
    return code_of


def _scan_objects(path: Path, grid: Grid, n_objects: int, reporter: Reporter):
    rows, cols, objects = [], [], []
    object_pixels = np.zeros(n_objects + 1, dtype=np.int64)
    with rasterio.open(path) as src:
        for window in iter_windows(grid.width, grid.height, 1024):
            block = src.read(1, window=window)
            r, c = np.nonzero(block)
            if r.size == 0:
                continue
            ids = block[r, c].astype(np.int32)
            rows.append((r + int(window.row_off)).astype(np.int32))
            cols.append((c + int(window.col_off)).astype(np.int32))
            objects.append(ids)
            object_pixels += np.bincount(ids, minlength=n_objects + 1)
    if not rows:
        empty = np.zeros(0, dtype=np.int32)
        return LabelledPixels(empty, empty, empty), object_pixels
    pixels = LabelledPixels(np.concatenate(rows), np.concatenate(cols), np.concatenate(objects))
    reporter.debug(f"{counted(len(pixels), 'labelled pixel')} in "
                   f"{counted(int(np.count_nonzero(object_pixels)), 'object')}")
    return pixels, object_pixels
