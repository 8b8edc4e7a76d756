"""The base of every lcfusion algorithm: parameters -> engine job -> child process -> outputs.

Algorithms only declare parameters with the ``add_*`` helpers; each helper registers a
binding (see `bindings`) that knows how its parameter goes into the job, what to check before
the run, and what to do with the engine's outputs afterwards (styling, loading).
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
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
)
from qgis.PyQt.QtGui import QIcon

from ...engine.compute.profiles import LOCAL
from ...engine.jobs import write_job
from ...engine.modelfile.header import SUFFIX
from ...engine.modelfile.onnxfile import SUFFIX as ONNX_SUFFIX
from ...engine.modelfile.onnxfile import is_onnx
from ...engine.training.choices import (
    KEEPS,
    MONITORS,
    OPTIMIZERS,
    PRIOR_SETTINGS,
    SAMPLINGS,
    SCHEDULES,
)
from ...engine.wording import FAMILY_NAMES
from ..console import mute_error_copies
from ..engine_process import EngineProcess, EngineRun
from ..environment import engine_environment_problem
from ..settings import package_name, plugin_root
from .bindings.binding import Binding, JobDraft
from .bindings.classmap import ClassMapInputBinding
from .bindings.modelfile import ModelInputBinding
from .bindings.options import (
    CLASS_PRIORS_HELP,
    CLASSIFY_COMPUTE_HELP,
    COMPUTE_HELP,
    FILL_HELP,
    LOOP_HELP,
    SERIES_AUGMENTATION_HELP,
    TTA_HELP,
    ComputeBinding,
    FillValueBinding,
    SettingBinding,
)
from .bindings.outputs import (
    MAPS_HELP,
    REPORT_HELP,
    CogBinding,
    FileOutputBinding,
    RasterOutputBinding,
    remove_partial_files,
)
from .bindings.panms import PanMsBinding
from .bindings.reference import (
    ENSEMBLE_HELP,
    SPLIT_METHODS,
    ReferenceBinding,
    SplitBinding,
    SplitLayerBinding,
    part_parameter,
)
from .bindings.series import SeriesBinding
from .bindings.sources import SourceBinding

GROUPS = {"training": "Training", "classification": "Classification", "evaluation": "Evaluation"}
KEEP_JOBS_ENV = "LCFUSION_KEEP_JOBS"


def icon(name: str) -> QIcon:
    return QIcon(str(plugin_root() / "resources" / "icons" / name))


def advanced(parameter: QgsProcessingParameterDefinition) -> QgsProcessingParameterDefinition:
    parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
    return parameter


#: Parameters added after models were saved with these algorithms: optional, so a saved
#: graphical model (or a qgis_process call) without them still runs, with their defaults.
LATER_PARAMETERS = ("TIME_LIMIT", "EARLY_STOPPING", "SAMPLING", "OPTIMIZER", "WEIGHT_DECAY",
                    "WARMUP_EPOCHS", "LABEL_SMOOTHING", "TTA", "MONITOR", "JITTER",
                    "DATE_DROPOUT", "SCHEDULE", "KEEP", "CLASS_PRIORS")


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
    #: What a classification with an .onnx model imports instead (the light environment).
    onnx_packages: tuple[str, ...] = ("onnxruntime",)

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
            extra += CLASSIFY_COMPUTE_HELP if self.group_key == "classification" else (
                COMPUTE_HELP)
        if self.parameterDefinition("EARLY_STOPPING") is not None:
            extra += LOOP_HELP
        if self.parameterDefinition("CLASS_PRIORS") is not None:
            extra += CLASS_PRIORS_HELP
        if self.parameterDefinition("DATE_DROPOUT") is not None:
            extra += SERIES_AUGMENTATION_HELP
        if self.parameterDefinition("TTA") is not None:
            extra += TTA_HELP
        if self.parameterDefinition("ENSEMBLE") is not None:
            extra += ENSEMBLE_HELP
        if self.parameterDefinition("FILL_VALUE") is not None:
            extra += FILL_HELP
        if self.parameterDefinition("COG") is not None:
            extra += MAPS_HELP
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
                                                 layerType=QgsProcessing.SourceType.TypeRaster,
                                                 optional=optional),
            QgsProcessingParameterNumber(
                f"{prefix}BANDS_PER_DATE", bands_text,
                type=QgsProcessingParameterNumber.Type.Integer, defaultValue=0, minValue=0)]
        binding = SeriesBinding(name, f"{prefix}BANDS_PER_DATE", key, label)
        if masks:
            binding.masks = f"{name}_MASK"
            parameters.append(QgsProcessingParameterMultipleLayers(
                binding.masks, "Cloud masks (one band per date, non-zero = masked)",
                layerType=QgsProcessing.SourceType.TypeRaster, optional=True))
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

    def add_reference(self, part_filter: bool = False, points: bool = False) -> ReferenceBinding:
        """The reference polygons and their fields; with `part_filter`, the choice of the
        split part (field ``part``) whose polygons are kept; with `points`, sample points are
        taken too."""
        extra = [part_parameter()] if part_filter else []
        kinds = [QgsProcessing.SourceType.TypeVectorPolygon]
        if points:
            kinds.append(QgsProcessing.SourceType.TypeVectorPoint)
        return self.bind(
            ReferenceBinding(part="PART" if part_filter else None, points=points),
            QgsProcessingParameterFeatureSource(
                "REFERENCE", "Reference polygons or sample points" if points
                else "Reference polygons", kinds),
            QgsProcessingParameterField(
                "CLASS_FIELD", "Class field (integer codes or text names)",
                parentLayerParameterName="REFERENCE",
                type=QgsProcessingParameterField.DataType.Any),
            QgsProcessingParameterField(
                "NAME_FIELD", "Class name field", parentLayerParameterName="REFERENCE",
                type=QgsProcessingParameterField.DataType.Any, optional=True),
            QgsProcessingParameterField(
                "COLOR_FIELD", "Class colour field (#rrggbb)",
                parentLayerParameterName="REFERENCE",
                type=QgsProcessingParameterField.DataType.String, optional=True),
            *extra,
        )

    def add_split(self, train: float = 0.6, validation: float = 0.2, test: float = 0.2,
                  ensemble: bool = True) -> SplitBinding:
        """The split parameters; with `ensemble`, the option to keep the models of the
        repeated splits as one ensemble (optional, for models saved before it)."""
        def fraction(name: str, text: str, value: float) -> QgsProcessingParameterNumber:
            parameter = QgsProcessingParameterNumber(
                name, text, type=QgsProcessingParameterNumber.Type.Double, defaultValue=value,
                minValue=0.0, maxValue=1.0)
            parameter.setMetadata({"widget_wrapper": {"decimals": 2}})
            return parameter

        ensemble_option = [advanced(QgsProcessingParameterBoolean(
            "ENSEMBLE", "Ensemble: one model file averaging the k models of the repeated splits",
            defaultValue=False, optional=True))] if ensemble else []
        return self.bind(
            SplitBinding(ensemble="ENSEMBLE" if ensemble else None),
            fraction("TRAIN_FRACTION", "Training share of each class's polygons", train),
            fraction("VALIDATION_FRACTION", "Validation share of each class's polygons",
                     validation),
            fraction("TEST_FRACTION", "Test share of each class's polygons (accuracy)", test),
            QgsProcessingParameterEnum(
                "SPLIT_METHOD", "Split method", options=[text for _, text in SPLIT_METHODS],
                defaultValue=0),
            QgsProcessingParameterNumber("SEED", "Random seed", defaultValue=0,
                                         type=QgsProcessingParameterNumber.Type.Integer),
            advanced(QgsProcessingParameterNumber(
                "REPEATS", "Repeat over k seeded splits (accuracy as mean ± std)",
                type=QgsProcessingParameterNumber.Type.Integer, defaultValue=1, minValue=1,
                maxValue=100)),
            *ensemble_option,
        )

    def add_setting(self, parameter: QgsProcessingParameterDefinition, key: str,
                    is_advanced: bool = False, choices: tuple[str, ...] = ()) -> SettingBinding:
        if is_advanced:
            advanced(parameter)
        if parameter.name() in LATER_PARAMETERS:
            optional = QgsProcessingParameterDefinition.Flag.FlagOptional
            parameter.setFlags(parameter.flags() | optional)
        return self.bind(SettingBinding(parameter.name(), key, choices), parameter)

    def add_int(self, name: str, text: str, key: str, default: int, minimum: int = 0,
                maximum: int | None = None, is_advanced: bool = False) -> SettingBinding:
        parameter = QgsProcessingParameterNumber(
            name, text, type=QgsProcessingParameterNumber.Type.Integer, defaultValue=default,
            minValue=minimum)
        if maximum is not None:
            parameter.setMaximum(maximum)
        return self.add_setting(parameter, key, is_advanced)

    def add_epochs(self, default: int, early_stopping: int) -> None:
        """Epochs as an upper bound, with a time limit and early stopping on the validation
        loss (the deep families)."""
        self.add_int("EPOCHS", "Epochs (at most)", "epochs", default, minimum=1)
        time_limit = QgsProcessingParameterNumber(
            "TIME_LIMIT", "Time limit (minutes, 0: none)",
            type=QgsProcessingParameterNumber.Type.Double, defaultValue=0.0, minValue=0.0)
        time_limit.setMetadata({"widget_wrapper": {"decimals": 1}})  # not "0.000000"
        self.add_setting(time_limit, "time_limit")
        self.add_int("EARLY_STOPPING", "Early stopping patience (epochs, 0: never)",
                     "early_stopping", early_stopping, is_advanced=True)

    def add_sampling(self) -> SettingBinding:
        """How training (and validation) pixels are drawn (the deep families)."""
        return self.add_setting(QgsProcessingParameterEnum(
            "SAMPLING", "Training pixels drawn", options=[
                "class-balanced (a class, then a pixel)",
                "class- and polygon-balanced (a class, a polygon, a pixel)"], defaultValue=0),
            "sampling", True, SAMPLINGS)

    def add_class_priors(self) -> SettingBinding:
        """How common each class is, put back into the balanced training's ranking (every
        family)."""
        return self.add_setting(QgsProcessingParameterEnum(
            "CLASS_PRIORS", "Class priors", options=[
                "the training polygons' class shares, strength chosen on the validation polygons",
                "the training polygons' class shares",
                "every class equally common (the balanced training sample)"], defaultValue=0),
            "class_priors", True, PRIOR_SETTINGS)

    def add_optimizer(self, schedule: str = "plateau", keep: str = "best") -> None:
        """The optimiser, weight decay, warm-up, label smoothing, what picks the best epoch,
        the learning-rate schedule (`schedule` by default) and the weights kept (`keep` by
        default) (the deep families)."""
        self.add_setting(QgsProcessingParameterEnum(
            "OPTIMIZER", "Optimizer", options=["Adam (the papers)", "AdamW"], defaultValue=0),
            "optimizer", True, OPTIMIZERS)
        self.add_setting(QgsProcessingParameterNumber(
            "WEIGHT_DECAY", "Weight decay", type=QgsProcessingParameterNumber.Type.Double,
            defaultValue=0.0, minValue=0.0), "weight_decay", is_advanced=True)
        self.add_int("WARMUP_EPOCHS", "Learning-rate warm-up (epochs)", "warmup_epochs", 0,
                     is_advanced=True)
        self.add_setting(QgsProcessingParameterNumber(
            "LABEL_SMOOTHING", "Label smoothing", type=QgsProcessingParameterNumber.Type.Double,
            defaultValue=0.0, minValue=0.0, maxValue=0.99), "label_smoothing", is_advanced=True)
        self.add_setting(QgsProcessingParameterEnum(
            "MONITOR", "Best epoch and early stopping by", options=[
                "validation loss (the papers)", "validation overall accuracy"],
            defaultValue=0), "monitor", True, MONITORS)
        self.add_setting(QgsProcessingParameterEnum(
            "SCHEDULE", "Learning-rate schedule after the warm-up", options=[
                "cut on a validation plateau (the papers)",
                "cosine to zero over the epochs or the time limit"],
            defaultValue=SCHEDULES.index(schedule)), "schedule", True, SCHEDULES)
        self.add_setting(QgsProcessingParameterEnum(
            "KEEP", "Weights kept", options=[
                "the best epoch's, by the validation score above (the papers)",
                "the last epoch's",
                "the best or the last epoch's, whichever is right on more validation "
                "polygon pixels"], defaultValue=KEEPS.index(keep)), "keep", True, KEEPS)

    def add_series_augmentation(self) -> None:
        """Augmentation of a time series' values (FG-UNET, TWINNS): band jitter, date
        dropout."""
        self.add_setting(QgsProcessingParameterNumber(
            "JITTER", "Band gain and offset jitter (standard deviation, 0: none)",
            type=QgsProcessingParameterNumber.Type.Double, defaultValue=0.0, minValue=0.0,
            maxValue=1.0), "jitter", is_advanced=True)
        self.add_setting(QgsProcessingParameterNumber(
            "DATE_DROPOUT", "Date dropout (probability per date, 0: none)",
            type=QgsProcessingParameterNumber.Type.Double, defaultValue=0.0, minValue=0.0,
            maxValue=0.95), "date_dropout", is_advanced=True)

    def add_tta(self) -> SettingBinding:
        """Test-time augmentation at classification (FG-UNET, TWINNS)."""
        return self.add_setting(QgsProcessingParameterBoolean(
            "TTA", "Test-time augmentation (8 flips and rotations)", defaultValue=False), "tta",
            is_advanced=True)

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
        if self.group_key == "classification":
            # Added after graphical models were saved with these algorithms: optional, so a
            # saved model without it still runs, on this machine.
            parameter.setFlags(parameter.flags()
                               | QgsProcessingParameterDefinition.Flag.FlagOptional)
        return self.bind(ComputeBinding(), parameter)

    def add_model_input(self, family: str) -> ModelInputBinding:
        """The model file (.lcfusion, or an .onnx export of one), checked against the family
        and the other inputs."""
        return self.bind(
            ModelInputBinding("MODEL", family),
            QgsProcessingParameterFile(
                "MODEL", "Model file", fileFilter=f"lcfusion model (*{SUFFIX});;"
                f"lcfusion model exported to ONNX (*{ONNX_SUFFIX})"),
        )

    def add_fill_value(self) -> FillValueBinding:
        """The fill value of the inputs (none by default); added after the inputs."""
        return self.bind(FillValueBinding(), advanced(QgsProcessingParameterNumber(
            "FILL_VALUE", "Treat this value as nodata (all bands)",
            type=QgsProcessingParameterNumber.Type.Double, optional=True)))

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
            QgsProcessing.SourceType.TypeVectorPolygon, optional=True, createByDefault=True))
        return self.bind(
            FileOutputBinding("OUTPUT_MODEL", "model", kept_for_later="the trained model"),
            QgsProcessingParameterFileDestination(
                "OUTPUT_MODEL", "Model file", fileFilter=f"lcfusion model (*{SUFFIX})"),
        )

    def add_class_map_output(self, with_confidence: bool = True) -> None:
        """The fill value of the inputs, the maps' format (COG or not; optional, for models
        saved before it), the class map and the confidence map."""
        self.add_fill_value()
        self.bind(CogBinding(), advanced(QgsProcessingParameterBoolean(
            "COG", "Write Cloud Optimized GeoTIFFs (COG)", defaultValue=False, optional=True)))
        self.bind(RasterOutputBinding("OUTPUT", "class_map", "class_map"),
                  QgsProcessingParameterRasterDestination("OUTPUT", "Class map"))
        if with_confidence:
            self.add_optional_map_output("OUTPUT_CONFIDENCE",
                                         "Confidence map (maximum class probability)",
                                         "confidence", "confidence")

    def add_optional_map_output(self, name: str, description: str, key: str,
                                kind: str) -> RasterOutputBinding:
        """A map the engine writes only when asked (``outputs[key]``), styled as `kind`
        (see `RasterOutputBinding`)."""
        return self.bind(RasterOutputBinding(name, key, kind),
                         QgsProcessingParameterRasterDestination(
                             name, description, optional=True, createByDefault=False))

    def add_class_map_input(self, name: str = "INPUT", key: str = "class_map",
                            description: str = "Class map", sets_crs: bool = True
                            ) -> ClassMapInputBinding:
        """A single-band raster of class codes, under ``inputs[key]``; with `sets_crs` the
        reference is sent in its CRS."""
        return self.bind(ClassMapInputBinding(name, key, sets_crs),
                         QgsProcessingParameterRasterLayer(
                             name, f"{description} (class codes, nodata where unclassified)"))

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
        problem = engine_environment_problem(needs=self.needed_packages(parameters, context))
        return (False, problem) if problem else (True, "")

    def needed_packages(self, parameters: dict, context: QgsProcessingContext
                        ) -> tuple[str, ...]:
        """The pinned packages the engine command imports: onnxruntime alone where an .onnx
        model classifies."""
        model = next((b for b in self.bindings if isinstance(b, ModelInputBinding)), None)
        if model and model.family and is_onnx(self.parameterAsFile(parameters, model.name,
                                                                    context)):
            return self.onnx_packages
        return self.engine_packages

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
            verbose = context.logLevel() == QgsProcessingContext.LogLevel.Verbose
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
        """The name of a loaded class, confidence or attention map (`kind`): the model's
        family, what the layer shows and the model file's name, as "FG-UNET classes —
        crops2021"."""
        model = next((b for b in self.bindings if isinstance(b, ModelInputBinding)), None)
        if model is None:
            return None
        stem = Path(self.parameterAsFile(parameters, model.name, context)).stem
        shown = {"class_map": "classes", "attention": "attention"}.get(kind, "confidence")
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
