"""Reference polygons: class table, object ids rasterized on a grid, labelled pixels."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from osgeo import gdal, ogr, osr

from .classes import NODATA_UINT16, ClassTable, normalize_color
from .errors import LcfusionError
from .progress import NullReporter, Reporter
from .rasters import Grid, iter_windows, write_profile

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
    #: The column that holds each named field, where the file stores it under another name
    #: (the plugin exports fields under safe names: a field called "fid" would otherwise
    #: become the GeoPackage's feature id).
    columns: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict) -> ReferenceSpec:
        return cls(
            path=str(data["path"]),
            class_field=str(data.get("class_field") or ""),
            layer=data.get("layer") or None,
            name_field=data.get("name_field") or None,
            color_field=data.get("color_field") or None,
            colors={str(k): str(v) for k, v in (data.get("colors") or {}).items()},
            columns={str(k): str(v) for k, v in (data.get("columns") or {}).items()},
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
    """Reference polygons burned on a grid. Object ids are 1..n; 0 means unlabelled."""

    classes: ClassTable
    object_class: np.ndarray
    object_area: np.ndarray
    object_pixels: np.ndarray
    objects_path: Path
    pixels: LabelledPixels
    n_features: int

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


def load_reference(spec: ReferenceSpec, grid: Grid, workdir: Path,
                   reporter: Reporter | None = None) -> Reference:
    """Read the polygons, build the class table and burn object ids on `grid`.

    Pixels are labelled by the pixel-centre rule; where polygons overlap, the later one wins.
    """
    reporter = reporter or NullReporter()
    if not spec.class_field:
        raise LcfusionError("no class field given; choose the field that holds the class "
                            "of each polygon", "CLASS_FIELD")
    source, layer = _open_layer(spec)
    class_index = _field_index(layer, spec, spec.class_field, "CLASS_FIELD")
    name_index = _field_index(layer, spec, spec.name_field, "NAME_FIELD")
    color_index = _field_index(layer, spec, spec.color_field, "COLOR_FIELD")
    field_type = layer.GetLayerDefn().GetFieldDefn(class_index).GetType()
    if field_type not in (*_INTEGER_TYPES, ogr.OFTReal, ogr.OFTString):
        raise LcfusionError(
            f"the class field {spec.class_field!r} must hold integers or text", "CLASS_FIELD")
    transform, target_srs = _transform_to(layer, grid, reporter)

    memory = ogr.GetDriverByName("Memory").CreateDataSource("objects")
    objects_layer = memory.CreateLayer("objects", target_srs, ogr.wkbUnknown)
    objects_layer.CreateField(ogr.FieldDefn("oid", ogr.OFTInteger))
    values, names, colors, areas = [], {}, {}, []
    skipped = Counter()
    n_features = 0
    for feature in layer:
        n_features += 1
        value = _class_value(feature, class_index, field_type, "CLASS_FIELD")
        geometry = feature.GetGeometryRef()
        if value is None:
            skipped["no class value"] += 1
            continue
        if geometry is None or geometry.IsEmpty():
            skipped["no geometry"] += 1
            continue
        geometry = geometry.Clone()
        if transform is not None:
            try:
                geometry.Transform(transform)
            except RuntimeError:
                skipped["cannot be reprojected to the rasters' CRS"] += 1
                continue
        flat = ogr.GT_Flatten(geometry.GetGeometryType())
        if flat not in (ogr.wkbPolygon, ogr.wkbMultiPolygon, ogr.wkbGeometryCollection):
            skipped["not a polygon"] += 1
            continue
        values.append(value)
        areas.append(geometry.GetArea())
        if name_index is not None and feature.IsFieldSetAndNotNull(name_index):
            names.setdefault(value, feature.GetFieldAsString(name_index).strip())
        if color_index is not None and feature.IsFieldSetAndNotNull(color_index):
            colors.setdefault(value, feature.GetFieldAsString(color_index).strip())
        out = ogr.Feature(objects_layer.GetLayerDefn())
        out.SetField("oid", len(values))
        out.SetGeometry(geometry)
        objects_layer.CreateFeature(out)
    del source
    for reason, count in sorted(skipped.items()):
        reporter.warning(f"{count} reference feature(s) skipped: {reason}")
    if not values and n_features and skipped["no class value"] == n_features:
        raise LcfusionError(
            f"the class field {spec.class_field!r} is empty (NULL) in all {n_features} "
            "features; choose the field that holds the class of each polygon", "CLASS_FIELD")
    if not values:
        raise LcfusionError(
            f"none of the {n_features} features has both a polygon and a class value in "
            f"{spec.class_field!r}", "REFERENCE")

    classes, codes_of = _class_table(values, names, colors, spec, field_type, reporter)
    object_class = np.full(len(values) + 1, -1, dtype=np.int32)
    object_class[1:] = [classes.by_code(codes_of(v)).index for v in values]
    object_area = np.zeros(len(values) + 1, dtype=np.float64)
    object_area[1:] = areas

    objects_path = workdir / "reference_objects.tif"
    dtype = "uint32"
    with rasterio.open(objects_path, "w", **write_profile(grid, 1, dtype, 0)):
        pass
    target = gdal.Open(str(objects_path), gdal.GA_Update)
    gdal.RasterizeLayer(target, [1], objects_layer, options=["ATTRIBUTE=oid"])
    target.FlushCache()
    target = None

    pixels, object_pixels = _scan_objects(objects_path, grid, len(values), reporter)
    if len(pixels) == 0:
        extent = objects_layer.GetExtent()
        raise LcfusionError(
            f"none of the {len(values)} polygons overlaps the rasters: the polygons cover "
            f"x {extent[0]:.1f}..{extent[1]:.1f}, y {extent[2]:.1f}..{extent[3]:.1f} but the "
            f"rasters are {grid.describe()}; check that both cover the same area and that the "
            "layer's CRS is right", "REFERENCE")
    missing = int(np.count_nonzero(object_pixels[1:] == 0))
    if missing:
        reporter.info(f"{missing} of {len(values)} polygons cover no pixel centre of the "
                      "rasters and are left out")
    return Reference(classes, object_class, object_area, object_pixels, objects_path, pixels,
                     n_features)


def _class_table(values, names, colors, spec: ReferenceSpec, field_type: int,
                 reporter: Reporter):
    """The class table and a function mapping a field value to its code.

    A class's colour comes from the colour field, else from the layer's style (`spec.colors`),
    else from its name or the default palette (`ClassTable.build`).
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

    if field_type == ogr.OFTString:
        ordered = sorted(set(values))
        code_of = {name: code for code, name in enumerate(ordered, start=1)}
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
    reporter.debug(f"{len(pixels)} labelled pixels in {np.count_nonzero(object_pixels)} objects")
    return pixels, object_pixels
