"""PNG quick-looks of result rasters: map, title, legend and scale bar from a print layout.

Works headless (any initialised QgsApplication); uses a private QgsProject so the user's
project is left untouched.
"""

from __future__ import annotations

import os

from qgis.core import (
    QgsColorRampLegendNode,
    QgsFillSymbol,
    QgsLayerTreeLayer,
    QgsLayoutExporter,
    QgsLayoutItemLabel,
    QgsLayoutItemLegend,
    QgsLayoutItemMap,
    QgsLayoutItemScaleBar,
    QgsLayoutPoint,
    QgsLayoutSize,
    QgsLegendRenderer,
    QgsLegendStyle,
    QgsLineSymbol,
    QgsMapLayerLegendUtils,
    QgsMarkerSymbol,
    QgsPrintLayout,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsScaleBarSettings,
    QgsSimpleLegendNode,
    QgsSingleSymbolRenderer,
    QgsTextFormat,
    QgsUnitTypes,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QSize, QSizeF
from qgis.PyQt.QtGui import QColor, QFont, QImage, QPainter

from ..engine.io.outputs import atomic_output
from .styling import open_raster

#: Name of the overlay in the legend.
OVERLAY_NAME = "reference polygons"

# Page geometry, in millimetres (the layout's units).
_MARGIN = 8.0
_GAP = 6.0  # between map, scale bar and legend
_MAP_MAX = 180.0  # longest side of the map frame
_MAP_MIN = 30.0  # shortest side of the map frame
_WIDE = 1.5  # map frames wider than this aspect get the legend below them
_MAX_COLUMNS = 6
_RAMP_SIZE = (8.0, 40.0)  # continuous colour-ramp legend patch
_TITLE_PT = 18.0
_TEXT_PT = 10.0


def render_map_png(
    raster_path: str,
    png_path: str,
    title: str,
    overlay_vector_path: str | None = None,
    width_px: int = 1400,
) -> str:
    """Render the raster (with its default style) to a PNG `width_px` wide; returns its path.

    An optional vector overlay is drawn as black outlines and listed as "reference polygons".
    """
    if width_px < 100:
        raise ValueError(f"width_px must be at least 100, got {width_px}")
    raster = open_raster(raster_path, default_style=True)
    overlay = _open_overlay(overlay_vector_path) if overlay_vector_path else None

    project = QgsProject()
    project.setCrs(raster.crs())
    project.setEllipsoid("EPSG:7030")
    project.addMapLayers([layer for layer in (raster, overlay) if layer is not None], False)
    layout = QgsPrintLayout(project)
    try:
        _compose(layout, raster, overlay, title)
        _export(layout, png_path, width_px)
    finally:
        del layout  # before the project it refers to
    return png_path


def _open_overlay(path: str) -> QgsVectorLayer:
    """The overlay as black outlines (lines and hollow circles for other geometries)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"overlay not found: {path}")
    layer = QgsVectorLayer(path, OVERLAY_NAME, "ogr")
    if not layer.isValid():
        raise OSError(f"cannot open vector layer {path}")
    geometry = layer.geometryType()
    if geometry == QgsWkbTypes.GeometryType.PolygonGeometry:
        symbol = QgsFillSymbol.createSimple(
            {"style": "no", "outline_color": "0,0,0,255", "outline_width": "0.4"}
        )
    elif geometry == QgsWkbTypes.GeometryType.LineGeometry:
        symbol = QgsLineSymbol.createSimple({"color": "0,0,0,255", "width": "0.4"})
    else:
        symbol = QgsMarkerSymbol.createSimple(
            {"name": "circle", "color": "0,0,0,0", "outline_color": "0,0,0,255", "size": "2"}
        )
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    return layer


def _font(points: float, bold: bool = False) -> QFont:
    font = QFont()
    font.setPointSizeF(points)
    font.setBold(bold)
    return font


def _text_format(points: float, bold: bool = False) -> QgsTextFormat:
    text = QgsTextFormat()
    text.setFont(_font(points, bold))
    text.setSize(points)
    text.setSizeUnit(QgsUnitTypes.RenderUnit.RenderPoints)
    return text


def _compose(
    layout: QgsPrintLayout, raster: QgsRasterLayer, overlay: QgsVectorLayer | None, title: str
) -> None:
    """Title on top, then the map with the scale bar under it; the legend goes to the
    right of the map, or under the scale bar for wide maps. The page is sized to fit."""
    layout.initializeDefaults()
    extent = raster.extent()
    aspect = extent.width() / extent.height() if extent.height() > 0 else 1.0
    if aspect >= 1:
        map_w, map_h = _MAP_MAX, max(_MAP_MAX / aspect, _MAP_MIN)
    else:
        map_w, map_h = max(_MAP_MAX * aspect, _MAP_MIN), _MAP_MAX

    label = _title(layout, title)
    top = _MARGIN + label.sizeWithUnits().height() + _GAP
    map_item = _map(layout, raster, overlay, extent, QgsLayoutSize(map_w, map_h))
    map_item.attemptMove(QgsLayoutPoint(_MARGIN, top))
    scale_bar = _scale_bar(layout, map_item, map_w)
    scale_bar.attemptMove(QgsLayoutPoint(_MARGIN, top + map_h + _GAP))
    bar_bottom = top + map_h + _GAP + scale_bar.sizeWithUnits().height()

    legend = _legend(layout, map_item, raster, overlay)
    if map_w > _WIDE * map_h:
        _fit_columns(legend, map_w)
        legend.attemptMove(QgsLayoutPoint(_MARGIN, bar_bottom + _GAP))
        right = max(map_w, legend.sizeWithUnits().width())
        bottom = bar_bottom + _GAP + legend.sizeWithUnits().height()
    else:
        if legend.sizeWithUnits().height() > bar_bottom - top:
            _set_columns(legend, 2)
        legend.attemptMove(QgsLayoutPoint(_MARGIN + map_w + _GAP, top))
        right = map_w + _GAP + legend.sizeWithUnits().width()
        bottom = max(bar_bottom, top + legend.sizeWithUnits().height())

    page_w = _MARGIN + max(right, label.sizeWithUnits().width()) + _MARGIN
    layout.pageCollection().page(0).setPageSize(QgsLayoutSize(page_w, bottom + _MARGIN))
    label.attemptMove(QgsLayoutPoint(_MARGIN, _MARGIN))


def _title(layout: QgsPrintLayout, text: str) -> QgsLayoutItemLabel:
    label = QgsLayoutItemLabel(layout)
    label.setText(text)
    if hasattr(label, "setTextFormat"):  # QGIS 3.24+, where setFont is deprecated
        label.setTextFormat(_text_format(_TITLE_PT, bold=True))
    else:
        label.setFont(_font(_TITLE_PT, bold=True))
    label.setMargin(0)
    layout.addLayoutItem(label)
    label.adjustSizeToText()
    return label


def _map(
    layout: QgsPrintLayout,
    raster: QgsRasterLayer,
    overlay: QgsVectorLayer | None,
    extent: QgsRectangle,
    size: QgsLayoutSize,
) -> QgsLayoutItemMap:
    map_item = QgsLayoutItemMap(layout)
    map_item.setCrs(raster.crs())
    map_item.setLayers([layer for layer in (overlay, raster) if layer is not None])
    map_item.setFrameEnabled(True)
    map_item.setBackgroundColor(QColor("white"))
    layout.addLayoutItem(map_item)
    map_item.attemptResize(size)
    # A new map item has no extent: zoomToExtent() alone leaves it empty (NaN scale), and
    # setExtent() reshapes the frame to the extent's aspect, so restore the size after it.
    map_item.setExtent(extent)
    map_item.attemptResize(size)
    map_item.zoomToExtent(extent)
    return map_item


def _scale_bar(
    layout: QgsPrintLayout, map_item: QgsLayoutItemMap, map_w: float
) -> QgsLayoutItemScaleBar:
    """A two-segment scale bar of round length, in metres or kilometres."""
    scale_bar = QgsLayoutItemScaleBar(layout)
    scale_bar.setStyle("Single Box")
    scale_bar.setLinkedMap(map_item)
    scale_bar.setTextFormat(_text_format(_TEXT_PT))
    layout.addLayoutItem(scale_bar)
    scale_bar.applyDefaultSize(scale_bar.guessUnits())
    scale_bar.setNumberOfSegmentsLeft(0)
    scale_bar.setNumberOfSegments(2)
    scale_bar.setMinimumBarWidth(min(30.0, 0.5 * map_w))
    scale_bar.setMaximumBarWidth(min(60.0, 0.8 * map_w))
    scale_bar.setSegmentSizeMode(QgsScaleBarSettings.SegmentSizeMode.SegmentSizeFitWidth)
    metres = scale_bar.units() == QgsUnitTypes.DistanceUnit.DistanceMeters
    if metres and scale_bar.unitsPerSegment() >= 1000:
        scale_bar.setUnits(QgsUnitTypes.DistanceUnit.DistanceKilometers)
        scale_bar.setUnitLabel("km")
    scale_bar.update()
    return scale_bar


def _legend_font(
    legend: QgsLayoutItemLegend, style: QgsLegendStyle.Style, points: float, bold: bool = False
) -> None:
    """One legend style's text: a text format on QGIS 3.30+, where setStyleFont is deprecated."""
    legend_style = legend.rstyle(style)
    if hasattr(legend_style, "setTextFormat"):
        legend_style.setTextFormat(_text_format(points, bold))
    else:
        legend.setStyleFont(style, _font(points, bold))


def _legend(
    layout: QgsPrintLayout,
    map_item: QgsLayoutItemMap,
    raster: QgsRasterLayer,
    overlay: QgsVectorLayer | None,
) -> QgsLayoutItemLegend:
    """A legend of the raster's classes (no layer heading) and the overlay, if any."""
    legend = QgsLayoutItemLegend(layout)
    legend.setTitle("Legend")
    legend.setLinkedMap(map_item)
    legend.setAutoUpdateModel(False)
    root = legend.model().rootGroup()
    root.removeAllChildren()
    raster_node = root.addLayer(raster)
    QgsLegendRenderer.setNodeLegendStyle(raster_node, QgsLegendStyle.Style.Hidden)
    _tidy_raster_legend(legend, raster_node)
    if overlay is not None:
        root.addLayer(overlay)
    _legend_font(legend, QgsLegendStyle.Style.Title, _TEXT_PT + 2, bold=True)
    _legend_font(legend, QgsLegendStyle.Style.Subgroup, _TEXT_PT)
    _legend_font(legend, QgsLegendStyle.Style.SymbolLabel, _TEXT_PT)
    legend.setSymbolWidth(8)
    legend.setSymbolHeight(5)
    legend.setBoxSpace(3)
    legend.setFrameEnabled(True)
    legend.setResizeToContents(True)
    layout.addLayoutItem(legend)
    _measure_legend(legend)
    return legend


def _tidy_raster_legend(legend: QgsLayoutItemLegend, node: QgsLayerTreeLayer) -> None:
    """Drop the "Band 1 (Gray)" caption and give a continuous colour ramp a readable height."""
    model = legend.model()
    keep = []
    for index, legend_node in enumerate(model.layerOriginalLegendNodes(node)):
        if isinstance(legend_node, QgsSimpleLegendNode):
            continue
        if isinstance(legend_node, QgsColorRampLegendNode):
            QgsMapLayerLegendUtils.setLegendNodeSymbolSize(node, index, QSizeF(*_RAMP_SIZE))
        keep.append(index)
    QgsMapLayerLegendUtils.setLegendNodeOrder(node, keep)
    model.refreshLayerLegend(node)


def _measure_legend(legend: QgsLayoutItemLegend) -> None:
    """Size the legend to its contents now, so that the page can be laid out around it.

    A legend does not measure itself before it has been painted once (adjustBoxSize() is
    a no-op until then); painting it on a scratch image triggers the measurement.
    """
    scratch = QImage(8, 8, QImage.Format.Format_ARGB32)
    painter = QPainter(scratch)
    try:
        legend.paint(painter, None, None)
    finally:
        painter.end()
    legend.adjustBoxSize()


def _set_columns(legend: QgsLayoutItemLegend, count: int) -> None:
    legend.setColumnCount(count)
    legend.setSplitLayer(count > 1)
    legend.adjustBoxSize()


def _fit_columns(legend: QgsLayoutItemLegend, max_width: float) -> None:
    """Use the most legend columns (up to `_MAX_COLUMNS`) that keep it within `max_width`."""
    best = 1
    for count in range(2, _MAX_COLUMNS + 1):
        _set_columns(legend, count)
        if legend.sizeWithUnits().width() > max_width:
            break
        best = count
    _set_columns(legend, best)


def _export(layout: QgsPrintLayout, png_path: str, width_px: int) -> None:
    """Render the single page to `png_path`, exactly `width_px` wide, atomically.

    renderPageToImage() is used rather than exportToImage(), which also tries to georeference
    the output through GDAL (the PNG driver refuses and prints an error).
    """
    page = layout.pageCollection().page(0).pageSize()
    size = QSize(width_px, round(width_px * page.height() / page.width()))
    dpi = width_px * 25.4 / page.width()
    image = QgsLayoutExporter(layout).renderPageToImage(0, size, dpi)
    with atomic_output(png_path, "OUTPUT") as tmp_path:
        if image.isNull() or not image.save(str(tmp_path), "PNG"):
            raise OSError(f"cannot write {png_path}")
