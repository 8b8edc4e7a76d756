"""Renderers and default styles (`.qml`) for class maps, confidence maps and attention maps.

A style saved as `<raster>.qml` is what QGIS loads automatically when the raster is opened;
post-processors style the outputs that Processing loads into the project.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from typing import ClassVar, NamedTuple

from qgis.core import (
    QgsColorRamp,
    QgsColorRampLegendNodeSettings,
    QgsColorRampShader,
    QgsContrastEnhancement,
    QgsGradientColorRamp,
    QgsGradientStop,
    QgsLayerTree,
    QgsMapLayer,
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProject,
    QgsRasterLayer,
    QgsRasterRenderer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
    QgsStyle,
)
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtXml import QDomDocument

from ..engine.io.outputs import atomic_output
from ..engine.reference.classes import ClassTable

#: Colour ramp of confidence maps (perceptually uniform), from the QGIS default style.
CONFIDENCE_RAMP = "Viridis"
#: Values at which the confidence ramp is sampled into shader items.
CONFIDENCE_STOPS = tuple(i / 10 for i in range(11))

# Viridis anchors, used when the default style has no "Viridis" ramp.
_VIRIDIS_ANCHORS = (
    (0.0, "#440154"),
    (0.25, "#3b528b"),
    (0.5, "#21918c"),
    (0.75, "#5ec962"),
    (1.0, "#fde725"),
)


def class_map_renderer(layer: QgsRasterLayer, classes: ClassTable) -> QgsPalettedRasterRenderer:
    """A paletted renderer of band 1: one entry per class (code, colour, name)."""
    entries = [
        QgsPalettedRasterRenderer.Class(entry.code, QColor(entry.color), entry.name)
        for entry in classes
    ]
    return QgsPalettedRasterRenderer(layer.dataProvider(), 1, entries)


def confidence_ramp() -> QgsColorRamp:
    """The confidence colour ramp (Viridis), with a built-in fallback."""
    ramp = QgsStyle.defaultStyle().colorRamp(CONFIDENCE_RAMP)
    if ramp is not None:
        return ramp
    (_, first), *middle, (_, last) = _VIRIDIS_ANCHORS
    stops = [QgsGradientStop(value, QColor(color)) for value, color in middle]
    return QgsGradientColorRamp(QColor(first), QColor(last), False, stops)


def confidence_renderer(layer: QgsRasterLayer, band: int = 1
                        ) -> QgsSingleBandPseudoColorRenderer:
    """A continuous, interpolated pseudocolor renderer of `band` over 0..1."""
    ramp = confidence_ramp()
    items = [
        QgsColorRampShader.ColorRampItem(value, ramp.color(value), f"{value:.1f}")
        for value in CONFIDENCE_STOPS
    ]
    color_shader = QgsColorRampShader(0.0, 1.0)
    color_shader.setColorRampType(QgsColorRampShader.Type.Interpolated)
    color_shader.setClassificationMode(QgsColorRampShader.ClassificationMode.Continuous)
    color_shader.setSourceColorRamp(ramp)
    color_shader.setColorRampItemList(items)
    legend = QgsColorRampLegendNodeSettings()
    legend.setUseContinuousLegend(True)
    legend.setMinimumLabel("0 (low)")
    legend.setMaximumLabel("1 (high)")
    color_shader.setLegendSettings(legend)

    raster_shader = QgsRasterShader(0.0, 1.0)
    raster_shader.setRasterShaderFunction(color_shader)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, raster_shader)
    renderer.setClassificationMin(0.0)
    renderer.setClassificationMax(1.0)
    return renderer


class AttentionBand(NamedTuple):
    """A band of an attention map: its number, source ("S1", "S2"), date, and mean, lowest
    and highest weight over the map."""

    number: int
    source: str
    date: str
    mean: float
    minimum: float
    maximum: float

    @classmethod
    def from_engine(cls, bands: Sequence[dict]) -> list[AttentionBand]:
        """The bands as the engine lists them (``OUTPUT_ATTENTION_BANDS``)."""
        return [cls(number, band["tags"]["LCFUSION_SOURCE"], band["tags"]["LCFUSION_DATE"],
                    float(band["mean"]), float(band["min"]), float(band["max"]))
                for number, band in enumerate(bands, start=1)]


def shown_attention_bands(bands: Sequence[AttentionBand]) -> list[AttentionBand]:
    """The bands an attention map shows as red, green and blue (one band, in pseudocolour,
    when it has fewer than three): the dates that drew the most attention over the map
    relative to an even share of their source's (mean weight x the source's number of dates),
    the most first."""
    dates = Counter(band.source for band in bands)
    ranked = sorted(bands, key=lambda b: (-b.mean * dates[b.source], b.number))
    return ranked[:3] if len(ranked) >= 3 else ranked[:1]


def attention_stretch(shown: Sequence[AttentionBand]) -> tuple[float, float]:
    """The weights shown at zero and at full intensity: from the lowest to the highest weight
    of the three dates shown in colour (one scale for the three, so that their colours
    compare, and the whole of it used: weights of many dates vary over a narrow range), 0 to 1
    for a single band."""
    lowest = min((band.minimum for band in shown), default=float("nan"))
    highest = max((band.maximum for band in shown), default=float("nan"))
    if len(shown) >= 3 and 0.0 <= lowest < highest <= 1.0:
        return lowest, highest
    return 0.0, 1.0


def attention_caption(shown: Sequence[AttentionBand]) -> str:
    """What the attention style shows, for the layer name: "R S1 2021-01-07, G ..., B ...;
    0.05–0.42" (the dates in red, green and blue, and the stretch)."""
    if len(shown) < 3:
        return f"{shown[0].source} {shown[0].date}"
    return (", ".join(f"{channel} {band.source} {band.date}"
                      for channel, band in zip("RGB", shown, strict=False))
            + "; {:.2f}–{:.2f}".format(*attention_stretch(shown)))


def attention_renderer(layer: QgsRasterLayer, shown: Sequence[AttentionBand]
                       ) -> QgsRasterRenderer:
    """The bands of `shown` as red, green and blue, each stretched over `attention_stretch`,
    or one band with the confidence ramp over 0..1."""
    if len(shown) < 3:
        return confidence_renderer(layer, shown[0].number)
    provider = layer.dataProvider()
    red, green, blue = (band.number for band in shown)
    lowest, highest = attention_stretch(shown)
    renderer = QgsMultiBandColorRenderer(provider, red, green, blue)
    for band, setter in zip(shown, (renderer.setRedContrastEnhancement,
                                    renderer.setGreenContrastEnhancement,
                                    renderer.setBlueContrastEnhancement), strict=True):
        enhancement = QgsContrastEnhancement(provider.dataType(band.number))
        enhancement.setContrastEnhancementAlgorithm(
            QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum)
        enhancement.setMinimumValue(lowest)
        enhancement.setMaximumValue(highest)
        setter(enhancement)
    return renderer


def open_raster(raster_path: str, default_style: bool = False) -> QgsRasterLayer:
    """Open a raster with GDAL (optionally with its saved default style).

    Raises FileNotFoundError if the file is missing, OSError if GDAL cannot read it.
    """
    if not os.path.isfile(raster_path):
        raise FileNotFoundError(f"raster not found: {raster_path}")
    options = QgsRasterLayer.LayerOptions(loadDefaultStyle=default_style)
    name = os.path.splitext(os.path.basename(raster_path))[0]
    layer = QgsRasterLayer(raster_path, name, "gdal", options)
    if not layer.isValid():
        raise OSError(f"cannot open raster {raster_path}: not a raster GDAL can read")
    return layer


def write_class_map_style(raster_path: str, classes: ClassTable) -> str:
    """Save the class-map style as the raster's default style; returns the `.qml` path."""
    layer = open_raster(raster_path)
    layer.setRenderer(class_map_renderer(layer, classes))
    return save_default_style(layer)


def write_confidence_style(raster_path: str) -> str:
    """Save the confidence style as the raster's default style; returns the `.qml` path."""
    layer = open_raster(raster_path)
    layer.setRenderer(confidence_renderer(layer))
    return save_default_style(layer)


def write_attention_style(raster_path: str, shown: Sequence[AttentionBand]) -> str:
    """Save the attention style as the raster's default style; returns the `.qml` path."""
    layer = open_raster(raster_path)
    layer.setRenderer(attention_renderer(layer, shown))
    return save_default_style(layer)


def save_default_style(layer: QgsMapLayer) -> str:
    """Write the layer's style atomically where QGIS looks for its default style."""
    qml_path = layer.styleURI()
    if not qml_path.endswith(".qml") or not os.path.isdir(os.path.dirname(qml_path) or "."):
        raise OSError(f"no file-based default style location for {layer.source()}")
    document = QDomDocument()
    error = layer.exportNamedStyle(document)
    if error:
        raise OSError(f"cannot export the style of {layer.source()}: {error}")
    with atomic_output(qml_path, "OUTPUT") as tmp_path:
        tmp_path.write_text(document.toString(2), encoding="utf-8")
    return qml_path


def attach_post_processor(
    context: QgsProcessingContext,
    output: str,
    post_processor: QgsProcessingLayerPostProcessorInterface,
    layer_name: str | None = None,
    generic_names: tuple[str, ...] = (),
) -> bool:
    """Style `output` (layer id or destination) when Processing loads it; False if not loaded.

    With `layer_name`, the loaded layer is named so instead of one of `generic_names` (the
    output's description, which Processing names a temporary output after); a name given
    elsewhere (a model's output name) is kept, and QGIS's preference for file names applies
    to files the user named. A post-processor that is not attached is released (see
    `_StylePostProcessor`).
    """
    if not context.willLoadLayerOnCompletion(output):
        _StylePostProcessor._alive.discard(post_processor)
        return False
    details = context.layerToLoadOnCompletionDetails(output)
    details.setPostProcessor(post_processor)
    if layer_name and details.name in ("", *generic_names):
        details.name = layer_name
    return True


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file (as given, or made absolute)."""
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def stack_maps(layer: QgsMapLayer, stack: Sequence[str], project: QgsProject) -> None:
    """Order the loaded maps of one run as in `stack` (their files, the top one first) in the
    layer tree group that holds `layer`, where the topmost of them was. Processing loads the
    outputs in the order of their paths, which put a confidence map over its class map."""
    node = project.layerTreeRoot().findLayer(layer.id())
    if node is None or not stack:
        return
    parent = node.parent()

    def rank(child) -> int | None:
        if not QgsLayerTree.isLayer(child) or child.layer() is None:
            return None
        source = child.layer().source()
        return next((k for k, path in enumerate(stack) if same_file(source, path)), None)

    ours = [child for child in parent.children() if rank(child) is not None]
    ordered = sorted(ours, key=rank)
    if ordered == ours:
        return
    # The clones go in before the nodes leave, so the project never sees its maps' last
    # nodes removed (which would remove the maps).
    parent.insertChildNodes(parent.children().index(ours[0]),
                            [child.clone() for child in ordered])
    for child in ours:
        parent.removeChildNode(child)


class _StylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Base of the post-processors: applies `renderer()` to the loaded raster layer, and puts
    it in its place among the maps of its run (`stack`: their files, the top one first).

    `setPostProcessor` hands the C++ object to QGIS, but nothing keeps the Python object
    alive: once it is garbage-collected, QGIS calls the base class's empty
    `postProcessLayer` and the layer stays unstyled. Instances made with `create()` are
    therefore held in a class-level set until they have run (or were not attached).
    """

    _alive: ClassVar[set[_StylePostProcessor]] = set()
    stack: Sequence[str] = ()

    def renderer(self, layer: QgsRasterLayer) -> QgsRasterRenderer:
        raise NotImplementedError

    def postProcessLayer(
        self, layer: QgsMapLayer, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> None:
        try:
            if isinstance(layer, QgsRasterLayer) and layer.isValid():
                layer.setRenderer(self.renderer(layer))
                layer.triggerRepaint()
                stack_maps(layer, self.stack, context.project() or QgsProject.instance())
            elif feedback is not None:
                feedback.reportError(f"cannot style {layer.name()}: not a valid raster layer")
        finally:
            _StylePostProcessor._alive.discard(self)


class ClassMapPostProcessor(_StylePostProcessor):
    """Gives a loaded class map the paletted renderer of its class table."""

    def __init__(self, classes: ClassTable) -> None:
        super().__init__()
        self.classes = classes

    @classmethod
    def create(cls, classes: ClassTable) -> ClassMapPostProcessor:
        """A post-processor kept alive until QGIS has run it (see `_StylePostProcessor`)."""
        instance = cls(classes)
        _StylePostProcessor._alive.add(instance)
        return instance

    def renderer(self, layer: QgsRasterLayer) -> QgsPalettedRasterRenderer:
        return class_map_renderer(layer, self.classes)


class ConfidencePostProcessor(_StylePostProcessor):
    """Gives a loaded confidence map the 0..1 colour ramp."""

    @classmethod
    def create(cls) -> ConfidencePostProcessor:
        """A post-processor kept alive until QGIS has run it (see `_StylePostProcessor`)."""
        instance = cls()
        _StylePostProcessor._alive.add(instance)
        return instance

    def renderer(self, layer: QgsRasterLayer) -> QgsSingleBandPseudoColorRenderer:
        return confidence_renderer(layer)


class AttentionPostProcessor(_StylePostProcessor):
    """Gives a loaded attention map its red, green and blue dates."""

    def __init__(self, shown: Sequence[AttentionBand]) -> None:
        super().__init__()
        self.shown = list(shown)

    @classmethod
    def create(cls, shown: Sequence[AttentionBand]) -> AttentionPostProcessor:
        """A post-processor kept alive until QGIS has run it (see `_StylePostProcessor`)."""
        instance = cls(shown)
        _StylePostProcessor._alive.add(instance)
        return instance

    def renderer(self, layer: QgsRasterLayer) -> QgsRasterRenderer:
        return attention_renderer(layer, self.shown)
