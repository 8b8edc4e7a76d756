"""The algorithms' toolbox dialog: Processing's own, with two helps a user expects.

* Choosing the reference layer preselects its class field and class name field (an integer
  or text field named like class / code / label / type, never the feature id), instead of
  the layer's first field, which is the GeoPackage's ``fid``.
  Its colour field is preselected too: a text field named like colour / rgb / hex whose
  values are ``#rrggbb``.
* Choosing a model file fills the inputs with the project's layers that match what the model
  records: one layer per recorded date (the date in the layer's name or file name) with the
  model's bands per date into an empty layer list (for a model without dates, the only layer
  with all its bands), or the only layer of the model's PAN or MS band count (and date, if
  recorded).

Only this dialog changes: the modeler, the batch dialog and ``qgis_process`` take the
parameters as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from osgeo import gdal
from qgis.core import (
    NULL,
    QgsFields,
    QgsMapLayer,
    QgsProcessingContext,
    QgsProcessingParameterMultipleLayers,
    QgsProject,
    QgsProviderRegistry,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QMetaType

from ..engine.errors import LcfusionError
from ..engine.modelfile.header import read_header
from .algorithms.base import EngineAlgorithm
from .algorithms.bindings.modelfile import ModelInputBinding
from .algorithms.bindings.panms import PanMsBinding
from .algorithms.bindings.reference import ReferenceBinding
from .algorithms.bindings.series import SeriesBinding
from .algorithms.bindings.sources import SourceBinding

#: Words of class field names, best first (a field name's word starting with one matches).
CLASS_WORDS = (("class", "klass"), ("landcover", "lulc", "lc", "landuse", "lu", "cover"),
               ("code",), ("label",), ("type", "category", "cat"))
#: Words of class name field names, best first.
NAME_WORDS = (("name", "nom"), ("label",), ("desc",))
#: Words of class colour field names.
COLOR_WORDS = (("colour", "color", "rgb", "hex"),)
HEX_COLOR = re.compile(r"#?[0-9a-fA-F]{6}")
#: Names of feature-id fields, chosen as class field only when nothing else fits.
ID_NAMES = ("fid", "id", "ogc_fid", "objectid", "gid")
INTEGER_TYPES = (QMetaType.Type.Int, QMetaType.Type.LongLong, QMetaType.Type.UInt,
                 QMetaType.Type.ULongLong)


def name_words(field_name: str) -> list[str]:
    """The lower-case words of a field name (``LULC_ID`` -> ``lulc``, ``id``)."""
    return re.findall(r"[a-z]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", field_name).lower())


def word_rank(field_name: str, ranked_words: tuple[tuple[str, ...], ...]) -> int | None:
    """The rank of the best group of `ranked_words` that a word of the name starts with."""
    words = name_words(field_name)
    for rank, group in enumerate(ranked_words):
        if any(word.startswith(start) for word in words for start in group):
            return rank
    return None


def class_field_choice(fields: QgsFields, feature_ids: Iterable[int] = ()) -> str | None:
    """The likeliest class field: an integer or text field named like a class (integers
    first, names of classes after codes), never the layer's feature id (`feature_ids`)."""
    ranked = []
    for index, field in enumerate(fields):
        if index in feature_ids or (field.type() not in INTEGER_TYPES
                                    and field.type() != QMetaType.Type.QString):
            continue
        rank = word_rank(field.name(), CLASS_WORDS)
        if field.name().lower() in ID_NAMES:
            rank = len(CLASS_WORDS) + 1
        names_classes = word_rank(field.name(), NAME_WORDS) is not None
        ranked.append((len(CLASS_WORDS) if rank is None else rank, names_classes,
                       field.type() not in INTEGER_TYPES, index, field.name()))
    return min(ranked)[-1] if ranked else None


def name_field_choice(fields: QgsFields, class_field: str | None) -> str | None:
    """The likeliest field of class names for integer class codes: a text field named like
    a name or label, one that also names the class first; None when there is none."""
    if class_field is None or fields.field(class_field).type() not in INTEGER_TYPES:
        return None
    ranked = []
    for index, field in enumerate(fields):
        rank = word_rank(field.name(), NAME_WORDS)
        if field.type() != QMetaType.Type.QString or rank is None or field.name() == class_field:
            continue
        ranked.append((rank, word_rank(field.name(), CLASS_WORDS) is None, index, field.name()))
    return min(ranked)[-1] if ranked else None


def color_field_choice(layer: QgsVectorLayer, sampled: int = 20) -> str | None:
    """The class colour field: a text field named like colour / rgb / hex whose first
    `sampled` distinct values are all colours written ``#rrggbb``; None when there is none."""
    for index, field in enumerate(layer.fields()):
        if field.type() != QMetaType.Type.QString or word_rank(field.name(), COLOR_WORDS) is None:
            continue
        values = [v for v in layer.uniqueValues(index, sampled) if v not in (None, NULL)]
        if values and all(HEX_COLOR.fullmatch(str(v).strip()) for v in values):
            return field.name()
    return None


def project_rasters() -> list[QgsRasterLayer]:
    return [layer for layer in QgsProject.instance().mapLayers().values()
            if layer.type() == QgsMapLayer.LayerType.RasterLayer and layer.isValid()]


def mentions_date(layer: QgsRasterLayer, date: str) -> bool:
    """Whether the layer's name or file name holds `date` (``2021-01-15`` or ``20210115``)."""
    text = f"{layer.name()} {layer.source()}"
    return date in text or date.replace("-", "") in text


def series_layers(entry: dict, rasters: list[QgsRasterLayer]) -> list[QgsRasterLayer] | None:
    """One layer per date of a recorded series: the only layer with the series' bands per
    date whose name holds the date; None unless every date has exactly one. A series
    recorded without dates takes the only layer stacking all its bands."""
    dates, bands = entry.get("dates") or [], entry.get("bands_per_date")
    if not any(dates):
        return undated_stack(entry, rasters)
    if not all(dates):
        return None
    chosen = []
    for date in dates:
        found = [layer for layer in rasters
                 if layer.bandCount() == bands and mentions_date(layer, date)]
        if len(found) != 1 or found[0] in chosen:
            return None
        chosen.append(found[0])
    return chosen


def undated_stack(entry: dict, rasters: list[QgsRasterLayer]) -> list[QgsRasterLayer] | None:
    """The only layer with all the bands of a series recorded without dates (dates x bands
    per date), narrowed to those with the recorded band names when several have as many."""
    bands = (entry.get("n_dates") or 0) * (entry.get("bands_per_date") or 0)
    found = [layer for layer in rasters if layer.bandCount() == bands]
    names = entry.get("band_names") or []
    if len(found) > 1 and names:
        found = [layer for layer in found if band_descriptions(layer)[:len(names)] == names]
    return found if len(found) == 1 else None


def band_descriptions(layer: QgsRasterLayer) -> list[str]:
    """The band descriptions of a raster layer (empty strings where it has none), from its
    provider where QGIS offers them (later releases than 3.22), else from GDAL."""
    provider, numbers = layer.dataProvider(), range(1, layer.bandCount() + 1)
    if hasattr(provider, "bandDescription"):
        return [provider.bandDescription(band) for band in numbers]
    path = QgsProviderRegistry.instance().decodeUri(layer.providerType(),
                                                    layer.source()).get("path", "")
    dataset = gdal.OpenEx(path, gdal.OF_RASTER) if path else None
    if dataset is None or dataset.RasterCount != layer.bandCount():
        return ["" for _ in numbers]
    return [dataset.GetRasterBand(band).GetDescription() for band in numbers]


def single_layer(entry: dict, bands: int, rasters: list[QgsRasterLayer]
                 ) -> QgsRasterLayer | None:
    """The only layer with `bands` bands (and the recorded date, if any)."""
    dates = [date for date in entry.get("dates") or [] if date]
    found = [layer for layer in rasters if layer.bandCount() == bands
             and all(mentions_date(layer, date) for date in dates)]
    return found[0] if len(found) == 1 else None


def model_inputs(bindings: list, inputs: dict, rasters: list[QgsRasterLayer]
                 ) -> dict[str, list[QgsRasterLayer]]:
    """Parameter -> the project's layers that match what the model records of its inputs."""
    found: dict[str, list[QgsRasterLayer]] = {}
    for binding in bindings:
        if isinstance(binding, SourceBinding):
            found.update(model_inputs(binding.inputs.get(inputs.get(binding.key), []), inputs,
                                      rasters))
        elif isinstance(binding, SeriesBinding) and binding.key in inputs:
            layers = series_layers(inputs[binding.key], rasters)
            if layers:
                found[binding.layers] = layers
        elif isinstance(binding, PanMsBinding) and "pan" in inputs and "ms" in inputs:
            for name, entry, bands in ((binding.pan, inputs["pan"], 1),
                                       (binding.ms, inputs["ms"], inputs["ms"].get("bands"))):
                layer = single_layer(entry, bands, rasters)
                if layer is not None:
                    found[name] = [layer]
    return found


def algorithm_dialog(alg: EngineAlgorithm, parent=None):
    """Processing's algorithm dialog of `alg`, with the class fields preselected and the
    inputs filled from the chosen model."""
    from processing.gui.AlgorithmDialog import AlgorithmDialog  # QGIS's Processing plugin

    dialog = AlgorithmDialog(alg, parent=parent)
    dialog.lcfusion_hooks = DialogHooks(dialog)  # lives as long as the dialog
    return dialog


class DialogHooks:
    """Reacts to the choices in an algorithm dialog (`AlgorithmDialog`)."""

    def __init__(self, dialog) -> None:
        self.dialog = dialog
        self.context = QgsProcessingContext()
        self.context.setProject(QgsProject.instance())
        alg = dialog.algorithm()
        wrappers = dialog.mainWidget().wrappers
        for binding in alg.bindings:
            if isinstance(binding, ReferenceBinding) and binding.layer in wrappers:
                wrappers[binding.layer].widgetValueHasChanged.connect(
                    lambda _wrapper, b=binding: self.preselect_fields(b))
                self.preselect_fields(binding)
            if isinstance(binding, ModelInputBinding) and binding.name in wrappers:
                wrappers[binding.name].widgetValueHasChanged.connect(
                    lambda _wrapper, b=binding: self.fill_from_model(b))

    def value(self, name: str):
        return self.dialog.mainWidget().wrappers[name].parameterValue()

    def preselect_fields(self, binding: ReferenceBinding) -> None:
        """Choose the class, name and colour fields of the reference layer just chosen."""
        layer = self.dialog.algorithm().parameterAsVectorLayer(
            {binding.layer: self.value(binding.layer)}, binding.layer, self.context)
        if not isinstance(layer, QgsVectorLayer):
            return
        wrappers = self.dialog.mainWidget().wrappers
        class_field = class_field_choice(layer.fields(), layer.primaryKeyAttributes())
        if class_field:
            wrappers[binding.class_field].setParameterValue(class_field, self.context)
        name_field = name_field_choice(layer.fields(), class_field)
        if binding.name_field in wrappers:
            wrappers[binding.name_field].setParameterValue(name_field, self.context)
        if binding.color_field in wrappers:
            wrappers[binding.color_field].setParameterValue(color_field_choice(layer),
                                                            self.context)

    def fill_from_model(self, binding: ModelInputBinding) -> None:
        """Fill the inputs with the project's layers that match the model's inputs, and say
        which in the dialog's message bar."""
        path = self.value(binding.name)
        try:
            metadata = read_header(path, binding.name).metadata if path else None
        except (LcfusionError, OSError):
            return  # the dialog's check names the problem on Run
        if not metadata or metadata.get("family") != binding.family:
            return
        wrappers = self.dialog.mainWidget().wrappers
        filled = []
        found = model_inputs(self.dialog.algorithm().bindings, metadata.get("inputs") or {},
                             project_rasters())
        for name, layers in found.items():
            multiple = isinstance(self.dialog.algorithm().parameterDefinition(name),
                                  QgsProcessingParameterMultipleLayers)
            # A layer list the user filled is kept; a single layer's box is never empty (it
            # shows the project's first layer), so it takes the one layer that matches.
            if name not in wrappers or (multiple and self.value(name)):
                continue
            ids = [layer.id() for layer in layers]
            wrappers[name].setParameterValue(ids if multiple else ids[0], self.context)
            filled.append(f"{self.dialog.algorithm().parameterDefinition(name).description()}: "
                          + ", ".join(layer.name() for layer in layers))
        if filled:
            self.dialog.messageBar().pushInfo("", "Filled from the model's inputs — "
                                       + "; ".join(filled))
