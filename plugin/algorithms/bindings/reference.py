"""The reference polygons and their split: `ReferenceBinding` (the polygons and their class,
name and colour fields, optionally only one split part), `SplitBinding` (the fractions, seed,
method and repeats), `SplitLayerBinding` (the polygons written with the part each went to),
and the fields and helpers they share."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from qgis.core import (
    NULL,
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureRequest,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessingException,
    QgsProcessingFeatureSource,
    QgsProcessingParameterEnum,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QMetaType

from ....engine.wording import counted
from ...export import ExportedPolygons, export_polygons, renderer_colors
from ...qt_compat import field_type
from .binding import Binding

SPLIT_METHODS = (("random", "random per class (seeded)"),
                 ("area", "by area: each class's polygons sorted by area, dealt in turn"))
#: The fields the split layer adds to the reference polygons, and the part of the polygons
#: left out of the split; evaluate's part filter reads the same field.
PART_FIELD, SEED_FIELD, UNUSED_PART = "part", "split_seed", "unused"
PART_CHOICES = ("all", "train", "validation", "test")


@dataclass
class ReferenceBinding(Binding):
    """The reference polygons, exported for the engine; with `part`, the enum parameter that
    keeps only the polygons of one part of a split layer; with `points`, a layer of sample
    points is taken too (each labels the pixel it falls in). `exported` is what the run
    sent."""

    layer: str = "REFERENCE"
    class_field: str = "CLASS_FIELD"
    name_field: str = "NAME_FIELD"
    color_field: str = "COLOR_FIELD"
    part: str | None = None
    points: bool = False
    exported: ExportedPolygons | None = field(default=None, repr=False)

    def chosen_part(self, alg, parameters, context) -> str | None:
        """The part the polygons are filtered on; None for all polygons."""
        if self.part is None:
            return None
        choice = alg.parameterAsEnumString(parameters, self.part, context)
        return None if choice in ("", "all") else choice

    def check(self, alg, parameters, context):
        source = alg.parameterAsSource(parameters, self.layer, context)
        if source is None:
            return None  # Processing reports an invalid source itself
        kind = QgsWkbTypes.geometryType(source.wkbType())
        geometry = QgsWkbTypes.GeometryType
        accepted = (geometry.PolygonGeometry, geometry.UnknownGeometry,
                    *((geometry.PointGeometry,) if self.points else ()))
        if kind not in accepted:
            held = {geometry.PointGeometry: "points", geometry.LineGeometry: "lines"}
            wanted = "polygons or points" if self.points else "polygons"
            return self.layer, (f"'{source.sourceName()}' holds {held.get(kind, 'no geometry')}"
                                f"; choose a layer of {wanted}.")
        if source.featureCount() == 0:
            return self.layer, (f"'{source.sourceName()}' has no features; choose a layer with "
                                "the reference polygons.")
        names = source.fields().names()
        for parameter in (self.class_field, self.name_field, self.color_field):
            field_name = alg.parameterAsString(parameters, parameter, context)
            if field_name and field_name not in names:
                return parameter, (f"The field '{field_name}' is not in the reference layer "
                                   f"(its fields: {', '.join(names) or 'none'}).")
        part = self.chosen_part(alg, parameters, context)
        if part and source.fields().lookupField(PART_FIELD) < 0:
            return self.part, (f"Keeping the {part} polygons needs a field '{PART_FIELD}' in "
                               f"the reference layer (its fields: {', '.join(names) or 'none'});"
                               " choose the split layer a training wrote, or all polygons.")
        return None

    def to_job(self, alg, parameters, context, feedback, job):
        source = alg.parameterAsSource(parameters, self.layer, context)
        if source is None:
            raise QgsProcessingException(alg.invalidSourceError(parameters, self.layer))
        class_field = alg.parameterAsString(parameters, self.class_field, context)
        name_field = alg.parameterAsString(parameters, self.name_field, context) or None
        color_field = alg.parameterAsString(parameters, self.color_field, context) or None
        part = self.chosen_part(alg, parameters, context)
        part_field = source.fields().field(source.fields().lookupField(PART_FIELD)).name() \
            if part else None
        columns = reference_columns(class_field=class_field, name_field=name_field,
                                    color_field=color_field, part_field=part_field)
        target = job.folder / "reference.gpkg"
        crs = job.crs or source.sourceCrs()
        points = self.points and (QgsWkbTypes.geometryType(source.wkbType())
                                  == QgsWkbTypes.GeometryType.PointGeometry)
        exported = self.exported = export_polygons(source, columns, target, crs, context,
                                                   feedback, points=points)
        if exported.count == 0 and not feedback.isCanceled():
            raise QgsProcessingException(alg.where(self.layer) + no_polygons_reason(
                source, crs, bool(exported.unprojectable), points))
        feedback.pushInfo(f"Reference {'points' if points else 'polygons'}: "
                          f"{counted(exported.count, 'feature')} exported in {crs.authid()}.")
        colors = renderer_colors(alg.parameterAsVectorLayer(parameters, self.layer, context),
                                 class_field)
        job.sections["reference"] = {"path": str(target), "layer": "reference",
                                     "class_field": class_field, "name_field": name_field,
                                     "color_field": color_field, "colors": colors,
                                     "part_field": part_field, "part": part,
                                     "columns": columns, "source": source.sourceName(),
                                     "points": points}


def reference_columns(**fields: str | None) -> dict[str, str]:
    """Field -> the safe column it is exported under (``class_field`` -> ``lcfusion_class``),
    for each given field; a field given twice gets its first column."""
    columns: dict[str, str] = {}
    for role, name in fields.items():
        if name and name not in columns:
            columns[name] = f"lcfusion_{role.removesuffix('_field')}"
    return columns


@dataclass
class SplitLayerBinding(Binding):
    """The reference polygons, each with the part of the split it went to and the split's
    seed, written after a successful training when the output is asked for."""

    reference: ReferenceBinding
    name: str = "OUTPUT_SPLIT"

    def to_job(self, alg, parameters, context, feedback, job):
        return None

    def finish(self, alg, parameters, context, feedback, engine_outputs):
        parts, exported = engine_outputs.get("SPLIT_PARTS"), self.reference.exported
        if parts is None or exported is None:
            return
        if len(parts) != exported.count:
            feedback.pushWarning(f"The split layer is not written: the engine split "
                                 f"{len(parts)} polygons, but {exported.count} were exported.")
            return
        source = alg.parameterAsSource(parameters, self.reference.layer, context)
        kept = [i for i, f in enumerate(source.fields())
                if f.name().lower() not in (PART_FIELD, SEED_FIELD)]
        fields = QgsFields()
        for index in kept:
            fields.append(QgsField(source.fields().at(index)))
        if self.fid_field_clashes(alg, parameters, context, source):
            renamed = self.rename_fid_field(fields)
            feedback.pushInfo(f"The split layer's field '{renamed}' holds the reference field "
                              f"'fid': a GeoPackage keeps 'fid' for its unique feature ids.")
        fields.append(QgsField(PART_FIELD, field_type(QMetaType.Type.QString)))
        fields.append(QgsField(SEED_FIELD, field_type(QMetaType.Type.Int)))
        sink, destination = alg.parameterAsSink(parameters, self.name, context, fields,
                                                source.wkbType(), source.sourceCrs())
        if sink is None:
            return  # not asked for
        part_of = dict(zip(exported.written, parts, strict=True))
        seed = engine_outputs.get("SPLIT_SEED")
        written = dict.fromkeys((*PART_CHOICES[1:], UNUSED_PART), 0)
        failed = 0
        skip_checks = QgsProcessingFeatureSource.Flag.FlagSkipGeometryValidityChecks
        for feature in source.getFeatures(QgsFeatureRequest(), skip_checks):
            part = part_of.get(feature.id()) or UNUSED_PART
            out = QgsFeature(fields)
            out.setGeometry(feature.geometry())
            attributes = feature.attributes()
            out.setAttributes([attributes[i] for i in kept] + [part, seed])
            if sink.addFeature(out, QgsFeatureSink.Flag.FastInsert):
                written[part] += 1
            else:
                failed += 1
        error = sink.lastError()
        del sink  # closes the layer's file
        engine_outputs[self.name] = written_layer(
            alg, self.name, destination, failed, error,
            counted(failed + sum(written.values()), "polygon"), "split layer")
        feedback.pushInfo(f"Split layer: {counted(sum(written.values()), 'polygon')} ("
                          + ", ".join(f"{count} {part}" for part, count in written.items()
                                      if count) + f"), seed {seed}.")

    def fid_field_clashes(self, alg, parameters, context,
                          source: QgsProcessingFeatureSource) -> bool:
        """Whether the reference's field 'fid' cannot be written as is: the output is a
        GeoPackage (or SQLite) file, whose 'fid' column holds unique integer feature ids,
        and the field's values are not such ids."""
        index = next((i for i, name in enumerate(source.fields().names())
                      if name.lower() == "fid"), None)
        if index is None:
            return False
        path = alg.parameterAsOutputLayer(parameters, self.name, context) or ""
        if not path.split("|")[0].lower().endswith((".gpkg", ".sqlite")):
            return False
        values = source.uniqueValues(index)
        return (not source.fields().at(index).isNumeric() or any(v in (None, NULL) for v in values)
                or len(values) != source.featureCount()
                or any(float(v) != int(v) for v in values))

    @staticmethod
    def rename_fid_field(fields: QgsFields) -> str:
        """Rename the field 'fid' of `fields` to the first free 'fid_1', 'fid_2', ...;
        returns the new name."""
        index = next(i for i, name in enumerate(fields.names()) if name.lower() == "fid")
        names = {name.lower() for name in fields.names()} | {PART_FIELD, SEED_FIELD}
        renamed = next(f"fid_{n}" for n in range(1, len(names) + 2)
                       if f"fid_{n}" not in names)
        fields.rename(index, renamed)
        return renamed


def absolute_destination(destination: str) -> str:
    """A sink's destination with its file path made absolute (qgis_process shows it as is)."""
    path, _, rest = destination.partition("|")
    if not os.path.exists(path):
        return destination  # a memory layer or a database URI
    return os.path.abspath(path) + ("|" + rest if rest else "")


def written_layer(alg, name: str, destination: str, failed: int, error: str, written: str,
                  layer: str) -> str:
    """The absolute destination of output `name`'s closed sink; when `failed` of the
    `written` features (in words) could not be added (the sink's last `error`), the layer's
    file is removed and an error says so."""
    if failed:
        remove_vector_file(destination)
        raise QgsProcessingException(alg.where(name) + (
            f"{failed} of {written} could not be written to {destination}"
            + (f" ({error})" if error else "") + f"; the {layer} is removed. Choose another "
            "file or format."))
    return absolute_destination(destination)


def remove_vector_file(destination: str) -> None:
    """Remove the file of a sink's `destination`, when it is a file."""
    path = Path(destination.partition("|")[0])
    if path.is_file():
        path.unlink()


def part_parameter() -> QgsProcessingParameterEnum:
    """The optional choice of a split part, by name (PART=test in qgis_process), default all."""
    parameter = QgsProcessingParameterEnum(
        "PART", "Polygons of the split part (field 'part')", options=list(PART_CHOICES),
        defaultValue=PART_CHOICES[0], optional=True)
    parameter.setUsesStaticStrings(True)
    return parameter


def no_polygons_reason(source: QgsProcessingFeatureSource, crs: QgsCoordinateReferenceSystem,
                       unprojectable: bool, points: bool = False) -> str:
    """Why no feature of the reference layer `source` (of points, with `points`) could be
    used."""
    if unprojectable:
        return (f"none of the features of '{source.sourceName()}' can be reprojected from its "
                f"CRS {source.sourceCrs().authid()} to the rasters' CRS {crs.authid()}; check "
                "that the layer's CRS is the one its coordinates are in.")
    shape = "point" if points else "polygon"
    return (f"none of the features of '{source.sourceName()}' has a {shape} (their geometries "
            f"are empty or not {shape}s); choose a layer of {shape}s.")


ENSEMBLE_HELP = """
<p><b>Ensemble of the repeated splits</b> (with <b>Repeat over k seeded splits</b> above 1):
the model file holds the k models, all with the first split's normalisation, and classification
averages their class probabilities (the confidence is the mean probability of the class chosen).
No split's test polygons can score the ensemble (each member but one trained on them): its
accuracy outputs and metrics are the mean ± standard deviation of the members' own.</p>
"""


@dataclass
class SplitBinding(Binding):
    names: tuple[str, str, str] = ("TRAIN_FRACTION", "VALIDATION_FRACTION", "TEST_FRACTION")
    seed: str = "SEED"
    method: str = "SPLIT_METHOD"
    repeats: str = "REPEATS"
    #: The ensemble parameter, where the family has one.
    ensemble: str | None = "ENSEMBLE"

    def fractions(self, alg, parameters, context) -> list[float]:
        return [alg.parameterAsDouble(parameters, n, context) for n in self.names]

    def check(self, alg, parameters, context):
        fractions = self.fractions(alg, parameters, context)
        if abs(sum(fractions) - 1.0) > 1e-6:
            return self.names[0], (f"Train, validation and test fractions must add up to 1 "
                                   f"(they add up to {sum(fractions):g}).")
        if fractions[0] <= 0:
            return self.names[0], "The training fraction must be above 0."
        return None

    def to_job(self, alg, parameters, context, feedback, job):
        train, validation, test = self.fractions(alg, parameters, context)
        job.sections["split"] = {
            "train": train, "validation": validation, "test": test,
            "seed": alg.parameterAsInt(parameters, self.seed, context),
            "method": SPLIT_METHODS[alg.parameterAsEnum(parameters, self.method, context)][0],
            "repeats": alg.parameterAsInt(parameters, self.repeats, context)}
        if self.ensemble:
            job.sections["split"]["ensemble"] = alg.parameterAsBool(parameters, self.ensemble,
                                                                    context)
