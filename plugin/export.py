"""Exports the inputs the engine needs: raster files and reference polygons or points."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsFeature,
    QgsFeatureRequest,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeatureSource,
    QgsProcessingFeedback,
    QgsProviderRegistry,
    QgsRasterBlockFeedback,
    QgsRasterFileWriter,
    QgsRasterLayer,
    QgsRasterPipe,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import Qt

from ..engine.wording import counted


def local_raster_path(layer: QgsRasterLayer) -> str | None:
    """The GDAL file behind `layer` (absolute: the engine runs elsewhere), or None when it is
    not a plain local file."""
    if layer.providerType() != "gdal":
        return None
    parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
    path = parts.get("path") or ""
    if not path or parts.get("layerName") or not os.path.isfile(path):
        return None
    return os.path.abspath(path)


def raster_path(layer: QgsRasterLayer, folder: Path, stem: str,
                context: QgsProcessingContext, feedback: QgsProcessingFeedback) -> str:
    """The layer's file, or a GeoTIFF export ``<stem>_<layer name>.tif`` in `folder` for a
    layer that is not a local file (the layer name keeps any date it carries)."""
    path = local_raster_path(layer)
    if path:
        return path
    name = re.sub(r"[^\w.-]+", "_", layer.name(), flags=re.ASCII).strip("_")[:60]
    target = folder / f"{stem}_{name}.tif" if name else folder / f"{stem}.tif"
    feedback.pushInfo(f"Layer '{layer.name()}' is not a local file; exporting it to a temporary "
                      "GeoTIFF first.")
    provider = layer.dataProvider()
    pipe = QgsRasterPipe()
    if not pipe.set(provider.clone()):
        raise QgsProcessingException(f"Cannot read the layer '{layer.name()}' for export.")
    writer = QgsRasterFileWriter(str(target))
    writer.setOutputFormat("GTiff")
    # writeRaster() takes a QgsRasterBlockFeedback, not the Processing feedback. A direct
    # connection: the algorithm may run in a task thread with no event loop of its own.
    block_feedback = QgsRasterBlockFeedback()
    feedback.canceled.connect(block_feedback.cancel, Qt.ConnectionType.DirectConnection)
    if feedback.isCanceled():
        block_feedback.cancel()  # cancelled before the connection: export nothing
    try:
        error = writer.writeRaster(pipe, provider.xSize(), provider.ySize(), provider.extent(),
                                   layer.crs(), context.transformContext(), block_feedback)
    finally:
        feedback.canceled.disconnect(block_feedback.cancel)
    if feedback.isCanceled():
        raise QgsProcessingException("Cancelled: no output was written.")
    if error != QgsRasterFileWriter.WriterError.NoError:
        # {error}, not int(error): on Qt6 the result is an enum.Enum, which int() refuses.
        raise QgsProcessingException(f"Exporting the layer '{layer.name()}' failed (error "
                                     f"{error}).")
    return str(target)


def renderer_colors(layer: QgsVectorLayer | None, class_field: str) -> dict[str, str]:
    """Colours of a categorized renderer on the class field, keyed by the category value."""
    if layer is None:
        return {}
    renderer = layer.renderer()
    if not isinstance(renderer, QgsCategorizedSymbolRenderer):
        return {}
    if renderer.classAttribute() != class_field:
        return {}
    colors = {}
    for category in renderer.categories():
        value = category.value()
        if value is None or category.symbol() is None:
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        colors[str(value)] = category.symbol().color().name()
    return colors


@dataclass
class ExportedPolygons:
    """What `export_polygons` wrote: the number of features, the source ids of those written
    (in the order written), and the ids of those repaired, left out for want of a polygon, or
    left out because they cannot be reprojected."""

    count: int = 0
    written: list[int] = field(default_factory=list)
    repaired: list[int] = field(default_factory=list)
    without_polygon: list[int] = field(default_factory=list)
    unprojectable: list[int] = field(default_factory=list)


def export_polygons(source: QgsProcessingFeatureSource, columns: dict[str, str], target: Path,
                    crs: QgsCoordinateReferenceSystem, context: QgsProcessingContext,
                    feedback: QgsProcessingFeedback, points: bool = False) -> ExportedPolygons:
    """Write the source's polygons (with `points`, its points) to a GeoPackage in `crs`, each
    field of `columns` (source field -> column) under its column's name: invalid polygons
    repaired, the polygons of geometry collections kept, and the user warned of any feature
    repaired or left out.

    Safe column names keep every field name usable: GDAL would take a field called "fid" as
    the feature id, and GeoPackage column names clash when they differ only in case."""
    source_fields = source.fields()
    kept = QgsFields()
    indices = []
    for name, column in columns.items():
        index = source_fields.lookupField(name)
        if index < 0:
            raise QgsProcessingException(f"The field '{name}' is not in the reference layer.")
        exported_field = QgsField(source_fields.at(index))
        exported_field.setName(column)
        kept.append(exported_field)
        indices.append(index)
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = "reference"
    options.fileEncoding = "UTF-8"
    kind = QgsWkbTypes.Type.MultiPoint if points else QgsWkbTypes.Type.MultiPolygon
    writer = QgsVectorFileWriter.create(str(target), kept, kind, crs,
                                        context.transformContext(), options)
    if writer.hasError() != QgsVectorFileWriter.WriterError.NoError:
        raise QgsProcessingException(f"Cannot write {target}: {writer.errorMessage()}")
    transform = QgsCoordinateTransform(source.sourceCrs(), crs, context.transformContext())
    request = QgsFeatureRequest().setSubsetOfAttributes(indices)
    exported = ExportedPolygons()
    # Invalid polygons are repaired below, whatever Processing's invalid-geometry setting.
    skip_checks = QgsProcessingFeatureSource.Flag.FlagSkipGeometryValidityChecks
    for feature in source.getFeatures(request, skip_checks):
        if feedback.isCanceled():
            break
        geometry = (point_parts if points else polygon_parts)(feature.geometry())
        if geometry is not None and not points and not geometry.isGeosValid():
            geometry = polygon_parts(geometry.makeValid())
            if geometry is not None:
                exported.repaired.append(feature.id())
        if geometry is None:
            exported.without_polygon.append(feature.id())
            continue
        if not reprojected(geometry, transform):
            exported.unprojectable.append(feature.id())
            continue
        geometry.convertToMultiType()
        out = QgsFeature(kept)
        out.setGeometry(geometry)
        out.setAttributes([feature.attributes()[i] for i in indices])
        writer.addFeature(out, QgsFeatureSink.Flag.FastInsert)
        exported.count += 1
        exported.written.append(feature.id())
    del writer
    for ids, noun, what in (
            (exported.repaired, "invalid reference polygon", "repaired (Make Valid)"),
            (exported.without_polygon, "reference feature",
             f"without a {'point' if points else 'polygon'} left out"),
            (exported.unprojectable, "reference feature",
             f"that cannot be reprojected to {crs.authid()} left out")):
        if ids:
            feedback.pushWarning(f"{counted(len(ids), noun)} {what}: feature "
                                 f"{'id' if len(ids) == 1 else 'ids'} {listing(ids)}.")
    return exported


def polygon_parts(geometry: QgsGeometry) -> QgsGeometry | None:
    """The polygons of a geometry (those of a geometry collection); None without any."""
    if geometry.isNull() or geometry.isEmpty():
        return None
    if QgsWkbTypes.flatType(geometry.wkbType()) == QgsWkbTypes.Type.GeometryCollection:
        geometry = QgsGeometry(geometry)
        geometry.convertGeometryCollectionToSubclass(QgsWkbTypes.GeometryType.PolygonGeometry)
    if geometry.type() != QgsWkbTypes.GeometryType.PolygonGeometry or geometry.isEmpty():
        return None
    return geometry


def point_parts(geometry: QgsGeometry) -> QgsGeometry | None:
    """The points of a geometry; None without any."""
    if geometry.isNull() or geometry.isEmpty():
        return None
    if geometry.type() != QgsWkbTypes.GeometryType.PointGeometry:
        return None
    return geometry


def reprojected(geometry: QgsGeometry, transform: QgsCoordinateTransform) -> bool:
    """Transform `geometry` in place; False when its coordinates cannot be reprojected (PROJ
    fails, or gives infinite coordinates for points outside the source CRS's range)."""
    try:
        if geometry.transform(transform) != 0:
            return False
    except QgsCsException:
        return False
    box = geometry.boundingBox()
    return all(math.isfinite(value) for value in (box.xMinimum(), box.yMinimum(),
                                                   box.xMaximum(), box.yMaximum()))


def listing(feature_ids: list[int], shown: int = 10) -> str:
    listed = ", ".join(str(i) for i in feature_ids[:shown])
    return listed + (f" and {len(feature_ids) - shown} more" if len(feature_ids) > shown else "")
