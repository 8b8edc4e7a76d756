"""The sample points of an area estimate: `SamplePointsBinding` writes the points the engine
drew (stratum, mapped class, an empty reference field); `LabelledPointsBinding` sends the
labelled points, in the class map's CRS, with their reference class."""

from __future__ import annotations

from dataclasses import dataclass

from qgis.core import (
    NULL,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingException,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QMetaType

from ....engine.wording import counted
from ...qt_compat import field_type
from .binding import Binding
from .reference import written_layer

#: The fields of the sample layer; users fill REFERENCE_FIELD.
STRATUM_FIELD, MAP_FIELD, NAME_FIELD, REFERENCE_FIELD = (
    "stratum", "map_class", "class_name", "reference")


def sample_fields() -> QgsFields:
    fields = QgsFields()
    fields.append(QgsField("point_id", field_type(QMetaType.Type.Int)))
    fields.append(QgsField(STRATUM_FIELD, field_type(QMetaType.Type.Int)))
    fields.append(QgsField(MAP_FIELD, field_type(QMetaType.Type.Int)))
    fields.append(QgsField(NAME_FIELD, field_type(QMetaType.Type.QString)))
    fields.append(QgsField(REFERENCE_FIELD, field_type(QMetaType.Type.Int)))
    return fields


@dataclass
class SamplePointsBinding(Binding):
    """The sample drawn by the engine, written to the point sink after a successful run."""

    name: str = "OUTPUT"
    map_parameter: str = "INPUT"

    def to_job(self, alg, parameters, context, feedback, job):
        return None

    def finish(self, alg, parameters, context, feedback, engine_outputs):
        points = engine_outputs.get("POINTS")
        if points is None:
            return
        names = {c["code"]: c["name"] for c in engine_outputs.get("CLASSES", [])}
        layer = alg.parameterAsRasterLayer(parameters, self.map_parameter, context)
        fields = sample_fields()
        sink, destination = alg.parameterAsSink(parameters, self.name, context, fields,
                                                QgsWkbTypes.Type.Point, layer.crs())
        if sink is None:
            raise QgsProcessingException(alg.invalidSinkError(parameters, self.name))
        failed = 0
        for number, (x, y, code) in enumerate(points, start=1):
            feature = QgsFeature(fields)
            feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(x, y)))
            feature.setAttributes([number, code, code, names.get(code, f"class {code}"), NULL])
            failed += not sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert)
        error = sink.lastError()
        del sink  # closes the layer's file
        engine_outputs[self.name] = written_layer(alg, self.name, destination, failed, error,
                                                  counted(len(points), "point"), "layer")
        feedback.pushInfo(f"Sample points: {counted(len(points), 'point')} written to "
                          f"{destination}; fill their '{REFERENCE_FIELD}' field with the "
                          "reference class code, then run Area estimates and accuracy.")


def reference_code(value, field_name: str, feature_id: int) -> int | None:
    """The integer class code of a reference value; None when it is empty."""
    if value is None or value == NULL or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number.is_integer():
        raise QgsProcessingException(
            f"Reference class field [REFERENCE_FIELD]: feature {feature_id} has '{value}' in "
            f"'{field_name}'; the field must hold integer class codes (those of the class "
            "map), or stay empty for points not labelled yet.")
    return int(number)


@dataclass
class LabelledPointsBinding(Binding):
    """The sample points and their reference class, sent in the class map's CRS as
    ``inputs.points``: [x, y, code or None, stratum or None] each (the stratum the sample
    design wrote, to check that the map is the one the sample was drawn from)."""

    layer: str = "POINTS"
    field: str = "REFERENCE_FIELD"

    def to_job(self, alg, parameters, context, feedback, job):
        source = alg.parameterAsSource(parameters, self.layer, context)
        if source is None:
            raise QgsProcessingException(alg.invalidSourceError(parameters, self.layer))
        name = alg.parameterAsString(parameters, self.field, context)
        index = source.fields().lookupField(name)
        if index < 0:
            raise QgsProcessingException(alg.where(self.field) + f"the point layer has no "
                                         f"field '{name}'; choose the field of the reference "
                                         "class codes.")
        stratum = source.fields().lookupField(STRATUM_FIELD)
        crs = job.crs or QgsCoordinateReferenceSystem()
        transform = QgsCoordinateTransform(source.sourceCrs(), crs, context.transformContext())
        points, empty = [], 0
        for feature in source.getFeatures():
            if feedback.isCanceled():
                return
            geometry = feature.geometry()
            if geometry.isNull() or geometry.isEmpty():
                empty += 1
                continue
            try:
                geometry.transform(transform)
            except QgsCsException:
                empty += 1
                continue
            point = geometry.asPoint() if not geometry.isMultipart() else \
                geometry.asMultiPoint()[0]
            code = reference_code(feature.attribute(index), name, feature.id())
            drawn_in = feature.attribute(stratum) if stratum >= 0 else None
            points.append([point.x(), point.y(), code,
                           drawn_in if isinstance(drawn_in, int) else None])
        if empty:
            feedback.pushWarning(f"{counted(empty, 'feature')} without a point (or not "
                                 f"projectable to the class map's CRS) left out.")
        job.sections["inputs"]["points"] = points
        feedback.pushInfo(f"Sample points: {counted(len(points), 'point')}, "
                          f"{sum(p[2] is not None for p in points)} labelled in '{name}'.")
