"""lcfusion:trainfgunet — train FG-UNET on a Sentinel-2 time series and reference polygons."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
)

from .base import EngineAlgorithm


class TrainFGUNet(EngineAlgorithm):
    algorithm_id = "trainfgunet"
    title = "Train FG-UNET (Sentinel-2 time series)"
    group_key = "training"
    command = "train-fgunet"
    icon_file = "train.svg"
    help_text = """
<p>Trains <b>FG-UNET</b> (Stoian et al., <i>Remote Sensing</i> 11(17):1986, 2019), a U-Net with a
per-pixel path, on a time series of multispectral images and sparse reference polygons.
Unlabelled pixels carry no loss, so the polygons need not cover the scene.</p>
<p>The polygons are split per class into training, validation and test polygons (whole
polygons, seeded). The network learns from class-balanced patches around training pixels, keeps
the weights of the epoch with the lowest validation loss and reports overall accuracy, Kappa
and mean F1 on the test polygons, which it never saw.</p>
<h3>Parameters</h3>
<ul>
<li><b>Time series rasters</b>: one raster per date (all on one grid), or one multi-date stack
with <b>Bands per date</b> set; they are used in date order when their names or band
descriptions give dates (a date given twice is refused). Optional <b>Cloud masks</b> (one band per
date, non-zero = cloud) mark dates as missing; with <b>Fill masked and nodata values</b> (on by
default) missing values are interpolated linearly in time between the nearest valid dates
(the nearest valid date at the ends), as iota2 does, and classification repeats the step.</li>
<li><b>Reference polygons</b>, <b>Class field</b> (integer codes or text names), optional
<b>Class name field</b> and <b>Class colour field</b> (<code>#rrggbb</code>). Without a colour
field, colours come from the layer's categorized style on the class field, else from the class
names (water blue, forest dark green, crops yellow, built-up red...), else from a palette. Names
and colours are stored in the model and style every map made with it.</li>
<li><b>Training / validation / test shares</b> of each class's polygons (default
0.6 / 0.2 / 0.2); every class needs at least one polygon in each part. <b>Split method</b>:
a seeded random draw per class, or the paper's protocol — each class's polygons sorted by area
and dealt to the parts in turn, so that every part gets large and small polygons (0.5 / 0.17 /
0.33 sends every third polygon to test).</li>
<li><b>Epochs</b>, <b>Batch size</b>, <b>Learning rate</b>, <b>Patch size</b> (multiple of 4):
defaults suit a CPU. The <b>paper</b> preset uses the paper's values (50 epochs of 10,000
patches of 64 x 64, batch 4, learning rate 1e-4) and replaces the values it covers.</li>
<li>Advanced: patches per epoch, validation patches, dates per chunk (0: up to 3 dates per
chunk, as in the paper), random shift of the patches, augmentation (flips and transposes),
class weights in the loss (default none: the patches are already drawn class-balanced, and
weighting the loss again by the paper's 1 / pixels made the map collapse onto the rarest class on
real data with few patches; the square root is gentler), device, tile size and margin of the
evaluation.</li>
</ul>
<p>Output: a model file (<code>.lcfusion</code>: weights and a description of inputs, classes,
normalisation and accuracy) for <i>Classify with FG-UNET</i>.</p>
"""

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.add_series(masks=True, gapfill=True)
        self.add_reference()
        self.add_split()
        self.add_epochs(10, early_stopping=0)
        self.add_int("BATCH_SIZE", "Batch size (patches)", "batch_size", 8, minimum=1)
        self.add_setting(QgsProcessingParameterNumber(
            "LEARNING_RATE", "Learning rate", type=QgsProcessingParameterNumber.Type.Double,
            defaultValue=1e-3, minValue=1e-7, maxValue=0.5), "learning_rate")
        self.add_int("PATCH_SIZE", "Patch size (pixels, multiple of 4)", "patch_size", 64,
                     minimum=8)
        presets = ("", "paper")
        self.add_setting(QgsProcessingParameterEnum(
            "PRESET", "Preset", options=["values above", "paper (Stoian et al. 2019)"],
            defaultValue=0), "preset", choices=presets)
        self.add_int("PATCHES_PER_EPOCH", "Patches per epoch", "patches_per_epoch", 256,
                     minimum=1, is_advanced=True)
        self.add_int("VALIDATION_PATCHES", "Validation patches", "validation_patches", 64,
                     is_advanced=True)
        self.add_int("DATES_PER_CHUNK", "Dates per chunk (0: automatic, up to 3)",
                     "dates_per_chunk", 0, is_advanced=True)
        self.add_int("MAX_SHIFT", "Random shift of patches around their pixel (pixels)",
                     "max_shift", 20, is_advanced=True)
        self.add_setting(QgsProcessingParameterBoolean(
            "AUGMENT", "Augment with flips and transposes", defaultValue=True), "augment",
            is_advanced=True)
        weightings = ("inverse", "sqrt", "none")
        self.add_setting(QgsProcessingParameterEnum(
            "CLASS_WEIGHTING", "Class weights in the loss", options=[
                "1 / pixels of the class (paper)", "1 / square root of the pixels",
                "none (the patches are drawn class-balanced)"], defaultValue=2),
            "class_weighting", True, weightings)
        self.add_sampling()
        self.add_class_priors()
        self.add_optimizer(schedule="cosine", keep="best-or-last")
        self.add_series_augmentation()
        self.add_compute()
        self.add_device()
        self.add_int("TILE_SIZE", "Evaluation tile size (pixels)", "tile_size", 512, minimum=16,
                     is_advanced=True)
        self.add_int("MARGIN", "Evaluation tile margin (pixels)", "margin", 20,
                     is_advanced=True)
        self.add_model_output()
        self.add_accuracy_outputs()
