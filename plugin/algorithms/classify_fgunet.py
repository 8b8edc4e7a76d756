"""lcfusion:classifyfgunet — a class map from a trained FG-UNET model."""

from __future__ import annotations

from .base import EngineAlgorithm


class ClassifyFGUNet(EngineAlgorithm):
    algorithm_id = "classifyfgunet"
    title = "Classify with FG-UNET"
    group_key = "classification"
    command = "classify-fgunet"
    icon_file = "classify.svg"
    help_text = """
<p>Applies a model trained with <i>Train FG-UNET</i> to a time series and writes a class map
(GeoTIFF of the model's class codes — 8-bit with nodata 255, or 16-bit with nodata 65535 when a
code is 255 or more — with the model's class names and colours) and,
optionally, a confidence map (the highest class probability, 0–1).</p>
<p>The image is processed in overlapping tiles (default 512 x 512 pixels); only each tile's
centre is kept (the margin, default 20 pixels, is discarded) and edges are reflect-padded, so
the memory used does not depend on the size of the raster.</p>
<h3>Parameters</h3>
<ul>
<li><b>Model file</b>: a <code>.lcfusion</code> file of the FG-UNET family, or its
<code>.onnx</code> export (<i>Export a model to ONNX</i>), which runs with onnxruntime and needs
no PyTorch: the same maps.</li>
<li><b>Time series rasters</b>: the same dates and bands as for training (one raster per
date, or one stack with <b>Bands per date</b>), and optionally their cloud masks. Dated layers
are put in the order of the model's dates; dates of another year are matched by their order in
the season (with a warning); undated layers must be in the order of training. Gap-filling is
applied when the model was trained with it.</li>
<li>Advanced: tile size, margin (a multiple of 4; 28 pixels or more makes the tiles
seamless, equal to one pass over the whole image, while the paper's 20 can leave faint
differences along tile edges) and device.</li>
</ul>
"""

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.add_model_input("fgunet")
        self.add_series(masks=True)
        self.add_int("TILE_SIZE", "Tile size (pixels, multiple of 4)", "tile_size", 512,
                     minimum=16, is_advanced=True)
        self.add_int("MARGIN", "Tile margin discarded at each edge (pixels)", "margin", 20,
                     is_advanced=True)
        self.add_tta()
        self.add_device()
        self.add_compute()
        self.add_class_map_output()
