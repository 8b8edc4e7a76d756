"""The lcfusion Processing provider as QGIS sees it: ids, groups, help, icons, parameters."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from qgis.core import (
    QgsApplication,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingDestinationParameter,
    QgsProcessingFeedback,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterDestination,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor, QImage, QPainter

from lcfusion.plugin.algorithms.bindings.binding import JobDraft
from lcfusion.plugin.algorithms.bindings.outputs import CogBinding, remove_partial_files
from lcfusion.plugin.settings import plugin_root

ALGORITHMS = {
    "lcfusion:trainfgunet": ("Training", "training"),
    "lcfusion:classifyfgunet": ("Classification", "classification"),
    "lcfusion:trainmrfusion": ("Training", "training"),
    "lcfusion:classifymrfusion": ("Classification", "classification"),
    "lcfusion:traintwinns": ("Training", "training"),
    "lcfusion:classifytwinns": ("Classification", "classification"),
    "lcfusion:trainrandomforest": ("Training", "training"),
    "lcfusion:classifyrandomforest": ("Classification", "classification"),
    "lcfusion:evaluate": ("Evaluation", "evaluation"),
    "lcfusion:sampledesign": ("Evaluation", "evaluation"),
    "lcfusion:areaaccuracy": ("Evaluation", "evaluation"),
    "lcfusion:comparemaps": ("Evaluation", "evaluation"),
    "lcfusion:exportonnx": ("Classification", "classification"),
}

#: Parameters that belong in the dialogs' "Advanced parameters" section, per algorithm.
#: The stopping, sampling and optimiser settings every deep family's training shares.
LOOP_ADVANCED = {"EARLY_STOPPING", "SAMPLING", "OPTIMIZER", "WEIGHT_DECAY", "WARMUP_EPOCHS",
                 "LABEL_SMOOTHING", "MONITOR", "SCHEDULE", "KEEP", "CLASS_PRIORS"}
#: The time-series families' augmentation of values.
SERIES_ADVANCED = {"JITTER", "DATE_DROPOUT"}
ADVANCED = {
    "lcfusion:trainfgunet": {"PATCHES_PER_EPOCH", "VALIDATION_PATCHES", "DATES_PER_CHUNK",
                             "MAX_SHIFT", "AUGMENT", "CLASS_WEIGHTING", "DEVICE", "TILE_SIZE",
                             "MARGIN", "REPEATS", "ENSEMBLE", "FILL_VALUE", *LOOP_ADVANCED,
                             *SERIES_ADVANCED},
    "lcfusion:classifyfgunet": {"TILE_SIZE", "MARGIN", "DEVICE", "FILL_VALUE", "TTA", "COG"},
    "lcfusion:trainmrfusion": {"SAMPLES_PER_EPOCH", "VALIDATION_SAMPLES", "BRANCHES", "DEVICE",
                               "TILE_SIZE", "REPEATS", "ENSEMBLE", "FILL_VALUE",
                               *LOOP_ADVANCED},
    "lcfusion:classifymrfusion": {"TILE_SIZE", "DEVICE", "FILL_VALUE", "TTA", "COG"},
    "lcfusion:traintwinns": {"SOURCES", "BRANCHES", "AUXILIARY", "S1_SCALE",
                             "SAMPLES_PER_EPOCH", "VALIDATION_SAMPLES", "DEVICE", "TILE_SIZE",
                             "REPEATS", "ENSEMBLE", "FILL_VALUE", *LOOP_ADVANCED,
                             *SERIES_ADVANCED},
    "lcfusion:classifytwinns": {"TILE_SIZE", "DEVICE", "FILL_VALUE", "TTA", "COG"},
    "lcfusion:trainrandomforest": {"INDICES", "BAND_ROLES", "MAX_FEATURES",
                                   "TRAIN_ON_VALIDATION", "S1_SCALE", "THREADS", "TILE_SIZE",
                                   "REPEATS", "FILL_VALUE", "CLASS_PRIORS"},
    "lcfusion:classifyrandomforest": {"TILE_SIZE", "THREADS", "FILL_VALUE", "COG"},
    "lcfusion:evaluate": set(),
    "lcfusion:sampledesign": set(),
    "lcfusion:areaaccuracy": set(),
    "lcfusion:comparemaps": set(),
    "lcfusion:exportonnx": {"RESOLUTION", "TILE_SIZE", "OVERLAP"},
}


#: What each algorithm's help must explain: the family and the parameters a user must set.
HELP_TERMS = {
    "lcfusion:trainfgunet": ("FG-UNET", "Time series rasters", "Reference polygons",
                             "Class field"),
    "lcfusion:classifyfgunet": ("FG-UNET", "Time series rasters", "Model file"),
    "lcfusion:trainmrfusion": ("MRFusion", "<b>PAN</b>", "<b>MS</b>", "Reference polygons",
                               "Class field", "Patch size"),
    "lcfusion:classifymrfusion": ("MRFusion", "Model file", "<b>PAN</b>", "<b>MS</b>"),
    "lcfusion:traintwinns": ("TWINNS", "Sentinel-1 rasters", "Sentinel-2 rasters",
                             "Cloud masks", "Band roles", "Reference polygons", "Class field",
                             "alpha"),
    "lcfusion:classifytwinns": ("TWINNS", "Model file", "Sentinel-1 rasters",
                                "Sentinel-2 rasters"),
    "lcfusion:trainrandomforest": ("Random Forest", "iota2", "OTB", "Source",
                                   "Sentinel-2 rasters", "Sentinel-1 rasters", "<b>PAN</b>",
                                   "<b>MS</b>", "Features", "Patch size",
                                   "Training pixels per class", "Trees", "Maximum depth",
                                   "Reference polygons", "Class field", "trains here"),
    "lcfusion:classifyrandomforest": ("Random Forest", "Model file", "Sentinel-2 rasters",
                                      "Sentinel-1 rasters", "<b>PAN</b>", "<b>MS</b>"),
    "lcfusion:evaluate": ("Class map", "Reference polygons", "Class field",
                          "rows = reference, columns = prediction", "nodata",
                          "not in the reference"),
    "lcfusion:sampledesign": ("Class map", "Sample size", "Allocation", "Minimum points per "
                              "class", "Expected user's accuracy", "Random seed",
                              "<code>reference</code>", "eq. 13"),
    "lcfusion:areaaccuracy": ("Class map", "Sample points", "Reference class field",
                              "rows = map, columns = reference", "95 %", "hectares"),
    "lcfusion:exportonnx": ("ONNX", "onnxruntime", "Deepness", "Model file", "light"),
    "lcfusion:comparemaps": ("McNemar", "Map A", "Map B", "same grid", "gdalwarp",
                             "sample points", "Class field", "chi-square", "p-value",
                             "Disagreement raster", "make accuracy"),
}


def _opaque_pixels(icon, side: int = 32) -> int:
    """How many pixels of the icon, rendered at `side` x `side`, are not transparent."""
    image = QImage(side, side, QImage.Format_ARGB32)
    image.fill(QColor(0, 0, 0, 0))
    painter = QPainter(image)
    try:
        icon.paint(painter, 0, 0, side, side)
    finally:
        painter.end()
    return sum(1 for y in range(side) for x in range(side) if image.pixelColor(x, y).alpha() > 0)


@pytest.fixture(scope="module")
def registry(lcfusion_provider):
    return QgsApplication.processingRegistry()


def test_provider_identity(registry, lcfusion_provider):
    provider = registry.providerById("lcfusion")
    assert provider is not None
    assert provider.id() == "lcfusion"
    assert provider.name() == "Land Cover Fusion"
    assert provider.longName()
    assert provider.isActive()


def test_provider_lists_exactly_the_declared_algorithms(lcfusion_provider):
    ids = sorted(alg.id() for alg in lcfusion_provider.algorithms())
    assert ids == sorted(ALGORITHMS)


@pytest.mark.parametrize("algorithm_id", sorted(ALGORITHMS))
def test_algorithm_group_and_names(registry, algorithm_id):
    alg = registry.algorithmById(algorithm_id)
    assert alg is not None, f"{algorithm_id} is not registered"
    group, group_id = ALGORITHMS[algorithm_id]
    assert (alg.group(), alg.groupId()) == (group, group_id)
    assert alg.provider().id() == "lcfusion"
    assert alg.displayName() and alg.displayName() != alg.name()
    # createInstance() must give an independent, fully declared copy (dialogs and qgis_process
    # run copies, never the registered instance).
    copy = alg.create()
    assert copy is not alg
    assert [p.name() for p in copy.parameterDefinitions()] == [
        p.name() for p in alg.parameterDefinitions()]


@pytest.mark.parametrize("algorithm_id", sorted(ALGORITHMS))
def test_help_text_is_present_and_describes_the_parameters(registry, algorithm_id):
    alg = registry.algorithmById(algorithm_id)
    text = alg.shortHelpString()
    assert text and text.strip()
    assert "<p>" in text
    assert "\n" not in text, "QGIS shows each newline of the help as a line break"
    # The family, its paper and the parameters a user must set are explained in the help.
    for term in HELP_TERMS[algorithm_id]:
        assert term in text, term
    assert "Remote Sensing" in text or "ISPRS" in text or "Train " in text


def test_provider_icon_exists_and_renders(lcfusion_provider):
    path = plugin_root() / "resources" / "icons" / "lcfusion.svg"
    assert path.is_file()
    icon = lcfusion_provider.icon()
    assert not icon.isNull()
    assert _opaque_pixels(icon) > 100


@pytest.mark.parametrize("algorithm_id", sorted(ALGORITHMS))
def test_algorithm_icon_file_exists_and_renders(registry, algorithm_id):
    alg = registry.algorithmById(algorithm_id)
    path = Path(plugin_root()) / "resources" / "icons" / alg.icon_file
    assert path.is_file(), f"missing icon file {path}"
    icon = alg.icon()
    assert not icon.isNull()
    assert not icon.pixmap(QSize(24, 24)).isNull()
    assert _opaque_pixels(icon) > 100, f"{path.name} renders (almost) empty"


@pytest.mark.parametrize("algorithm_id", sorted(ALGORITHMS))
def test_every_parameter_has_a_description(registry, algorithm_id):
    alg = registry.algorithmById(algorithm_id)
    assert alg.parameterDefinitions()
    for parameter in alg.parameterDefinitions():
        assert parameter.description().strip(), f"{parameter.name()} has no description"
        assert parameter.description() != parameter.name()
    for output in alg.outputDefinitions():
        assert output.description().strip(), f"output {output.name()} has no description"


@pytest.mark.parametrize("algorithm_id", sorted(ALGORITHMS))
def test_advanced_parameters_are_flagged(registry, algorithm_id):
    alg = registry.algorithmById(algorithm_id)
    flagged = {p.name() for p in alg.parameterDefinitions()
               if p.flags() & QgsProcessingParameterDefinition.FlagAdvanced}
    assert flagged == ADVANCED[algorithm_id]


def test_raster_outputs_are_geotiff_only(registry, lcfusion_provider):
    assert lcfusion_provider.supportedOutputRasterLayerExtensions() == ["tif"]
    assert lcfusion_provider.defaultRasterFileExtension() == "tif"
    seen = 0
    for algorithm_id in ALGORITHMS:
        alg = registry.algorithmById(algorithm_id)
        for parameter in alg.parameterDefinitions():
            if isinstance(parameter, QgsProcessingParameterRasterDestination):
                seen += 1
                assert parameter.supportedOutputRasterLayerExtensions() == ["tif"]
                assert parameter.defaultFileExtension() == "tif"
                assert "*.tif" in parameter.createFileFilter()
                assert ".vrt" not in parameter.createFileFilter().lower()
    classifiers = sum(1 for a in ALGORITHMS if a.startswith("lcfusion:classify"))
    # each classifier's class map and confidence map, TWINNS's attention map and comparemaps'
    # disagreement raster
    assert seen == 2 * classifiers + 2


@pytest.mark.parametrize("family", ["fgunet", "mrfusion", "twinns"])
def test_the_deep_families_offer_an_ensemble_off_by_default_and_optional(registry, family):
    ensemble = registry.algorithmById(f"lcfusion:train{family}").parameterDefinition("ENSEMBLE")
    assert ensemble.defaultValue() is False
    assert ensemble.flags() & QgsProcessingParameterDefinition.FlagOptional


@pytest.mark.parametrize("family", ["fgunet", "mrfusion", "twinns"])
def test_the_training_settings_added_after_the_first_release_are_optional(registry, family):
    """A graphical model or a qgis_process call saved before these settings existed still
    runs, with their defaults (`LATER_PARAMETERS`)."""
    algorithm = registry.algorithmById(f"lcfusion:train{family}")
    later = {"TIME_LIMIT", *LOOP_ADVANCED} | (SERIES_ADVANCED if family != "mrfusion" else set())
    for name in sorted(later):
        parameter = algorithm.parameterDefinition(name)
        assert parameter is not None, name
        assert parameter.flags() & QgsProcessingParameterDefinition.FlagOptional, name
        assert parameter.defaultValue() is not None, name


def test_the_random_forest_offers_no_ensemble(registry):
    assert registry.algorithmById("lcfusion:trainrandomforest").parameterDefinition(
        "ENSEMBLE") is None


@pytest.mark.parametrize("family", ["fgunet", "mrfusion", "twinns", "randomforest"])
def test_outputs_of_each_algorithm(registry, family):
    train = registry.algorithmById(f"lcfusion:train{family}")
    model = train.parameterDefinition("OUTPUT_MODEL")
    assert isinstance(model, QgsProcessingParameterFileDestination)
    assert model.defaultFileExtension() == "lcfusion"
    assert {o.name() for o in train.outputDefinitions()} == {
        "OUTPUT_MODEL", "OUTPUT_REPORT", "OA", "KAPPA", "MEAN_F1", "OA_STD", "KAPPA_STD",
        "MEAN_F1_STD", "OUTPUT_SPLIT"}
    report = train.parameterDefinition("OUTPUT_REPORT")
    assert report.createByDefault() and "*.html" in report.fileFilter()
    split = train.parameterDefinition("OUTPUT_SPLIT")
    assert split.flags() & QgsProcessingParameterDefinition.FlagOptional
    assert split.createByDefault() and split.dataType() == QgsProcessing.TypeVectorPolygon

    classify = registry.algorithmById(f"lcfusion:classify{family}")
    destinations = {p.name(): p for p in classify.parameterDefinitions()
                    if isinstance(p, QgsProcessingDestinationParameter)}
    maps = {"OUTPUT_CONFIDENCE"} | ({"OUTPUT_ATTENTION"} if family == "twinns" else set())
    assert set(destinations) == {"OUTPUT", *maps}
    assert not destinations["OUTPUT"].flags() & QgsProcessingParameterDefinition.FlagOptional
    for name in maps:
        assert destinations[name].flags() & QgsProcessingParameterDefinition.FlagOptional
        assert not destinations[name].createByDefault()


@pytest.mark.parametrize("algorithm_id", sorted(ALGORITHMS))
def test_help_lists_every_default(registry, algorithm_id):
    alg = registry.algorithmById(algorithm_id)
    _, _, defaults = html.unescape(alg.shortHelpString()).partition("<h3>Defaults</h3>")
    for parameter in alg.parameterDefinitions():
        listed = f"<li>{parameter.description()}: <code>" in defaults
        has_default = parameter.defaultValue() not in (None, "")
        assert listed == (has_default and not parameter.isDestination()), parameter.name()


def test_defaults_are_shown_as_the_dialog_shows_them(registry):
    defaults = html.unescape(registry.algorithmById("lcfusion:traintwinns").shortHelpString())
    for item in ("Epochs (at most): <code>20</code>",
                 "Split method: <code>random per class (seeded)",
                 "Auxiliary classifiers: <code>yes</code>", "Auxiliary weight alpha: <code>0.3<"):
        assert item in defaults


def test_every_classification_can_write_cogs(registry, tmp_path):
    """Off by default and optional (models saved before it still run); it goes to the job's
    outputs, whose paths alone are cleaned up after a killed run."""
    for family in ("fgunet", "mrfusion", "twinns", "randomforest"):
        alg = registry.algorithmById(f"lcfusion:classify{family}").create()
        cog = alg.parameterDefinition("COG")
        assert cog.defaultValue() is False
        assert cog.flags() & QgsProcessingParameterDefinition.FlagOptional
        assert "Cloud Optimized GeoTIFF" in alg.shortHelpString()
        binding = next(b for b in alg.bindings if isinstance(b, CogBinding))
        for parameters, expected in (({}, False), ({"COG": True}, True)):
            draft = JobDraft(tmp_path)
            binding.to_job(alg, parameters, QgsProcessingContext(), QgsProcessingFeedback(),
                           draft)
            assert draft.sections["outputs"] == {"cog": expected}
    remove_partial_files([True, None], 1)


class WarningsKept(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.warnings: list[str] = []

    def pushWarning(self, warning):  # noqa: N802 - QGIS API
        self.warnings.append(warning)


def test_a_model_saved_to_a_temporary_file_is_said_to_be_lost_on_closing(registry, tmp_path):
    """The dialog's default for the model file is a temporary file, which QGIS deletes on
    closing: every training warns then, naming the parameter; a chosen file gets no warning."""
    for family in ("fgunet", "mrfusion", "twinns", "randomforest"):
        alg = registry.algorithmById(f"lcfusion:train{family}").create()
        binding = next(b for b in alg.bindings if getattr(b, "name", "") == "OUTPUT_MODEL")
        for value, warned in (("TEMPORARY_OUTPUT", True), (str(tmp_path / "m.lcfusion"), False)):
            feedback, draft = WarningsKept(), JobDraft(tmp_path)
            binding.to_job(alg, {"OUTPUT_MODEL": value}, QgsProcessingContext(), feedback,
                           draft)
            path = draft.sections["outputs"]["model"]
            assert feedback.warnings == ([
                f"Model file [OUTPUT_MODEL]: the trained model is saved to a temporary file, "
                f"{path}, which QGIS deletes when it closes; choose a file there to keep it"]
                if warned else []), family
