"""What the engine writes: `FileOutputBinding` (model file, report, any file),
`RasterOutputBinding` (class, confidence and attention maps, styled here), `CogBinding` (the
maps as Cloud Optimized GeoTIFFs), the checks that an output can be written, the removal of a
killed run's partial files, and the help on training's accuracy outputs and report and on the
maps' overviews."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from qgis.core import QgsProcessingUtils

from ....engine.errors import LcfusionError
from ....engine.io.outputs import check_writable, partial_files
from ....engine.reference.classes import ClassTable
from ...styling import (
    AttentionBand,
    AttentionPostProcessor,
    ClassMapPostProcessor,
    ConfidencePostProcessor,
    attach_post_processor,
    attention_caption,
    shown_attention_bands,
    write_attention_style,
    write_class_map_style,
    write_confidence_style,
)
from .binding import Binding

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

MAPS_HELP = """
<h3>Overviews and Cloud Optimized GeoTIFF</h3>
<p>The class map gets internal overviews that keep the most frequent class of each block (class
codes are never averaged), the confidence map (and an attention map) overviews that average it,
down to about 256 pixels across: QGIS draws a whole Sentinel-2 tile zoomed out at once.
<b>Write Cloud Optimized GeoTIFFs</b> (advanced) writes the maps as COGs, which web servers and
cloud storage stream by parts; the overviews are the same.</p>
"""


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
    #: What is lost with a temporary file (e.g. "the trained model"): the run then warns that
    #: QGIS deletes it on closing.
    kept_for_later: str = ""

    def check(self, alg, parameters, context):
        return unwritable(alg.parameterAsFileOutput(parameters, self.name, context), self.name)

    def to_job(self, alg, parameters, context, feedback, job):
        path = alg.parameterAsFileOutput(parameters, self.name, context)
        if not path and self.temporary_suffix:
            path = QgsProcessingUtils.generateTempFilename(self.name + self.temporary_suffix)
        # A relative path (qgis_process in a shell) is the working folder's, not the job's.
        job.sections["outputs"][self.key] = os.path.abspath(path) if path else path
        if path and self.kept_for_later and is_temporary(path):
            feedback.pushWarning(
                f"{alg.parameterDefinition(self.name).description()} [{self.name}]: "
                f"{self.kept_for_later} is saved to a temporary file, {path}, which QGIS deletes "
                "when it closes; choose a file there to keep it")


def is_temporary(path: str) -> bool:
    """Whether `path` lies in QGIS's temporary folder of this session (a "temporary file"
    output)."""
    folder = os.path.realpath(QgsProcessingUtils.tempFolder())
    return os.path.realpath(path).startswith(folder + os.sep)


#: How the maps of one run are stacked when loaded: the class map on top.
STACKING = ("class_map", "confidence", "attention")


def maps_stacked(alg, engine_outputs: dict) -> list[str]:
    """The files of the maps `alg` wrote, in the order they are stacked when loaded."""
    maps = sorted((b for b in alg.bindings if isinstance(b, RasterOutputBinding)),
                  key=lambda b: STACKING.index(b.kind))
    return [engine_outputs[b.name] for b in maps if engine_outputs.get(b.name)]


@dataclass
class RasterOutputBinding(Binding):
    """A class map, confidence map or attention map (`kind`) written by the engine and styled
    here; a class map takes the class table of the engine's output `classes_key`, an attention
    map the list of its bands (the engine's output named after the parameter + ``_BANDS``)."""

    name: str
    key: str
    kind: str = "class_map"
    classes_key: str = "CLASSES"

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
        shows = ""
        try:
            if self.kind == "class_map":
                classes = ClassTable.from_json(engine_outputs[self.classes_key])
                write_class_map_style(path, classes)
                processor = ClassMapPostProcessor.create(classes)
            elif self.kind == "attention":
                shown = shown_attention_bands(AttentionBand.from_engine(
                    engine_outputs[self.name + "_BANDS"]))
                write_attention_style(path, shown)
                processor = AttentionPostProcessor.create(shown)
                shows = f" ({attention_caption(shown)})"
            else:
                write_confidence_style(path)
                processor = ConfidencePostProcessor.create()
        except (OSError, ValueError, KeyError, LcfusionError) as exc:
            feedback.pushWarning(f"{path} was written, but its style could not be saved: {exc}")
            return
        processor.stack = maps_stacked(alg, engine_outputs)
        definition = alg.parameterDefinition(self.name)
        name = alg.output_layer_name(self.kind, parameters, context)
        attach_post_processor(context, path, processor, name and name + shows,
                              (definition.description(), self.name))


@dataclass
class CogBinding(Binding):
    """Whether the class and confidence maps are written as Cloud Optimized GeoTIFFs
    (``outputs.cog``)."""

    name: str = "COG"

    def to_job(self, alg, parameters, context, feedback, job):
        job.sections["outputs"]["cog"] = alg.parameterAsBool(parameters, self.name, context)


def remove_partial_files(outputs, pid: int) -> None:
    """Delete the temporary files the engine process `pid`, killed, left beside its outputs
    (the paths among the job's outputs); those of other runs writing the same outputs are
    theirs."""
    for output in outputs:
        if not output or not isinstance(output, str):
            continue
        for partial in partial_files(Path(output), pid):
            partial.unlink(missing_ok=True)
            partial.with_name(partial.name + ".aux.xml").unlink(missing_ok=True)
