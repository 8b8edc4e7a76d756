"""lcfusion:traintwinns — train TWINNS on Sentinel-1 and Sentinel-2 time series."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ...engine.io.indices import DEFAULT_INDICES
from .base import EngineAlgorithm


class TrainTWINNS(EngineAlgorithm):
    algorithm_id = "traintwinns"
    title = "Train TWINNS (Sentinel-1 + Sentinel-2 time series)"
    group_key = "training"
    command = "train-twinns"
    icon_file = "train.svg"
    help_text = """
<p>Trains <b>TWINNS</b> (Ienco, Interdonato, Gaetano and Ho Tong Minh, <i>ISPRS Journal of
Photogrammetry and Remote Sensing</i> 158:11-22, 2019): for each of Sentinel-1 and Sentinel-2,
a CNN over a small patch of the whole time series and a ConvGRU over the dates with attention
(which dates matter); the four feature sets feed a fusion classifier, and an auxiliary
classifier on each adds alpha times its loss: L = L<sub>fusion</sub> + alpha &#8721;
L<sub>aux</sub>.</p>
<p>The polygons are split per class into training, validation and test polygons (whole
polygons, seeded); training pixels are drawn class-balanced; accuracy is reported on the test
polygons, and the log lists, per class, the dates with the most attention.</p>
<h3>Parameters</h3>
<ul>
<li><b>Sentinel-1 rasters</b> (VV, VH per date) and <b>Sentinel-2 rasters</b>: each a list of
single-date layers or one stack with <b>Bands per date</b>, used in date order when their names
or band descriptions give dates (a date given twice is refused). The two may have
different dates and numbers of dates but must share one grid. Optional <b>Cloud masks</b> of
the S2 dates (non-zero = cloud); masked and nodata values are never used as numbers: with
<b>Fill masked and nodata values</b> (default) they are interpolated linearly in time between
the nearest valid dates (nearest valid date at the ends), else they count as missing.</li>
<li><b>Add spectral indices</b> to each S2 date (default: NDVI, NDWI, MNDWI, NDBI, NDRE and a
brightness index). The bands of their roles (blue, green, red, rededge, nir, swir1) are read
from the band descriptions (Red, NIR, SWIR1..., Sentinel-2 codes B04, B08..., Landsat SR_B4...)
or given in <b>Band roles</b> (<code>role=band</code>, a band name or 1-based number, e.g.
<code>nir=4,red=3</code>); an index whose bands are not found is left out, with a warning in
the log. The indices used and their bands are recorded in the model.</li>
<li><b>Reference polygons</b>, <b>Class field</b>, optional name and colour fields; shares of
polygons for training / validation / test; the presets <b>Reunion</b> (30 / 20 / 50) and
<b>Koumbia</b> (50 / 30 / 20) use the paper's splits with Adam 2e-4 and batches of 64.</li>
<li><b>Patch size</b> (odd, default 5), <b>Auxiliary weight alpha</b> (default 0.3, as in the
group's M3Fusion), epochs, batch size, learning rate.</li>
<li>Advanced: the paper's ablations — one source only, CNN or ConvGRU branches only, no
auxiliary classifiers (recorded in the model) — backscatter scale (dB or linear power,
converted to dB), samples per epoch, device and the evaluation tile size.</li>
</ul>
<p>Output: a model file (<code>.lcfusion</code>) for <i>Classify with TWINNS</i>.</p>
"""

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.add_series("Sentinel-1 rasters (VV, VH; in date order)", name="S1", key="s1",
                        label="Sentinel-1 series")
        self.add_series("Sentinel-2 rasters (in date order)", name="S2", key="s2",
                        label="Sentinel-2 series", masks=True, gapfill=True)
        self.add_setting(QgsProcessingParameterBoolean(
            "ADD_INDICES", "Add spectral indices to each Sentinel-2 date", defaultValue=True),
            "add_indices")
        self.add_setting(QgsProcessingParameterString(
            "INDICES", "Spectral indices (comma-separated)", defaultValue=",".join(
                DEFAULT_INDICES)), "indices")
        self.add_setting(QgsProcessingParameterString(
            "BAND_ROLES", "Band roles of the indices (role=band name or number)",
            defaultValue="", optional=True),
            "band_roles")
        self.add_reference()
        self.add_split(0.6, 0.2, 0.2)
        self.add_setting(QgsProcessingParameterEnum(
            "PRESET", "Preset", options=["values above", "paper, Reunion (30 / 20 / 50 split)",
                                         "paper, Koumbia (50 / 30 / 20 split)"],
            defaultValue=0), "preset", choices=("", "reunion", "koumbia"))
        self.add_int("PATCH_SIZE", "Patch size (pixels, odd)", "patch_size", 5, minimum=1)
        self.add_setting(QgsProcessingParameterNumber(
            "ALPHA", "Auxiliary weight alpha", type=QgsProcessingParameterNumber.Type.Double,
            defaultValue=0.3, minValue=0.0), "alpha")
        self.add_epochs(20, early_stopping=0)
        self.add_int("BATCH_SIZE", "Batch size (pixels)", "batch_size", 64, minimum=1)
        self.add_setting(QgsProcessingParameterNumber(
            "LEARNING_RATE", "Learning rate", type=QgsProcessingParameterNumber.Type.Double,
            defaultValue=1e-3, minValue=1e-7, maxValue=0.5), "learning_rate")
        self.add_setting(QgsProcessingParameterEnum(
            "SOURCES", "Sources", options=["Sentinel-1 and Sentinel-2 (the paper's network)",
                                           "Sentinel-1 only (ablation)",
                                           "Sentinel-2 only (ablation)"], defaultValue=0),
            "sources", True, ("both", "s1", "s2"))
        self.add_setting(QgsProcessingParameterEnum(
            "BRANCHES", "Branches", options=["CNN and ConvGRU (the paper's network)",
                                             "CNN only (ablation)", "ConvGRU only (ablation)"],
            defaultValue=0), "branches", True, ("both", "cnn", "rnn"))
        self.add_setting(QgsProcessingParameterBoolean(
            "AUXILIARY", "Auxiliary classifiers", defaultValue=True), "auxiliary", True)
        self.add_setting(QgsProcessingParameterEnum(
            "S1_SCALE", "Sentinel-1 backscatter given in", options=[
                "dB", "linear power (converted to dB)"], defaultValue=0), "s1_scale", True,
            ("db", "linear"))
        self.add_int("SAMPLES_PER_EPOCH", "Training samples per epoch", "samples_per_epoch",
                     2048, minimum=1, is_advanced=True)
        self.add_int("VALIDATION_SAMPLES", "Validation samples", "validation_samples", 512,
                     is_advanced=True)
        self.add_sampling()
        self.add_class_priors()
        self.add_optimizer()
        self.add_series_augmentation()
        self.add_compute()
        self.add_device()
        self.add_int("TILE_SIZE", "Evaluation tile size (pixels)", "tile_size", 128,
                     minimum=16, is_advanced=True)
        self.add_model_output()
        self.add_accuracy_outputs()
