"""lcfusion:classifytwinns — a class map from a trained TWINNS model (+ its attention map)."""

from __future__ import annotations

from .base import EngineAlgorithm


class ClassifyTWINNS(EngineAlgorithm):
    algorithm_id = "classifytwinns"
    title = "Classify with TWINNS"
    group_key = "classification"
    command = "classify-twinns"
    icon_file = "classify.svg"
    help_text = """
<p>Applies a model trained with <i>Train TWINNS</i> to Sentinel-1 and Sentinel-2 time series
and writes a class map on their grid (the model's class codes, names and colours) and,
optionally, a confidence map (the highest class probability, 0–1).</p>
<p>The scene is read tile by tile with the halo the patches need; all patches of a tile go
through the network in batches, so memory does not depend on the size of the scene. The model's
spectral indices, backscatter scale and gap-filling are applied as in training.</p>
<h3>Parameters</h3>
<ul>
<li><b>Model file</b>: a <code>.lcfusion</code> file of the TWINNS family, or its
<code>.onnx</code> export (<i>Export a model to ONNX</i>), which runs with onnxruntime and needs
no PyTorch: the same maps.</li>
<li><b>Sentinel-1 rasters</b> and <b>Sentinel-2 rasters</b>: the same dates and bands as for
training, put in the order of the model's dates when their names give dates (another year is
matched by order in the season, with a warning); optionally the S2 cloud masks.</li>
<li>Advanced: tile size and device.</li>
</ul>
<h3>Attention map</h3>
<p>TWINNS pools the ConvGRU states of each source over its dates with attention weights:
how much each date mattered for the pixel. <b>Attention map</b> (optional, off by default)
writes them: a float raster with one band per date, the Sentinel-1 dates then the Sentinel-2
dates, named like <code>S2 attention 2021-06-14</code> (band tags <code>LCFUSION_SOURCE</code>,
<code>LCFUSION_DATE</code>, and <code>LCFUSION_MEAN</code>, <code>LCFUSION_MIN</code> and
<code>LCFUSION_MAX</code> over the map). The weights of a source sum to 1 at every pixel; the
map is NaN where the class map has no data.
For an ensemble model they are the mean of its members' weights, and with test-time
augmentation the mean over the same 8 flips and rotations as the class probabilities; both
still sum to 1. It is written tile by tile, with averaged overviews, as a COG when asked. A
model without a ConvGRU branch (a CNN-only ablation) has no attention weights.</p>
<p>Loaded, the map shows three dates in red, green and blue: those whose mean weight over
the map stands out most from an even share of their source's dates (mean weight × the source's
number of dates), the most in red. The three share one stretch, from the lowest to the highest
weight any of them takes, so that their colours compare and narrow ranges still show contrast:
a red area is where the first date drove the model, yellow where the first two did, dark where
other dates did. The layer name says what is shown, as <i>TWINNS attention — model (R S1
2021-01-07, G S2 2021-06-14, B S2 2021-08-03; 0.05–0.42)</i>; the layer's properties show any
other date. A map of fewer than three dates shows its most attended date with the confidence
ramp (0–1).</p>
"""

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.add_model_input("twinns")
        self.add_series("Sentinel-1 rasters (VV, VH; in date order)", name="S1", key="s1",
                        label="Sentinel-1 series")
        self.add_series("Sentinel-2 rasters (in date order)", name="S2", key="s2",
                        label="Sentinel-2 series", masks=True)
        self.add_int("TILE_SIZE", "Tile size (pixels)", "tile_size", 128, minimum=16,
                     is_advanced=True)
        self.add_tta()
        self.add_device()
        self.add_compute()
        self.add_class_map_output()
        self.add_optional_map_output("OUTPUT_ATTENTION",
                                     "Attention map (weight of each date, per source)",
                                     "attention", "attention")
