"""The base of every lcfusion algorithm: parameters -> engine job -> child process -> outputs.

Algorithms only declare parameters with the ``add_*`` helpers; each helper registers a
binding that knows how its parameter goes into the job, what to check before the run, and
what to do with the engine's outputs afterwards (styling, loading).
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qgis.core import (
    NULL,
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureRequest,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeatureSource,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingUtils,
    QgsRasterLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant
from qgis.PyQt.QtGui import QIcon

from ...engine.compute.profiles import LOCAL, ComputeProfile, find_profile
from ...engine.errors import LcfusionError
from ...engine.io.alignment import align_pan_ms, plan_ms_alignment
from ...engine.io.outputs import check_writable, partial_files
from ...engine.jobs import write_job
from ...engine.modelfile.header import SUFFIX, check_family, read_header
from ...engine.reference.classes import ClassTable
from ...engine.reports.html import FAMILY_NAMES
from ...engine.wording import counted
from ..console import mute_error_copies
from ..engine_process import EngineProcess, EngineRun
from ..environment import engine_environment_problem
from ..export import ExportedPolygons, export_polygons, raster_path, renderer_colors
from ..settings import package_name, plugin_root, profiles_path
from ..styling import (
    ClassMapPostProcessor,
    ConfidencePostProcessor,
    attach_post_processor,
    write_class_map_style,
    write_confidence_style,
)

GROUPS = {"training": "Training", "classification": "Classification", "evaluation": "Evaluation"}
SPLIT_METHODS = (("random", "random per class (seeded)"),
                 ("area", "by area: each class's polygons sorted by area, dealt in turn"))
KEEP_JOBS_ENV = "LCFUSION_KEEP_JOBS"
#: The fields the split layer adds to the reference polygons, and the part of the polygons
#: left out of the split; evaluate's part filter reads the same field.
PART_FIELD, SEED_FIELD, UNUSED_PART = "part", "split_seed", "unused"
PART_CHOICES = ("all", "train", "validation", "test")
REPORT_HELP = """
<h3>Accuracy and report</h3>
<p>The accuracy outputs (OA, Kappa, mean F1) are measured on the pixels of the test polygons.
With <b>Repeat over k seeded splits</b> above 1 the training runs k times, on the splits of
seeds <i>seed</i>, <i>seed</i> + 1, ... (the papers use 10): the outputs are then the mean over
the k splits and the <code>*_STD</code> outputs their standard deviations; the model file kept
is the one trained on the first split and records every run. The <b>Training report</b> (HTML)
shows the learning curves, the test metrics with the confusion matrix (rows = reference,
columns = prediction) and per-class F1, the split summary (polygons and pixels per class in
each part), the repeated splits, the settings used and the time taken.</p>
<p><b>Reference polygons with their split part</b>: every feature of the reference layer, with
its geometry and fields, plus <code>part</code> (<code>train</code>, <code>validation</code>,
<code>test</code>, or <code>unused</code> for a feature left out: no class value, no polygon,
or no pixel on the rasters) and <code>split_seed</code>. With repeated splits it is the first
split's, the one of the model kept. Give it to <i>Evaluate a class map</i> with <b>Polygons of
the split part</b> <code>test</code> to measure any other map on exactly the polygons this model
never saw.</p>
"""
COMPUTE_HELP = """
<h3>Where the training runs</h3>
<p><b>Compute profile</b> names a profile of the compute profiles file (Plugins &gt; Land Cover
Fusion &gt; Settings, or the <code>LCFUSION_PROFILES</code> environment variable):
<code>local</code> (the default) trains in a child process here; an <code>mpi</code> profile runs
<code>mpirun</code> with N ranks on this machine; <code>ssh</code> runs mpirun on a remote host;
<code>slurm</code> submits a batch job (here, or through ssh). For the last three, the training
samples are read here and packed into the job folder (only the blocks of pixels the patches
touch, compressed and checksummed), the folder is copied to the profile's work directory, the
training runs there with progress shown here, and the weights come back, are verified and then
evaluated here on the test polygons. Each rank trains on its share of the samples; the
learning rate is multiplied by the number of ranks (linear scaling rule). A checkpoint is saved
after every epoch: a job that was interrupted resumes from it when it is run again with the
same inputs and profile. Cancel stops the remote job (its process group, or scancel) and
removes its folder unless the profile keeps it.</p>
"""

FILL_HELP = """
<h3>Fill areas without nodata</h3>
<p>Scenes often hold a fill area (0 in every band at the edges of a Landsat or Sentinel-2
footprint, or -9999, 65535) with no nodata value declared. The run warns when it finds one,
with its share and value. <b>Treat this value as nodata (all bands)</b> makes every pixel where
all bands of an input (of a date, for a series) hold that value nodata: no data for the model,
no training samples, and nodata in the class map and the confidence map. Nodata values the
rasters declare are always respected.</p>
"""


def icon(name: str) -> QIcon:
    return QIcon(str(plugin_root() / "resources" / "icons" / name))


@dataclass
class JobDraft:
    """The job being assembled; `crs` is the rasters' CRS, set by the series binding."""

    folder: Path
    sections: dict[str, dict] = field(
        default_factory=lambda: {"inputs": {}, "settings": {}, "outputs": {}})
    crs: QgsCoordinateReferenceSystem | None = None


class Binding(ABC):
    """How one or a few parameters go into a job."""

    def check(self, alg: EngineAlgorithm, parameters: dict,
              context: QgsProcessingContext) -> tuple[str, str] | None:
        """(parameter at fault, message for the user) when the values cannot work, else None."""
        return None

    @abstractmethod
    def to_job(self, alg: EngineAlgorithm, parameters: dict, context: QgsProcessingContext,
               feedback: QgsProcessingFeedback, job: JobDraft) -> None: ...

    def finish(self, alg: EngineAlgorithm, parameters: dict, context: QgsProcessingContext,
               feedback: QgsProcessingFeedback, engine_outputs: dict) -> None:
        """Work on the engine's outputs (styling) after a successful run."""
        return None

    def check_model(self, alg: EngineAlgorithm, parameters: dict, context: QgsProcessingContext,
                    metadata: dict) -> tuple[str, str] | None:
        """(parameter, message) when the inputs do not fit the model described by `metadata`."""
        return None


def series_shape(layers: list, bands_per_date: int) -> tuple[int, int]:
    """(dates, bands per date) of a list of rasters or one stack."""
    if len(layers) == 1 and bands_per_date > 0:
        return layers[0].bandCount() // bands_per_date, bands_per_date
    return len(layers), layers[0].bandCount() if layers else 0


@dataclass
class SeriesBinding(Binding):
    """Time-series layers (+ bands per date), optional mask layers and the gap-fill switch;
    `label` names the series in messages."""

    layers: str = "INPUT"
    bands: str = "BANDS_PER_DATE"
    key: str = "series"
    label: str = "time series"
    masks: str | None = None
    gapfill: str | None = None

    def values(self, alg, parameters, context) -> tuple[list, int]:
        return (alg.parameterAsLayerList(parameters, self.layers, context),
                alg.parameterAsInt(parameters, self.bands, context))

    def check(self, alg, parameters, context):
        layers, bands = self.values(alg, parameters, context)
        if not layers:
            return self.layers, f"Add at least one raster layer to the {self.label}."
        crs = {layer.crs().authid() or layer.crs().toWkt() for layer in layers}
        if len(crs) > 1:
            return self.layers, (f"The {self.label} layers are in different CRSs "
                                 f"({', '.join(sorted(crs))}); reproject them onto one grid "
                                 "first.")
        if len(layers) == 1 and bands and layers[0].bandCount() % bands:
            return self.bands, (f"The stack '{layers[0].name()}' has {layers[0].bandCount()} "
                                f"bands, not a multiple of the bands per date ({bands}).")
        if len(layers) > 1 and bands and bands != layers[0].bandCount():
            return self.bands, ("Bands per date applies to a single multi-date stack; leave it "
                                "at 0 for a list of single-date layers.")
        masks = alg.parameterAsLayerList(parameters, self.masks, context) if self.masks else []
        if masks:
            dates, _ = series_shape(layers, bands)
            mask_bands = sum(layer.bandCount() for layer in masks)
            if mask_bands != dates:
                return self.masks, (f"The mask layers give {counted(mask_bands, 'band')} but "
                                    f"the {self.label} has {counted(dates, 'date')}; give one "
                                    "single-band mask "
                                    "per date, or one stack with a band per date.")
        return None

    def check_model(self, alg, parameters, context, metadata):
        layers, bands = self.values(alg, parameters, context)
        expected = metadata.get("inputs", {}).get(self.key, {})
        if not layers or not expected:
            return None
        dates, per_date = series_shape(layers, bands)
        wanted = (expected.get("n_dates"), expected.get("bands_per_date"))
        if (dates, per_date) == wanted:
            return None
        hint = (f" For a multi-date stack, set Bands per date to {wanted[1]}."
                if len(layers) == 1 and not bands else "")
        return self.layers, (f"The model expects {counted(wanted[0], 'date')} x "
                             f"{counted(wanted[1], 'band')}, but the layers give "
                             f"{counted(dates, 'date')} x {counted(per_date, 'band')}; give the "
                             f"same dates and bands as for training.{hint}")

    def to_job(self, alg, parameters, context, feedback, job):
        layers, bands = self.values(alg, parameters, context)
        paths = [raster_path(layer, job.folder, f"{self.key}_{i:03d}", context, feedback)
                 for i, layer in enumerate(layers)]
        feedback.pushInfo(f"{self.label[0].upper()}{self.label[1:]}, in this order: "
                          + ", ".join(layer.name() for layer in layers))
        if job.crs is None:
            job.crs = layers[0].crs()
        entry = {"paths": paths, "bands_per_date": bands if len(layers) == 1 else None,
                 "names": [layer.name() for layer in layers]}
        if self.masks:
            masks = alg.parameterAsLayerList(parameters, self.masks, context)
            entry["masks"] = [raster_path(layer, job.folder, f"{self.key}_mask_{i:03d}", context,
                                          feedback) for i, layer in enumerate(masks)]
            if masks:
                feedback.pushInfo("Masks (non-zero = cloud), in this order: "
                                  + ", ".join(layer.name() for layer in masks))
        if self.gapfill:
            entry["gapfill"] = alg.parameterAsBool(parameters, self.gapfill, context)
        job.sections["inputs"][self.key] = entry


def layer_transform(layer: QgsRasterLayer) -> tuple[float, float, float, float, float, float]:
    """The GDAL geotransform of a north-up raster layer."""
    extent = layer.extent()
    return (extent.xMinimum(), layer.rasterUnitsPerPixelX(), 0.0, extent.yMaximum(), 0.0,
            -layer.rasterUnitsPerPixelY())


@dataclass
class PanMsBinding(Binding):
    """A single-band PAN layer and an MS layer on a grid a whole number of times coarser.

    `patch_size` names the setting that must be a multiple of the ratio (if any); `align`
    names the parameter that chooses how the MS is put onto the PAN grid (its values:
    `align_choices`, ``model`` for the model's choice)."""

    pan: str = "PAN"
    ms: str = "MS"
    patch_size: str | None = None
    align: str | None = None
    align_choices: tuple[str, ...] = ()

    def layers(self, alg, parameters, context) -> tuple[QgsRasterLayer, QgsRasterLayer]:
        return (alg.parameterAsRasterLayer(parameters, self.pan, context),
                alg.parameterAsRasterLayer(parameters, self.ms, context))

    def method(self, alg, parameters, context) -> str:
        """The chosen MS alignment: ``none``, a resampling method, or ``model``."""
        if not self.align:
            return "none"
        return self.align_choices[alg.parameterAsEnum(parameters, self.align, context)]

    def ratio(self, alg, parameters, context, method: str) -> int:
        """The PAN/MS ratio once the MS is aligned with `method`; LcfusionError when the pair
        cannot be used so."""
        pan, ms = self.layers(alg, parameters, context)
        pan_grid, ms_grid = layer_transform(pan), layer_transform(ms)
        sizes = (pan.width(), pan.height()), (ms.width(), ms.height())
        if method == "none":
            return align_pan_ms(pan_grid, sizes[0], ms_grid, sizes[1]).ratio
        plan = plan_ms_alignment(pan_grid, sizes[0], ms_grid, sizes[1], method)
        aligned = plan.ms_transform or ms_grid
        window = plan.pan_window
        cropped = (pan_grid[0] + window[0] * pan_grid[1], pan_grid[1], 0.0,
                   pan_grid[3] + window[1] * pan_grid[5], 0.0, pan_grid[5])
        return align_pan_ms(cropped, window[2:], aligned, plan.ms_size).ratio

    def check(self, alg, parameters, context):
        pan, ms = self.layers(alg, parameters, context)
        if pan is None or ms is None:
            return None  # Processing reports a missing layer itself
        if pan.bandCount() != 1:
            return self.pan, (f"'{pan.name()}' has {pan.bandCount()} bands; choose a single-band "
                              "panchromatic layer.")
        if pan.crs() != ms.crs():
            return self.ms, (f"CRS mismatch: the PAN is in {pan.crs().authid()} and the MS in "
                             f"{ms.crs().authid()}; warp the MS into the PAN's CRS on a grid "
                             "aligned with the PAN.")
        method = self.method(alg, parameters, context)
        if method == "model":
            return None  # checked against the model's choice in check_model
        try:
            ratio = self.ratio(alg, parameters, context, method)
        except LcfusionError as exc:
            return exc.parameter or self.ms, exc.message[0].upper() + exc.message[1:] + "."
        if self.patch_size:
            size = alg.parameterAsInt(parameters, self.patch_size, context)
            if size % ratio:
                lower = size // ratio * ratio
                return self.patch_size, (
                    f"{size} is not divisible by the PAN/MS ratio {ratio}; use "
                    f"{max(lower, ratio)} or {lower + ratio}.")
        return None

    def check_model(self, alg, parameters, context, metadata):
        pan, ms = self.layers(alg, parameters, context)
        expected = metadata.get("inputs", {}).get("ms", {})
        if ms is None or not expected:
            return None
        if ms.bandCount() != expected.get("bands"):
            return self.ms, (f"The model expects an MS layer of {expected.get('bands')} bands "
                             f"({', '.join(expected.get('band_names', []))}) but "
                             f"'{ms.name()}' has {ms.bandCount()}.")
        method = self.method(alg, parameters, context)
        if method == "model":
            method = metadata.get("inputs", {}).get("align_ms", "none")
        try:
            ratio = self.ratio(alg, parameters, context, method)
        except LcfusionError as exc:
            if self.method(alg, parameters, context) != "model":
                return None  # reported by check()
            return exc.parameter or self.ms, exc.message[0].upper() + exc.message[1:] + "."
        trained = metadata.get("architecture", {}).get("ratio")
        if ratio != trained:
            return self.ms, (f"The model was trained on a PAN/MS ratio of {trained} but these "
                             f"layers have a ratio of {ratio}.")
        return None

    def to_job(self, alg, parameters, context, feedback, job):
        pan, ms = self.layers(alg, parameters, context)
        if self.align:
            job.sections["settings"]["align_ms"] = self.method(alg, parameters, context)
        job.crs = pan.crs()
        for key, layer in (("pan", pan), ("ms", ms)):
            path = raster_path(layer, job.folder, key, context, feedback)
            job.sections["inputs"][key] = {"paths": [path]}
        feedback.pushInfo(f"PAN: {pan.name()} ({pan.width()} x {pan.height()} pixels); MS: "
                          f"{ms.name()} ({ms.bandCount()} bands, {ms.width()} x {ms.height()} "
                          "pixels).")


@dataclass
class SourceBinding(Binding):
    """A choice among input sources (see `EngineAlgorithm.add_source`): only the chosen
    source's input bindings are checked and go into the job, and an empty input of that
    source is named."""

    name: str | None
    key: str
    choices: tuple[str, ...]
    labels: tuple[str, ...]
    model: str | None = None
    inputs: dict[str, list[Binding]] = field(default_factory=dict)

    def chosen(self, alg, parameters, context) -> str | None:
        """The chosen source; None when the model file cannot tell (its binding says why)."""
        if self.model is None:
            return self.choices[alg.parameterAsEnum(parameters, self.name, context)]
        try:
            header = read_header(alg.parameterAsFile(parameters, self.model, context),
                                 self.model)
        except LcfusionError:
            return None
        return (header.metadata.get("inputs") or {}).get(self.key)

    def label(self, source: str) -> str:
        return dict(zip(self.choices, self.labels, strict=True)).get(source, source)

    def empty_input(self, alg, parameters, context, source: str) -> str | None:
        """The first layer parameter of `source` left empty."""
        for binding in self.inputs.get(source, []):
            names = ([binding.layers] if isinstance(binding, SeriesBinding)
                     else [binding.pan, binding.ms] if isinstance(binding, PanMsBinding) else [])
            for name in names:
                if isinstance(alg.parameterDefinition(name), QgsProcessingParameterMultipleLayers):
                    if not alg.parameterAsLayerList(parameters, name, context):
                        return name
                elif alg.parameterAsRasterLayer(parameters, name, context) is None:
                    return name
        return None

    def check(self, alg, parameters, context):
        source = self.chosen(alg, parameters, context)
        if source is None:
            return None
        if source not in self.choices:
            return self.model, (f"The model was trained on an unknown source '{source}'; "
                                "update the plugin or train the model again.")
        empty = self.empty_input(alg, parameters, context, source)
        if empty:
            what = alg.parameterDefinition(empty).description()
            reason = ("The model was trained on" if self.model else "The source is")
            return empty, f"{reason} {self.label(source)}: give the {what}."
        for binding in self.inputs[source]:
            problem = binding.check(alg, parameters, context)
            if problem:
                return problem
        return None

    def check_model(self, alg, parameters, context, metadata):
        source = (metadata.get("inputs") or {}).get(self.key)
        for binding in self.inputs.get(source, []):
            problem = binding.check_model(alg, parameters, context, metadata)
            if problem:
                return problem
        return None

    def to_job(self, alg, parameters, context, feedback, job):
        source = self.chosen(alg, parameters, context)
        if source not in self.choices:
            raise QgsProcessingException(alg.where(self.model or self.name)
                                         + "the source of the inputs cannot be determined.")
        if self.name:
            job.sections["settings"][self.key] = source
        feedback.pushInfo(f"Source: {self.label(source)}.")
        for binding in self.inputs[source]:
            binding.to_job(alg, parameters, context, feedback, job)


@dataclass
class FillValueBinding(Binding):
    """The value that marks fill where every band of an input holds it: it goes into each
    input raster entry of the job (the bindings of the inputs come first)."""

    name: str = "FILL_VALUE"

    def to_job(self, alg, parameters, context, feedback, job):
        if parameters.get(self.name) in (None, ""):
            return
        value = alg.parameterAsDouble(parameters, self.name, context)
        for entry in job.sections["inputs"].values():
            if isinstance(entry, dict) and entry.get("paths"):
                entry["fill_value"] = value
        feedback.pushInfo(f"Fill value: pixels where every band holds {value:g} are nodata.")


@dataclass
class ReferenceBinding(Binding):
    """The reference polygons, exported for the engine; with `part`, the enum parameter that
    keeps only the polygons of one part of a split layer. `exported` is what the run sent."""

    layer: str = "REFERENCE"
    class_field: str = "CLASS_FIELD"
    name_field: str = "NAME_FIELD"
    color_field: str = "COLOR_FIELD"
    part: str | None = None
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
        if kind not in (QgsWkbTypes.PolygonGeometry, QgsWkbTypes.UnknownGeometry):
            held = {QgsWkbTypes.PointGeometry: "points", QgsWkbTypes.LineGeometry: "lines"}
            return self.layer, (f"'{source.sourceName()}' holds {held.get(kind, 'no geometry')}"
                                "; choose a layer of polygons.")
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
        exported = self.exported = export_polygons(source, columns, target, crs, context,
                                                   feedback)
        if exported.count == 0 and not feedback.isCanceled():
            raise QgsProcessingException(alg.where(self.layer) + no_polygons_reason(
                source, crs, bool(exported.unprojectable)))
        feedback.pushInfo(f"Reference polygons: {counted(exported.count, 'feature')} exported "
                          f"in {crs.authid()}.")
        colors = renderer_colors(alg.parameterAsVectorLayer(parameters, self.layer, context),
                                 class_field)
        job.sections["reference"] = {"path": str(target), "layer": "reference",
                                     "class_field": class_field, "name_field": name_field,
                                     "color_field": color_field, "colors": colors,
                                     "part_field": part_field, "part": part,
                                     "columns": columns, "source": source.sourceName()}


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
        fields.append(QgsField(PART_FIELD, QVariant.String))
        fields.append(QgsField(SEED_FIELD, QVariant.Int))
        sink, destination = alg.parameterAsSink(parameters, self.name, context, fields,
                                                source.wkbType(), source.sourceCrs())
        if sink is None:
            return  # not asked for
        part_of = dict(zip(exported.written, parts, strict=True))
        seed = engine_outputs.get("SPLIT_SEED")
        written = dict.fromkeys((*PART_CHOICES[1:], UNUSED_PART), 0)
        failed = 0
        skip_checks = QgsProcessingFeatureSource.FlagSkipGeometryValidityChecks
        for feature in source.getFeatures(QgsFeatureRequest(), skip_checks):
            part = part_of.get(feature.id()) or UNUSED_PART
            out = QgsFeature(fields)
            out.setGeometry(feature.geometry())
            attributes = feature.attributes()
            out.setAttributes([attributes[i] for i in kept] + [part, seed])
            if sink.addFeature(out, QgsFeatureSink.FastInsert):
                written[part] += 1
            else:
                failed += 1
        error = sink.lastError()
        del sink
        if failed:
            remove_vector_file(destination)
            raise QgsProcessingException(alg.where(self.name) + (
                f"{failed} of {counted(failed + sum(written.values()), 'polygon')} could not be "
                f"written to {destination}" + (f" ({error})" if error else "") + "; the split "
                "layer is removed. Choose another file or format."))
        engine_outputs[self.name] = absolute_destination(destination)
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
                       unprojectable: bool) -> str:
    """Why no feature of the reference layer `source` could be used."""
    if unprojectable:
        return (f"none of the features of '{source.sourceName()}' can be reprojected from its "
                f"CRS {source.sourceCrs().authid()} to the rasters' CRS {crs.authid()}; check "
                "that the layer's CRS is the one its coordinates are in.")
    return (f"none of the features of '{source.sourceName()}' has a polygon (their geometries "
            "are empty or not polygons); choose a layer of polygons.")


@dataclass
class SplitBinding(Binding):
    names: tuple[str, str, str] = ("TRAIN_FRACTION", "VALIDATION_FRACTION", "TEST_FRACTION")
    seed: str = "SEED"
    method: str = "SPLIT_METHOD"
    repeats: str = "REPEATS"

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


@dataclass
class SettingBinding(Binding):
    """A number, text, boolean or choice that goes into ``settings[key]``."""

    name: str
    key: str
    choices: tuple[str, ...] = ()

    def to_job(self, alg, parameters, context, feedback, job):
        definition = alg.parameterDefinition(self.name)
        if self.choices:
            value: Any = self.choices[alg.parameterAsEnum(parameters, self.name, context)]
            if value == "":
                return
        elif isinstance(definition, QgsProcessingParameterNumber):
            if definition.dataType() == QgsProcessingParameterNumber.Integer:
                value = alg.parameterAsInt(parameters, self.name, context)
            else:
                value = alg.parameterAsDouble(parameters, self.name, context)
        elif isinstance(definition, QgsProcessingParameterString):
            value = alg.parameterAsString(parameters, self.name, context)
        else:
            value = alg.parameterAsBool(parameters, self.name, context)
        job.sections["settings"][self.key] = value


@dataclass
class ComputeBinding(Binding):
    """The compute profile that runs the training: its values go into the job."""

    name: str = "COMPUTE"

    def profile(self, alg, parameters, context) -> ComputeProfile:
        return find_profile(alg.parameterAsString(parameters, self.name, context),
                            profiles_path())

    def check(self, alg, parameters, context):
        try:
            self.profile(alg, parameters, context)
        except LcfusionError as exc:
            return self.name, exc.message
        return None

    def to_job(self, alg, parameters, context, feedback, job):
        profile = self.profile(alg, parameters, context)
        if profile.distributed:  # the default, here, goes without saying
            feedback.pushInfo(f"Compute profile {profile.name}: {profile.describe()}")
            job.sections["compute"] = {"name": profile.name, **profile.to_json()}


@dataclass
class ModelInputBinding(Binding):
    """The model file: readable, of the algorithm's family, and fitting the other inputs
    (each binding's `check_model`)."""

    name: str = "MODEL"
    family: str = ""

    def check(self, alg, parameters, context):
        path = alg.parameterAsFile(parameters, self.name, context)
        try:
            header = read_header(path, self.name)
            check_family(header, self.family, path, self.name)
        except LcfusionError as exc:
            return exc.parameter or self.name, exc.message
        for binding in alg.bindings:
            problem = binding.check_model(alg, parameters, context, header.metadata)
            if problem:
                return problem
        return None

    def to_job(self, alg, parameters, context, feedback, job):
        path = alg.parameterAsFile(parameters, self.name, context)
        job.sections["inputs"]["model"] = os.path.abspath(path) if path else path


def unwritable(path: str, parameter: str) -> tuple[str, str] | None:
    """(parameter, message) when the output `path` cannot be written: its folder is missing
    or refuses writes, or it names a folder."""
    if not path:
        return None
    try:
        check_writable(Path(path), parameter)
    except LcfusionError as exc:
        return parameter, exc.message[0].upper() + exc.message[1:] + "."
    return None


@dataclass
class FileOutputBinding(Binding):
    """A file the engine writes; with `temporary_suffix`, a temporary file of that suffix when
    the parameter is left out (as qgis_process leaves an optional output)."""

    name: str
    key: str
    temporary_suffix: str | None = None

    def check(self, alg, parameters, context):
        return unwritable(alg.parameterAsFileOutput(parameters, self.name, context), self.name)

    def to_job(self, alg, parameters, context, feedback, job):
        path = alg.parameterAsFileOutput(parameters, self.name, context)
        if not path and self.temporary_suffix:
            path = QgsProcessingUtils.generateTempFilename(self.name + self.temporary_suffix)
        # A relative path (qgis_process in a shell) is the working folder's, not the job's.
        job.sections["outputs"][self.key] = os.path.abspath(path) if path else path


@dataclass
class RasterOutputBinding(Binding):
    """A class map or confidence map written by the engine and styled here."""

    name: str
    key: str
    kind: str = "class_map"

    def check(self, alg, parameters, context):
        return unwritable(alg.parameterAsOutputLayer(parameters, self.name, context), self.name)

    def to_job(self, alg, parameters, context, feedback, job):
        path = alg.parameterAsOutputLayer(parameters, self.name, context)
        if path:
            job.sections["outputs"][self.key] = os.path.abspath(path)

    def finish(self, alg, parameters, context, feedback, engine_outputs):
        path = engine_outputs.get(self.name)
        if not path:
            return
        try:
            if self.kind == "class_map":
                classes = ClassTable.from_json(engine_outputs["CLASSES"])
                write_class_map_style(path, classes)
                processor = ClassMapPostProcessor.create(classes)
            else:
                write_confidence_style(path)
                processor = ConfidencePostProcessor.create()
        except (OSError, ValueError, LcfusionError) as exc:
            feedback.pushWarning(f"{path} was written, but its style could not be saved: {exc}")
            return
        definition = alg.parameterDefinition(self.name)
        attach_post_processor(context, path, processor, alg.output_layer_name(
            self.kind, parameters, context), (definition.description(), self.name))


@dataclass
class ClassMapInputBinding(Binding):
    """A single-band raster of class codes; its CRS is the one the polygons are sent in."""

    name: str = "INPUT"
    key: str = "class_map"

    def check(self, alg, parameters, context):
        layer = alg.parameterAsRasterLayer(parameters, self.name, context)
        if layer is not None and layer.bandCount() != 1:
            return self.name, (f"'{layer.name()}' has {layer.bandCount()} bands; choose a "
                               "single-band class map.")
        return None

    def to_job(self, alg, parameters, context, feedback, job):
        layer = alg.parameterAsRasterLayer(parameters, self.name, context)
        job.crs = layer.crs()
        job.sections["inputs"][self.key] = raster_path(layer, job.folder, self.key, context,
                                                       feedback)
        feedback.pushInfo(f"Class map: {layer.name()} ({layer.width()} x {layer.height()} "
                          f"pixels, {layer.crs().authid() or 'custom CRS'}).")


def remove_partial_files(outputs, pid: int) -> None:
    """Delete the temporary files the engine process `pid`, killed, left beside its outputs;
    those of other runs writing the same outputs are theirs."""
    for output in outputs:
        if not output:
            continue
        for partial in partial_files(Path(output), pid):
            partial.unlink(missing_ok=True)
            partial.with_name(partial.name + ".aux.xml").unlink(missing_ok=True)


def advanced(parameter: QgsProcessingParameterDefinition) -> QgsProcessingParameterDefinition:
    parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return parameter


class EngineAlgorithm(QgsProcessingAlgorithm):
    """Subclasses set the class attributes and declare parameters in ``initAlgorithm``."""

    algorithm_id = ""
    title = ""
    group_key = "training"
    command = ""
    icon_file = "lcfusion.svg"
    help_text = ""
    #: The pinned packages of requirements.txt that the engine command imports.
    engine_packages: tuple[str, ...] = ("torch", "safetensors", "scikit-learn")

    def __init__(self) -> None:
        super().__init__()
        self.bindings: list[Binding] = []

    # Identity -----------------------------------------------------------------------------
    def name(self) -> str:
        return self.algorithm_id

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return self.title

    def group(self) -> str:
        return GROUPS[self.group_key]

    def groupId(self) -> str:  # noqa: N802 - QGIS API
        return self.group_key

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        """The HTML help on one line: QGIS shows every newline of it as a line break."""
        extra = REPORT_HELP if self.group_key == "training" else ""
        if self.parameterDefinition("COMPUTE") is not None:
            extra += COMPUTE_HELP
        if self.parameterDefinition("FILL_VALUE") is not None:
            extra += FILL_HELP
        return " ".join((self.help_text + extra + self.defaults_help()).split())

    def defaults_help(self) -> str:
        """The default of every parameter that has one, as the dialog shows it."""
        items = []
        for parameter in self.parameterDefinitions():
            value = parameter.defaultValue()
            if value is None or value == "" or parameter.isDestination():
                continue
            if (isinstance(parameter, QgsProcessingParameterEnum)
                    and not parameter.usesStaticStrings()):
                value = parameter.options()[int(value)]
            elif isinstance(parameter, QgsProcessingParameterBoolean):
                value = "yes" if value else "no"
            elif isinstance(value, float):
                value = f"{value:g}"
            items.append(f"<li>{html.escape(parameter.description())}: "
                         f"<code>{html.escape(str(value))}</code></li>")
        return f"<h3>Defaults</h3><ul>{''.join(items)}</ul>" if items else ""

    def icon(self) -> QIcon:
        return icon(self.icon_file)

    def createCustomParametersWidget(self, parent=None):  # noqa: N802 - QGIS API
        """The toolbox dialog: Processing's, preselecting the class fields and filling the
        inputs from the chosen model (see `plugin.dialogs`)."""
        from ..dialogs import algorithm_dialog

        return algorithm_dialog(self, parent)

    def createInstance(self) -> EngineAlgorithm:  # noqa: N802 - QGIS API
        return type(self)()

    # Declaration helpers ------------------------------------------------------------------
    def bind(self, binding: Binding, *parameters: QgsProcessingParameterDefinition) -> Binding:
        for parameter in parameters:
            self.addParameter(parameter)
        self.bindings.append(binding)
        return binding

    def add_series(self, description: str = "Time series rasters (in date order)",
                   name: str = "INPUT", key: str = "series", label: str = "time series",
                   masks: bool = False, gapfill: bool = False,
                   optional: bool = False) -> SeriesBinding:
        """A time series; with `masks`, optional cloud-mask layers (``<name>_MASK``); with
        `gapfill`, the gap-filling switch (``GAPFILL``, the model's choice otherwise);
        `optional` for the inputs of a `SourceBinding` choice."""
        prefix = "" if name == "INPUT" else f"{name}_"
        bands_text = "Bands per date (stack only; 0: one layer per date)"
        if name != "INPUT":
            bands_text = f"{label.removesuffix(' series')}: b{bands_text[1:]}"
        parameters = [
            QgsProcessingParameterMultipleLayers(name, description,
                                                 layerType=QgsProcessing.TypeRaster,
                                                 optional=optional),
            QgsProcessingParameterNumber(
                f"{prefix}BANDS_PER_DATE", bands_text, type=QgsProcessingParameterNumber.Integer,
                defaultValue=0, minValue=0)]
        binding = SeriesBinding(name, f"{prefix}BANDS_PER_DATE", key, label)
        if masks:
            binding.masks = f"{name}_MASK"
            parameters.append(QgsProcessingParameterMultipleLayers(
                binding.masks, "Cloud masks (one band per date, non-zero = masked)",
                layerType=QgsProcessing.TypeRaster, optional=True))
        if gapfill:
            binding.gapfill = "GAPFILL"
            parameters.append(QgsProcessingParameterBoolean(
                "GAPFILL", "Fill masked and nodata values by temporal interpolation",
                defaultValue=True))
        return self.bind(binding, *parameters)

    def add_pan_ms(self, patch_size: str | None = None, optional: bool = False,
                   model: bool = False) -> PanMsBinding:
        """The PAN and MS layers and ``ALIGN_MS``, how an MS off the PAN grid is put onto it
        (with `model`, the model's choice by default)."""
        choices = {"none": "No: refuse an MS off the PAN grid",
                   "bilinear": "Resample the MS (bilinear), crop the PAN",
                   "nearest": "Resample the MS (nearest), crop the PAN"}
        if model:
            choices = {"model": "As for training (the model's choice)", **choices}
        return self.bind(
            PanMsBinding(patch_size=patch_size, align="ALIGN_MS", align_choices=tuple(choices)),
            QgsProcessingParameterRasterLayer("PAN", "Panchromatic (PAN) raster, one band",
                                              optional=optional),
            QgsProcessingParameterRasterLayer("MS", "Multispectral (MS) raster, on a coarser grid",
                                              optional=optional),
            QgsProcessingParameterEnum("ALIGN_MS", "Align the MS onto the PAN grid",
                                       options=list(choices.values()), defaultValue=0),
        )

    def add_source(self, options: dict[str, str], model: str | None = None,
                   name: str = "SOURCE", key: str = "source") -> SourceBinding:
        """A choice among input sources (`options`: value -> label): an enum parameter whose
        value goes into ``settings[key]``, or with `model`, the source the model file was
        trained on. Give each source its input bindings with `only_for`."""
        binding = SourceBinding(None if model else name, key, tuple(options),
                                tuple(options.values()), model)
        if model:
            self.bindings.append(binding)
            return binding
        return self.bind(binding, QgsProcessingParameterEnum(
            name, "Source", options=list(options.values()), defaultValue=0))

    def only_for(self, source: SourceBinding, binding: Binding, *choices: str) -> Binding:
        """Make `binding` apply only when one of `choices` is the chosen source."""
        self.bindings = [b for b in self.bindings if b is not binding]
        for choice in choices:
            source.inputs.setdefault(choice, []).append(binding)
        return binding

    def add_reference(self, part_filter: bool = False) -> ReferenceBinding:
        """The reference polygons and their fields; with `part_filter`, the choice of the
        split part (field ``part``) whose polygons are kept."""
        extra = [part_parameter()] if part_filter else []
        return self.bind(
            ReferenceBinding(part="PART" if part_filter else None),
            QgsProcessingParameterFeatureSource(
                "REFERENCE", "Reference polygons", [QgsProcessing.TypeVectorPolygon]),
            QgsProcessingParameterField(
                "CLASS_FIELD", "Class field (integer codes or text names)",
                parentLayerParameterName="REFERENCE", type=QgsProcessingParameterField.Any),
            QgsProcessingParameterField(
                "NAME_FIELD", "Class name field", parentLayerParameterName="REFERENCE",
                type=QgsProcessingParameterField.Any, optional=True),
            QgsProcessingParameterField(
                "COLOR_FIELD", "Class colour field (#rrggbb)",
                parentLayerParameterName="REFERENCE", type=QgsProcessingParameterField.String,
                optional=True),
            *extra,
        )

    def add_split(self, train: float = 0.6, validation: float = 0.2, test: float = 0.2
                  ) -> SplitBinding:
        def fraction(name: str, text: str, value: float) -> QgsProcessingParameterNumber:
            parameter = QgsProcessingParameterNumber(
                name, text, type=QgsProcessingParameterNumber.Double, defaultValue=value,
                minValue=0.0, maxValue=1.0)
            parameter.setMetadata({"widget_wrapper": {"decimals": 2}})
            return parameter

        return self.bind(
            SplitBinding(),
            fraction("TRAIN_FRACTION", "Training share of each class's polygons", train),
            fraction("VALIDATION_FRACTION", "Validation share of each class's polygons",
                     validation),
            fraction("TEST_FRACTION", "Test share of each class's polygons (accuracy)", test),
            QgsProcessingParameterEnum(
                "SPLIT_METHOD", "Split method", options=[text for _, text in SPLIT_METHODS],
                defaultValue=0),
            QgsProcessingParameterNumber("SEED", "Random seed", defaultValue=0,
                                         type=QgsProcessingParameterNumber.Integer),
            advanced(QgsProcessingParameterNumber(
                "REPEATS", "Repeat over k seeded splits (accuracy as mean ± std)",
                type=QgsProcessingParameterNumber.Integer, defaultValue=1, minValue=1,
                maxValue=100)),
        )

    def add_setting(self, parameter: QgsProcessingParameterDefinition, key: str,
                    is_advanced: bool = False, choices: tuple[str, ...] = ()) -> SettingBinding:
        if is_advanced:
            advanced(parameter)
        return self.bind(SettingBinding(parameter.name(), key, choices), parameter)

    def add_int(self, name: str, text: str, key: str, default: int, minimum: int = 0,
                maximum: int | None = None, is_advanced: bool = False) -> SettingBinding:
        parameter = QgsProcessingParameterNumber(
            name, text, type=QgsProcessingParameterNumber.Integer, defaultValue=default,
            minValue=minimum)
        if maximum is not None:
            parameter.setMaximum(maximum)
        return self.add_setting(parameter, key, is_advanced)

    def add_device(self) -> SettingBinding:
        choices = ("auto", "cpu", "cuda")
        parameter = QgsProcessingParameterEnum(
            "DEVICE", "Device (auto: the GPU when torch sees one)", options=list(choices),
            defaultValue=0)
        return self.add_setting(parameter, "device", True, choices)

    def add_compute(self) -> ComputeBinding:
        """The compute profile (``local`` by default); a string, so that the modeler and
        qgis_process can pass any profile name, offered in dialogs as a list of the known
        profiles (`ComputeProfileWidgetWrapper`)."""
        parameter = QgsProcessingParameterString(
            "COMPUTE", "Compute profile (local, or a profile of the settings)",
            defaultValue=LOCAL)
        parameter.setMetadata({"widget_wrapper": {
            "class": f"{package_name()}.plugin.compute_widget.ComputeProfileWidgetWrapper"}})
        return self.bind(ComputeBinding(), parameter)

    def add_model_input(self, family: str) -> ModelInputBinding:
        """The model file, checked against the family and the other inputs."""
        return self.bind(
            ModelInputBinding("MODEL", family),
            QgsProcessingParameterFile("MODEL", "Model file", extension=SUFFIX.lstrip(".")),
        )

    def add_fill_value(self) -> FillValueBinding:
        """The fill value of the inputs (none by default); added after the inputs."""
        return self.bind(FillValueBinding(), advanced(QgsProcessingParameterNumber(
            "FILL_VALUE", "Treat this value as nodata (all bands)",
            type=QgsProcessingParameterNumber.Double, optional=True)))

    def add_model_output(self) -> FileOutputBinding:
        """The fill value of the inputs, the model file, the HTML training report and the split
        layer."""
        self.add_fill_value()
        self.bind(FileOutputBinding("OUTPUT_REPORT", "report"),
                  QgsProcessingParameterFileDestination(
                      "OUTPUT_REPORT", "Training report", fileFilter="HTML (*.html)",
                      optional=True, createByDefault=True))
        reference = next(b for b in self.bindings if isinstance(b, ReferenceBinding))
        self.bind(SplitLayerBinding(reference), QgsProcessingParameterFeatureSink(
            "OUTPUT_SPLIT", "Reference polygons with their split part",
            QgsProcessing.TypeVectorPolygon, optional=True, createByDefault=True))
        return self.bind(
            FileOutputBinding("OUTPUT_MODEL", "model"),
            QgsProcessingParameterFileDestination(
                "OUTPUT_MODEL", "Model file", fileFilter=f"lcfusion model (*{SUFFIX})"),
        )

    def add_class_map_output(self, with_confidence: bool = True) -> None:
        """The fill value of the inputs, the class map and the confidence map."""
        self.add_fill_value()
        self.bind(RasterOutputBinding("OUTPUT", "class_map", "class_map"),
                  QgsProcessingParameterRasterDestination("OUTPUT", "Class map"))
        if with_confidence:
            self.bind(RasterOutputBinding("OUTPUT_CONFIDENCE", "confidence", "confidence"),
                      QgsProcessingParameterRasterDestination(
                          "OUTPUT_CONFIDENCE", "Confidence map (maximum class probability)",
                          optional=True, createByDefault=False))

    def add_class_map_input(self) -> ClassMapInputBinding:
        return self.bind(ClassMapInputBinding(), QgsProcessingParameterRasterLayer(
            "INPUT", "Class map (class codes, nodata where unclassified)"))

    def add_file_output(self, name: str, description: str, key: str, suffix: str,
                        file_filter: str) -> FileOutputBinding:
        """A file the engine writes, under ``outputs[key]``: optional, a temporary file of
        `suffix` unless the user names one."""
        return self.bind(FileOutputBinding(name, key, suffix),
                         QgsProcessingParameterFileDestination(
                             name, description, fileFilter=file_filter, optional=True,
                             createByDefault=True))

    def add_accuracy_outputs(self) -> None:
        """Test-polygon accuracy; with repeated splits the mean over the splits and its
        standard deviation."""
        for name, text in (("OA", "Overall accuracy (test polygons)"),
                           ("KAPPA", "Cohen's Kappa (test polygons)"),
                           ("MEAN_F1", "Mean F1 score (test polygons)")):
            self.addOutput(QgsProcessingOutputNumber(name, text))
            self.addOutput(QgsProcessingOutputNumber(
                f"{name}_STD", f"{text}: standard deviation over the repeated splits"))

    # Running ------------------------------------------------------------------------------
    def checkParameterValues(self, parameters: dict, context: QgsProcessingContext
                             ) -> tuple[bool, str]:  # noqa: N802 - QGIS API
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        for binding in self.bindings:
            problem = binding.check(self, parameters, context)
            if problem:
                parameter, message = problem
                return False, self.where(parameter) + message
        problem = engine_environment_problem(needs=self.engine_packages)
        return (False, problem) if problem else (True, "")

    def processAlgorithm(self, parameters: dict, context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> dict:  # noqa: N802 - QGIS API
        folder = Path(tempfile.mkdtemp(prefix="lcfusion-job-",
                                       dir=QgsProcessingUtils.tempFolder()))
        try:
            draft = JobDraft(folder)
            for binding in self.bindings:
                binding.to_job(self, parameters, context, feedback, draft)
                if feedback.isCanceled():
                    raise QgsProcessingException("Cancelled: no output was written.")
            job_path = write_job(folder, self.command, **draft.sections)
            verbose = context.logLevel() == QgsProcessingContext.Verbose
            run = EngineProcess(self.command, job_path, feedback, verbose=verbose).run()
            if not run.succeeded:
                remove_partial_files(draft.sections["outputs"].values(), run.pid)
            self.raise_for(run)
            for binding in self.bindings:
                binding.finish(self, parameters, context, feedback, run.outputs)
            names = {output.name() for output in self.outputDefinitions()}
            return {k: v for k, v in run.outputs.items() if k in names and v is not None}
        except QgsProcessingException as exc:
            mute_error_copies(str(exc))
            raise
        finally:
            if not os.environ.get(KEEP_JOBS_ENV):
                shutil.rmtree(folder, ignore_errors=True)

    def output_layer_name(self, kind: str, parameters: dict,
                          context: QgsProcessingContext) -> str | None:
        """The name of a loaded class map or confidence map (`kind`): the model's family,
        what the layer shows and the model file's name, as "FG-UNET classes — crops2021"."""
        model = next((b for b in self.bindings if isinstance(b, ModelInputBinding)), None)
        if model is None:
            return None
        stem = Path(self.parameterAsFile(parameters, model.name, context)).stem
        shown = "classes" if kind == "class_map" else "confidence"
        return f"{FAMILY_NAMES.get(model.family, model.family)} {shown} — {stem}"

    def where(self, parameter: str | None) -> str:
        """The prefix that names a parameter in messages: "Description [NAME]: "."""
        definition = self.parameterDefinition(parameter) if parameter else None
        return (f"{definition.description()} [{parameter}]: " if definition
                else f"{parameter}: " if parameter else "")

    def raise_for(self, run: EngineRun) -> None:
        """Turn a failed, cancelled or crashed engine run into a QgsProcessingException; a
        cancel that came after the engine had finished keeps the finished outputs."""
        if run.succeeded:
            return
        if run.cancelled:
            raise QgsProcessingException("Cancelled: the engine was stopped and no output "
                                         "was written.")
        if run.failure is not None:
            raise QgsProcessingException(self.where(run.failure.parameter)
                                         + run.failure.message)
        if run.returncode != 0:
            tail = "\n".join(run.stderr_tail[-15:])
            raise QgsProcessingException(
                f"The lcfusion engine stopped unexpectedly (exit status {run.returncode}).\n"
                f"{tail}")
