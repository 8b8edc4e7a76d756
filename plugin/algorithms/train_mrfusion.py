"""lcfusion:trainmrfusion — train MRFusion on a PAN + MS pair and reference polygons."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
)

from .base import EngineAlgorithm


class TrainMRFusion(EngineAlgorithm):
    algorithm_id = "trainmrfusion"
    title = "Train MRFusion (PAN + MS)"
    group_key = "training"
    command = "train-mrfusion"
    icon_file = "train.svg"
    help_text = """
<p>Trains <b>MRFusion</b> (Gaetano, Ienco, Ose and Cresson, <i>Remote Sensing</i> 10(11):1746,
2018): a two-branch network that labels every panchromatic pixel from a PAN patch and the
multispectral patch over the same ground, each at its own resolution — no pansharpening and no
resampling.</p>
<p>The polygons are split per class into training, validation and test polygons (whole
polygons, seeded). The network learns from PAN pixels of the training polygons, drawn
class-balanced, with the same random 90-degree rotation and transpose applied to the PAN and MS
patches, and reports overall accuracy, Kappa and mean F1 on the test polygons.</p>
<h3>Parameters</h3>
<ul>
<li><b>PAN</b>: one band. <b>MS</b>: any number of bands, in the PAN's CRS, on a grid whose
pixel size is a whole multiple r of the PAN's (4 for SPOT 6/7 and WorldView; 2 is common too).
Real products are not exact: ratios and origins are accepted when every MS pixel edge lies
within a quarter of a PAN pixel of a PAN pixel edge over the whole image, and the log says
what was reconciled. The MS must cover the PAN.</li>
<li><b>Align the MS onto the PAN grid</b> (<code>ALIGN_MS</code>): <i>No</i> (default)
refuses an MS whose pixel edges are more than a quarter of a PAN pixel off the PAN's. Landsat
8/9 pairs are offset by design (PAN and MS pixel centres meet at the scene corner, so the grids
are half a PAN pixel apart and the PAN has an odd number of rows): <i>Resample the MS</i>
(bilinear, or nearest neighbour to keep the MS values) puts it onto the grid of whole PAN-pixel
blocks nearest to it, and the PAN is cropped to the ground those MS pixels cover when it
overhangs the MS by less than one MS pixel; the log says by how much the MS moved and what was
cropped, the maps are on the cropped PAN grid, and the model records the choice.</li>
<li><b>Reference polygons</b>, <b>Class field</b> (integer codes or text names), optional
<b>Class name field</b> and <b>Class colour field</b> (<code>#rrggbb</code>).</li>
<li><b>Training / validation / test shares</b> of each class's polygons (default 0.6 / 0.2 / 0.2:
validation polygons choose the best epoch and stop the training; the paper's protocol is
0.3 / 0 / 0.7, without them), <b>Split method</b> and <b>Random seed</b>.</li>
<li><b>Patch size</b> on the PAN (a multiple of r; the MS patch is its side / r). The default
(0) follows the ratio: the paper's 32 at r = 4 (an MS patch of 8 x 8), 20 at r = 2 (MS 10 x 10:
on a real 10 m / 20 m Sentinel-2 pair it scored 5 points more validation accuracy than 32 in
half the time), otherwise the smallest multiple of r of at least 20 that the network takes; the
model records the size used. The patch of a pixel has the pixel just below and right of its
centre; its MS patch starts at the MS pixel edge nearest to the PAN patch's edge.</li>
<li><b>Epochs</b>, <b>Batch size</b>, <b>Learning rate</b>, <b>Augmentation</b>: defaults suit a
CPU. The <b>paper</b> preset uses the paper's values (250 epochs, batch 64, learning rate 2e-4,
30 % / 70 % train / test polygons) and replaces the values it covers.</li>
<li>Advanced: samples per epoch and validation samples, <b>Branches</b> (both, as in the paper,
or the PAN-only and MS-only ablations — recorded in the model), device and the tile size of the
evaluation.</li>
</ul>
<p>Output: a model file (<code>.lcfusion</code>) for <i>Classify with MRFusion</i>.</p>
"""

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.add_pan_ms(patch_size="PATCH_SIZE")
        self.add_reference()
        self.add_split(0.6, 0.2, 0.2)
        self.add_int("PATCH_SIZE", "Patch size on the PAN (pixels, a multiple of the ratio; "
                     "0: by the ratio)", "patch_size", 0, minimum=0)
        self.add_epochs(10, early_stopping=0)
        self.add_int("BATCH_SIZE", "Batch size (patches)", "batch_size", 64, minimum=1)
        self.add_setting(QgsProcessingParameterNumber(
            "LEARNING_RATE", "Learning rate", type=QgsProcessingParameterNumber.Type.Double,
            defaultValue=5e-4, minValue=1e-7, maxValue=0.5), "learning_rate")
        self.add_setting(QgsProcessingParameterBoolean(
            "AUGMENT", "Augment with 90-degree rotations and transposes", defaultValue=True),
            "augment")
        self.add_setting(QgsProcessingParameterEnum(
            "PRESET", "Preset", options=["values above", "paper (Gaetano et al. 2018)"],
            defaultValue=0), "preset", choices=("", "paper"))
        self.add_int("SAMPLES_PER_EPOCH", "Training samples per epoch", "samples_per_epoch",
                     2048, minimum=1, is_advanced=True)
        self.add_int("VALIDATION_SAMPLES", "Validation samples", "validation_samples", 512,
                     is_advanced=True)
        self.add_setting(QgsProcessingParameterEnum(
            "BRANCHES", "Branches", options=[
                "PAN and MS (the paper's network)", "PAN branch only (ablation)",
                "MS branch only (ablation)"], defaultValue=0), "branches", True,
            ("both", "pan", "ms"))
        self.add_sampling()
        self.add_class_priors()
        self.add_optimizer()
        self.add_compute()
        self.add_device()
        self.add_int("TILE_SIZE", "Evaluation tile size (PAN pixels)", "tile_size", 256,
                     minimum=16, is_advanced=True)
        self.add_model_output()
        self.add_accuracy_outputs()
