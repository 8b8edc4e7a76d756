"""lcfusion:classifytwinns — a class map from a trained TWINNS model."""

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
