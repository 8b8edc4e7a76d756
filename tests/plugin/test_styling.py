"""Default styles, Processing post-processors and PNG quick-looks (plugin.styling/rendering)."""

from __future__ import annotations

import gc
import json
import os

import numpy as np
import pytest
import rasterio
from qgis.core import (
    QgsColorRampShader,
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsSingleBandPseudoColorRenderer,
)
from qgis.PyQt.QtGui import QColor, QImage
from rasterio.crs import CRS
from rasterio.transform import from_origin

from lcfusion.engine.inference.classifying import write_class_map
from lcfusion.engine.inference.tiles import TilePredictor
from lcfusion.engine.io.rasters import Grid
from lcfusion.engine.progress import NullReporter
from lcfusion.engine.reference.classes import ClassTable
from lcfusion.plugin import styling
from lcfusion.plugin.algorithms.bindings.outputs import maps_stacked
from lcfusion.plugin.algorithms.classify_twinns import ClassifyTWINNS
from lcfusion.plugin.rendering import render_map_png
from lcfusion.plugin.styling import (
    AttentionBand,
    ClassMapPostProcessor,
    ConfidencePostProcessor,
    attach_post_processor,
    attention_caption,
    attention_renderer,
    shown_attention_bands,
    write_class_map_style,
    write_confidence_style,
)

CODES = [1, 2, 5]
NAMES = {1: "water", 2: "forest", 5: "urban"}
COLORS = {1: "#1f78b4", 2: "#33a02c", 5: "#e31a1c"}
NODATA = 255
ORIGIN = (500000.0, 5000000.0)  # UTM 33N, 10 m pixels
PIXEL = 10.0


class StripesPredictor(TilePredictor):
    """Vertical stripes of the three classes, each 10 pixels wide, the last class first."""

    tile_size = 128

    def load(self, reader, core):
        return core

    def infer(self, tile):
        cols = np.arange(int(tile.col_off), int(tile.col_off + tile.width))
        index = (2 - cols // 10 % 3)[None, None, :].repeat(int(tile.height), axis=1)
        probs = (np.arange(3)[:, None, None] == index).astype(np.float32)
        return probs, np.ones(probs.shape[1:], dtype=bool)


@pytest.fixture
def classes() -> ClassTable:
    return ClassTable.build(CODES, NAMES, COLORS)


def _write_tif(path, data: np.ndarray, nodata) -> str:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=data.dtype.name,
        crs="EPSG:32633",
        nodata=nodata,
        transform=from_origin(ORIGIN[0], ORIGIN[1], PIXEL, PIXEL),
    ) as dst:
        dst.write(data, 1)
    return str(path)


@pytest.fixture
def class_map(tmp_path) -> str:
    """20x20: water top-left, forest right half, urban bottom-left, a 3x3 nodata corner."""
    data = np.full((20, 20), 1, np.uint8)
    data[:, 10:] = 2
    data[10:, :10] = 5
    data[:3, :3] = NODATA
    return _write_tif(tmp_path / "map.tif", data, NODATA)


@pytest.fixture
def confidence_map(tmp_path) -> str:
    """20x20 float32 ramp from 0 (top-left) to 1 (bottom-right)."""
    rows, cols = np.mgrid[0:20, 0:20]
    return _write_tif(tmp_path / "confidence.tif", ((rows + cols) / 38).astype(np.float32), None)


@pytest.fixture
def reference_polygons(tmp_path) -> str:
    x0, y0 = ORIGIN
    ring = [
        [x0 + 120, y0 - 120],
        [x0 + 180, y0 - 120],
        [x0 + 180, y0 - 180],
        [x0 + 120, y0 - 180],
        [x0 + 120, y0 - 120],
    ]
    collection = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}},
        "features": [
            {
                "type": "Feature",
                "properties": {"code": 2},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        ],
    }
    path = tmp_path / "reference.geojson"
    path.write_text(json.dumps(collection))
    return str(path)


def _block_color(layer: QgsRasterLayer, row: int, col: int) -> QColor:
    """The colour the layer's renderer gives pixel (row, col) of a 20x20 raster."""
    block = layer.renderer().block(1, layer.extent(), 20, 20)
    return block.image().pixelColor(col, row)


def _leftovers(folder, *expected: str) -> set[str]:
    """Files in `folder` other than `expected` and GDAL's statistics sidecars."""
    return {
        name
        for name in os.listdir(folder)
        if name not in expected and not name.endswith(".aux.xml")
    }


def _pixels(png: str) -> np.ndarray:
    image = QImage(png).convertToFormat(QImage.Format_RGB32)
    ptr = image.constBits()
    ptr.setsize(image.sizeInBytes())
    rows = np.frombuffer(ptr, np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)
    bgr = rows[:, : image.width(), :3].astype(np.int32)
    return (bgr[..., 2] << 16) | (bgr[..., 1] << 8) | bgr[..., 0]


def _rgb(color: str) -> int:
    return int(color.lstrip("#"), 16)


def test_class_map_style_is_the_default_style(class_map, classes):
    qml = write_class_map_style(class_map, classes)

    assert qml == class_map[: -len(".tif")] + ".qml"
    assert os.path.isfile(qml)
    layer = QgsRasterLayer(class_map, "map")
    assert layer.isValid()
    assert layer.styleURI() == qml
    renderer = layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    assert renderer.usesBands() == [1]
    assert [(int(c.value), c.color.name(), c.label) for c in renderer.classes()] == [
        (code, COLORS[code], NAMES[code]) for code in CODES
    ]


def test_an_engine_cog_class_map_is_styled_georeferenced_and_has_pyramids(tmp_path, classes):
    """The class map as the engine writes it with the COG option (overviews, 8-bit palette)
    takes the style and stays on its grid; QGIS uses its overviews as pyramids."""
    grid = Grid(CRS.from_epsg(32633).to_wkt(), (ORIGIN[0], PIXEL, 0.0, ORIGIN[1], 0.0, -PIXEL),
                300, 280)
    class_map = tmp_path / "map.tif"
    write_class_map(StripesPredictor(), None, grid, classes, class_map, None, NullReporter(),
                    cog=True)
    write_class_map_style(str(class_map), classes)
    layer = QgsRasterLayer(str(class_map), "map")
    assert layer.isValid() and layer.crs().authid() == "EPSG:32633"
    extent = layer.extent()
    assert (extent.xMinimum(), extent.yMaximum()) == ORIGIN
    assert (extent.width(), extent.height()) == (300 * PIXEL, 280 * PIXEL)
    assert layer.dataProvider().hasPyramids()
    renderer = layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    assert [(int(c.value), c.label) for c in renderer.classes()] == [
        (code, NAMES[code]) for code in CODES]
    assert _block_color(layer, 0, 0).name() == COLORS[5]


def test_class_map_nodata_is_transparent(class_map, classes):
    write_class_map_style(class_map, classes)
    layer = QgsRasterLayer(class_map, "map")

    assert layer.dataProvider().sourceNoDataValue(1) == NODATA
    assert _block_color(layer, 0, 0).alpha() == 0
    assert _block_color(layer, 5, 5).name() == COLORS[1]
    assert _block_color(layer, 15, 15).name() == COLORS[2]
    assert _block_color(layer, 15, 5).name() == COLORS[5]
    assert _block_color(layer, 15, 5).alpha() == 255


def test_confidence_style_spans_zero_to_one(confidence_map):
    qml = write_confidence_style(confidence_map)

    assert qml == confidence_map[: -len(".tif")] + ".qml"
    layer = QgsRasterLayer(confidence_map, "confidence")
    renderer = layer.renderer()
    assert isinstance(renderer, QgsSingleBandPseudoColorRenderer)
    assert (renderer.classificationMin(), renderer.classificationMax()) == (0.0, 1.0)
    ramp = renderer.shader().rasterShaderFunction()
    assert ramp.colorRampType() == QgsColorRampShader.Interpolated
    items = ramp.colorRampItemList()
    assert [items[0].value, items[-1].value] == [0.0, 1.0]
    assert items[0].label and items[-1].label
    low, high = _block_color(layer, 0, 0), _block_color(layer, 19, 19)
    assert (low.name(), high.name()) == (items[0].color.name(), items[-1].color.name())
    assert low.lightness() < high.lightness()


def _loaded_layer(path: str, project: QgsProject) -> tuple[QgsRasterLayer, QgsProcessingContext]:
    """A layer as Processing loads an output: no default style yet, registered in a context."""
    layer = QgsRasterLayer(path, "out", "gdal", QgsRasterLayer.LayerOptions(False))
    project.addMapLayer(layer)
    context = QgsProcessingContext()
    context.setProject(project)
    context.addLayerToLoadOnCompletion(
        path, QgsProcessingContext.LayerDetails("out", project, "OUTPUT")
    )
    return layer, context


def _run_post_processor(context: QgsProcessingContext, path: str, layer: QgsRasterLayer):
    gc.collect()  # the Python object must survive without a caller-held reference
    processor = context.layerToLoadOnCompletionDetails(path).postProcessor()
    processor.postProcessLayer(layer, context, QgsProcessingFeedback())


def attention_bands(*bands: tuple[str, float, float, float]) -> list[AttentionBand]:
    """Bands of (source, mean, minimum, maximum) as the engine lists them."""
    return AttentionBand.from_engine([
        {"tags": {"LCFUSION_SOURCE": source, "LCFUSION_DATE": f"date {k}"}, "mean": mean,
         "min": minimum, "max": maximum}
        for k, (source, mean, minimum, maximum) in enumerate(bands, start=1)])


def test_attention_shows_the_dates_most_above_an_even_share_of_their_source(confidence_map):
    """S2's first date has the largest mean weight (0.7), but of 2 dates; S1's first (0.4 of
    4 dates) stands out more. The three share a stretch from their lowest to their highest
    weight. A map of one date is shown with the 0..1 ramp."""
    shown = shown_attention_bands(attention_bands(
        ("S1", 0.4, 0.3, 0.5), ("S1", 0.2, 0.15, 0.3), ("S1", 0.2, 0.1, 0.3),
        ("S1", 0.2, 0.1, 0.3), ("S2", 0.7, 0.6, 0.8), ("S2", 0.3, 0.2, 0.4)))
    assert [band.number for band in shown] == [1, 5, 2]
    assert attention_caption(shown) == "R S1 date 1, G S2 date 5, B S1 date 2; 0.15–0.80"

    shown = shown_attention_bands(attention_bands(("S2", 1.0, 1.0, 1.0)))
    assert attention_caption(shown) == "S2 date 1"
    renderer = attention_renderer(QgsRasterLayer(confidence_map, "one date"), shown)
    assert isinstance(renderer, QgsSingleBandPseudoColorRenderer)
    assert (renderer.classificationMin(), renderer.classificationMax()) == (0.0, 1.0)


def test_class_map_post_processor_styles_the_loaded_layer(class_map, classes):
    project = QgsProject()
    layer, context = _loaded_layer(class_map, project)
    assert not isinstance(layer.renderer(), QgsPalettedRasterRenderer)

    assert attach_post_processor(context, class_map, ClassMapPostProcessor.create(classes))
    _run_post_processor(context, class_map, layer)

    renderer = project.mapLayer(layer.id()).renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    assert [int(c.value) for c in renderer.classes()] == CODES
    assert [c.label for c in renderer.classes()] == [NAMES[code] for code in CODES]


def test_confidence_post_processor_styles_the_loaded_layer(confidence_map):
    project = QgsProject()
    layer, context = _loaded_layer(confidence_map, project)

    assert attach_post_processor(context, confidence_map, ConfidencePostProcessor.create())
    _run_post_processor(context, confidence_map, layer)

    renderer = layer.renderer()
    assert isinstance(renderer, QgsSingleBandPseudoColorRenderer)
    assert (renderer.classificationMin(), renderer.classificationMax()) == (0.0, 1.0)


def test_a_run_s_maps_load_with_the_class_map_on_top(class_map, confidence_map, classes,
                                                      tmp_path):
    """Processing loads outputs in the order of their paths, each on top: here the class map
    first, so its confidence map would cover it."""
    project = QgsProject()
    other = QgsRasterLayer(confidence_map, "loaded before")
    project.addMapLayer(other)
    context = QgsProcessingContext()
    context.setProject(project)
    processors = {class_map: ClassMapPostProcessor.create(classes),
                  confidence_map: ConfidencePostProcessor.create()}
    for path, processor in processors.items():
        context.addLayerToLoadOnCompletion(
            path, QgsProcessingContext.LayerDetails(path, project, "OUTPUT"))
        processor.stack = [class_map, confidence_map]
        assert attach_post_processor(context, path, processor)
    for path in processors:
        layer = QgsRasterLayer(path, path, "gdal", QgsRasterLayer.LayerOptions(False))
        project.addMapLayer(layer)
        _run_post_processor(context, path, layer)
    assert [node.name() for node in project.layerTreeRoot().children()] == [
        class_map, confidence_map, "loaded before"]


def test_the_class_map_is_stacked_over_the_attention_and_confidence_maps():
    algorithm = ClassifyTWINNS()
    algorithm.initAlgorithm({})
    written = {"OUTPUT_ATTENTION": "a.tif", "OUTPUT": "m.tif", "OUTPUT_CONFIDENCE": "c.tif"}
    assert maps_stacked(algorithm, written) == ["m.tif", "c.tif", "a.tif"]
    assert maps_stacked(algorithm, {"OUTPUT": "m.tif", "OUTPUT_CONFIDENCE": None}) == ["m.tif"]


def test_attach_post_processor_ignores_outputs_not_loaded(classes):
    context = QgsProcessingContext()
    assert not attach_post_processor(context, "/nowhere/map.tif", ClassMapPostProcessor(classes))
    assert not context.willLoadLayerOnCompletion("/nowhere/map.tif")


def test_render_map_png_shows_classes_legend_and_overlay(
    tmp_path, class_map, classes, reference_polygons
):
    write_class_map_style(class_map, classes)
    png = str(tmp_path / "map.png")

    assert render_map_png(class_map, png, "Land cover", reference_polygons, width_px=900) == png

    image = QImage(png)
    assert (image.width(), image.format() != QImage.Format_Invalid) == (900, True)
    pixels = _pixels(png)
    colors, counts = np.unique(pixels, return_counts=True)
    present = dict(zip(colors.tolist(), counts.tolist(), strict=True))
    assert len(present) > 10  # not a blank or uniform image
    for code in CODES:
        assert present.get(_rgb(COLORS[code]), 0) > 1000, NAMES[code]
    assert present.get(0x000000, 0) > 500  # text, frames, outlines, scale bar
    # The legend sits right of the map, where the map itself has no water or urban pixels.
    legend_strip = pixels[:, int(0.8 * pixels.shape[1]) :]
    for code in CODES:
        assert (legend_strip == _rgb(COLORS[code])).sum() > 50, f"legend lacks {NAMES[code]}"
    assert _leftovers(tmp_path, "map.tif", "map.qml", "map.png", "reference.geojson") == set()


def test_render_map_png_of_a_confidence_map(tmp_path, confidence_map):
    write_confidence_style(confidence_map)
    png = str(tmp_path / "confidence.png")

    render_map_png(confidence_map, png, "Confidence", width_px=600)

    pixels = _pixels(png)
    assert pixels.shape[1] == 600
    assert len(np.unique(pixels)) > 50  # a colour ramp, not flat colours


def test_writes_leave_no_temporary_files(tmp_path, class_map, confidence_map, classes):
    for _ in range(2):  # overwriting goes through the same temporary-file path
        write_class_map_style(class_map, classes)
        write_confidence_style(confidence_map)

    assert _leftovers(tmp_path, "map.tif", "map.qml", "confidence.tif", "confidence.qml") == set()


def test_missing_or_unreadable_raster_is_a_clear_error(tmp_path, classes):
    missing = str(tmp_path / "missing.tif")
    with pytest.raises(FileNotFoundError, match="raster not found: .*missing.tif"):
        write_class_map_style(missing, classes)
    with pytest.raises(FileNotFoundError, match="missing.tif"):
        render_map_png(missing, str(tmp_path / "missing.png"), "x")

    garbage = tmp_path / "garbage.tif"
    garbage.write_text("not a raster")
    with pytest.raises(OSError, match="cannot open raster .*garbage.tif"):
        write_confidence_style(str(garbage))

    assert sorted(os.listdir(tmp_path)) == ["garbage.tif"]


def test_confidence_ramp_falls_back_when_the_style_lacks_viridis(monkeypatch, confidence_map):
    monkeypatch.setattr(styling, "CONFIDENCE_RAMP", "no such ramp")
    layer = QgsRasterLayer(confidence_map, "confidence")

    renderer = styling.confidence_renderer(layer)  # keep it: shader() is owned by it
    items = renderer.shader().rasterShaderFunction().colorRampItemList()

    assert [item.color.name() for item in (items[0], items[5], items[-1])] == [
        "#440154",
        "#21918c",
        "#fde725",
    ]
