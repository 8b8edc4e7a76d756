"""lcfusion:trainrandomforest — the Random Forest baseline on any source of the deep models."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterString,
)

from ...engine.io.indices import DEFAULT_INDICES
from .base import EngineAlgorithm

#: Source value -> label, shared with the classify algorithm.
SOURCES = {"s2": "Sentinel-2 time series",
           "s1s2": "Sentinel-1 + Sentinel-2 time series (the TWINNS inputs)",
           "panms": "PAN + MS pair, on the PAN grid (the MRFusion inputs)"}
FEATURES = {"pixel": "the pixel's values", "patch_flat": "patch: every value",
            "patch_stats": "patch: mean, standard deviation, min and max per channel"}
MAX_FEATURES = {"sqrt": "square root of the feature count (scikit-learn, OTB)",
                "log2": "log2 of the feature count", "all": "all features"}


def add_source_inputs(alg: EngineAlgorithm, model: str | None = None) -> None:
    """The source choice and the layers of every source (those of the chosen one required)."""
    source = alg.add_source(SOURCES, model)
    s2 = alg.add_series("Sentinel-2 rasters (in date order)", name="S2", key="s2",
                        label="Sentinel-2 series", masks=True, gapfill=model is None,
                        optional=True)
    alg.only_for(source, s2, "s2", "s1s2")
    s1 = alg.add_series("Sentinel-1 rasters (VV, VH; in date order)", name="S1", key="s1",
                        label="Sentinel-1 series", optional=True)
    alg.only_for(source, s1, "s1s2")
    alg.only_for(source, alg.add_pan_ms(optional=True, model=model is not None), "panms")


class TrainRandomForest(EngineAlgorithm):
    algorithm_id = "trainrandomforest"
    title = "Train Random Forest (baseline: S2, S1 + S2 or PAN + MS)"
    group_key = "training"
    command = "train-randomforest"
    icon_file = "train.svg"
    help_text = """
<p>Trains a <b>Random Forest</b>, the operational baseline of land-cover chains such as iota2
and the Orfeo ToolBox (OTB) and the baseline the MRFusion, TWINNS and FG-UNET papers compare
with, on the same inputs and the same object-level split as the deep models, so that their
maps can be compared on the same test polygons (same split shares and seed).</p>
<h3>Parameters</h3>
<ul>
<li><b>Source</b>: a <b>Sentinel-2 time series</b> (as FG-UNET), <b>Sentinel-1 +
Sentinel-2 time series</b> (as TWINNS: S1 in dB, the spectral indices added to each S2 date)
or a <b>PAN + MS pair</b> (as MRFusion, on the PAN grid: a PAN pixel's values are its PAN value
and the bands of the MS pixel that contains it; the grid checks of MRFusion apply and, as
there, <b>Align the MS onto the PAN grid</b> resamples an MS off the PAN grid, e.g. Landsat's,
and crops an overhanging PAN; nothing is resampled by default). Only the layers of the chosen
source are needed: <b>Sentinel-2 rasters</b> (with optional <b>Cloud masks</b> and <b>Fill
masked and nodata values</b>), <b>Sentinel-1 rasters</b>, <b>PAN</b> and <b>MS</b>.</li>
<li><b>Add spectral indices</b> to each S2 date (default: NDVI, NDWI, MNDWI, NDBI, NDRE and a
brightness index). The bands of their roles (blue, green, red, rededge, nir, swir1) are read
from the band descriptions (Red, NIR, SWIR1..., Sentinel-2 codes B04, B08..., Landsat SR_B4...)
or given in <b>Band roles</b> (<code>role=band</code>, a band name or 1-based number, e.g.
<code>nir=4,red=3</code>); an index whose bands are not found is left out, with a warning in
the log. The indices used and their bands are recorded in the model.</li>
<li><b>Features</b> of a pixel: its values (default), or the <b>Patch size</b> x patch size
patch around it (odd, default 5), either every value of the patch or per channel its mean,
standard deviation, minimum and maximum.</li>
<li><b>Reference polygons</b>, <b>Class field</b>, optional name and colour fields; shares of
each class's polygons for training / validation / test (default 0.6 / 0.2 / 0.2, as the deep
models: the forest needs no validation polygons, which are left out unless <b>Train on the
validation polygons too</b> is set), split method and seed.</li>
<li><b>Training pixels per class</b>: at most N pixels of each class are drawn from the
training polygons (default 1000, iota2's way of balancing the classes), with the seed. Pixels
without any data are left out; the remaining missing values are replaced by the mean of the
training sample (kept in the model and applied when classifying).</li>
<li><b>Trees</b> (default 100) and <b>Maximum depth</b> (default 25, 0: unlimited), the
defaults of iota2 and OTB; advanced: features tried at each split (default the square root of
their number), the backscatter scale of S1, the number of threads (0: all cores) and the
evaluation tile size.</li>
</ul>
<p>The forest trains here, on this machine's CPU cores (scikit-learn); it has no compute
profile. It is stored in the model file as plain arrays (every tree's nodes, thresholds and
leaf class distributions), never as pickled Python objects. The log lists the most important
features. Output: a model file (<code>.lcfusion</code>) for <i>Classify with Random
Forest</i>.</p>
"""

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        add_source_inputs(self)
        self.add_setting(QgsProcessingParameterBoolean(
            "ADD_INDICES", "Add spectral indices to each Sentinel-2 date", defaultValue=True),
            "add_indices")
        self.add_setting(QgsProcessingParameterString(
            "INDICES", "Spectral indices (comma-separated)",
            defaultValue=",".join(DEFAULT_INDICES)), "indices", True)
        self.add_setting(QgsProcessingParameterString(
            "BAND_ROLES", "Band roles of the indices (role=band name or number)",
            defaultValue="", optional=True),
            "band_roles", True)
        self.add_reference()
        self.add_split(0.6, 0.2, 0.2, ensemble=False)
        self.add_setting(QgsProcessingParameterEnum(
            "FEATURES", "Features", options=list(FEATURES.values()), defaultValue=0),
            "features", choices=tuple(FEATURES))
        self.add_int("PATCH_SIZE", "Patch size (pixels, odd)", "patch_size", 5, minimum=1)
        self.add_int("SAMPLES_PER_CLASS", "Training pixels per class (at most)",
                     "samples_per_class", 1000, minimum=1)
        self.add_int("N_TREES", "Trees", "n_trees", 100, minimum=1)
        self.add_int("MAX_DEPTH", "Maximum depth (0: unlimited)", "max_depth", 25)
        self.add_setting(QgsProcessingParameterEnum(
            "MAX_FEATURES", "Features tried at each split", options=list(MAX_FEATURES.values()),
            defaultValue=0), "max_features", True, tuple(MAX_FEATURES))
        self.add_setting(QgsProcessingParameterBoolean(
            "TRAIN_ON_VALIDATION", "Train on the validation polygons too", defaultValue=False),
            "train_on_validation", True)
        self.add_class_priors()
        self.add_setting(QgsProcessingParameterEnum(
            "S1_SCALE", "Sentinel-1 backscatter given in", options=[
                "dB", "linear power (converted to dB)"], defaultValue=0), "s1_scale", True,
            ("db", "linear"))
        self.add_int("THREADS", "Threads (0: all cores)", "threads", 0, is_advanced=True)
        self.add_int("TILE_SIZE", "Evaluation tile size (pixels)", "tile_size", 128,
                     minimum=16, is_advanced=True)
        self.add_model_output()
        self.add_accuracy_outputs()
