"""Exports the inputs the engine needs: raster files and reference polygons."""

from __future__ import annotations

import os
import re
from pathlib import Path

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureRequest,
    QgsFeatureSink,
    QgsFields,
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


def local_raster_path(layer: QgsRasterLayer) -> str | None:
    """The GDAL file behind `layer`, or None when it is not a plain local file."""
    if layer.providerType() != "gdal":
        return None
    parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
    path = parts.get("path") or ""
    if not path or parts.get("layerName") or not os.path.isfile(path):
        return None
    return path


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
    feedback.canceled.connect(block_feedback.cancel, Qt.DirectConnection)
    try:
        error = writer.writeRaster(pipe, provider.xSize(), provider.ySize(), provider.extent(),
                                   layer.crs(), context.transformContext(), block_feedback)
    finally:
        feedback.canceled.disconnect(block_feedback.cancel)
    if error != QgsRasterFileWriter.NoError:
        raise QgsProcessingException(f"Exporting the layer '{layer.name()}' failed (error "
                                     f"{int(error)}).")
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


def export_polygons(source: QgsProcessingFeatureSource, fields: list[str], target: Path,
                    crs: QgsCoordinateReferenceSystem, context: QgsProcessingContext,
                    feedback: QgsProcessingFeedback) -> int:
    """Write the source's polygons with `fields` to a GeoPackage in `crs`; returns the count."""
    source_fields = source.fields()
    kept = QgsFields()
    indices = []
    for name in fields:
        index = source_fields.lookupField(name)
        if index < 0:
            raise QgsProcessingException(f"The field '{name}' is not in the reference layer.")
        kept.append(source_fields.at(index))
        indices.append(index)
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = "reference"
    options.fileEncoding = "UTF-8"
    writer = QgsVectorFileWriter.create(str(target), kept, QgsWkbTypes.MultiPolygon, crs,
                                        context.transformContext(), options)
    if writer.hasError() != QgsVectorFileWriter.NoError:
        raise QgsProcessingException(f"Cannot write {target}: {writer.errorMessage()}")
    request = QgsFeatureRequest().setDestinationCrs(crs, context.transformContext())
    request.setSubsetOfAttributes(indices)
    count = 0
    for feature in source.getFeatures(request):
        if feedback.isCanceled():
            break
        geometry = feature.geometry()
        if geometry.isNull() or geometry.isEmpty():
            continue
        geometry.convertToMultiType()
        out = QgsFeature(kept)
        out.setGeometry(geometry)
        out.setAttributes([feature.attributes()[i] for i in indices])
        writer.addFeature(out, QgsFeatureSink.FastInsert)
        count += 1
    del writer
    return count
