"""lcfusion:classifymrfusion — a class map at PAN resolution from a trained MRFusion model."""

from __future__ import annotations

from .base import EngineAlgorithm


class ClassifyMRFusion(EngineAlgorithm):
    algorithm_id = "classifymrfusion"
    title = "Classify with MRFusion"
    group_key = "classification"
    command = "classify-mrfusion"
    icon_file = "classify.svg"
    help_text = """
<p>Applies a model trained with <i>Train MRFusion</i> to a PAN + MS pair and writes a class
map on the PAN grid (GeoTIFF of the model's class codes with its class names and colours) and,
optionally, a confidence map (the highest class probability, 0–1).</p>
<p>Every PAN pixel gets exactly the answer of its own PAN and MS patches, but the work is
shared: the convolutions run once over each tile (pooling with stride 1 and dilated
convolutions after it), which is many times faster than evaluating one patch per pixel. Tiles
are read with the halo the patches need, so memory does not depend on the size of the image
and the map has no seams. Pixels where the PAN or the MS has no data are nodata.</p>
<h3>Parameters</h3>
<ul>
<li><b>Model file</b>: a <code>.lcfusion</code> file of the MRFusion family, or its
<code>.onnx</code> export (<i>Export a model to ONNX</i>), which runs with onnxruntime and needs
no PyTorch: the same maps.</li>
<li><b>PAN</b> and <b>MS</b>: the same bands, in the same order, and the same PAN/MS ratio as
for training.</li>
<li><b>Align the MS onto the PAN grid</b>: as for training (default, the choice the model
records), or no, or resample the MS (bilinear or nearest) and crop an overhanging PAN (see
<i>Train MRFusion</i>); the class map is on the (cropped) PAN grid.</li>
<li>Advanced: tile size (PAN pixels; lower it when memory is short) and device.</li>
</ul>
"""

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.add_model_input("mrfusion")
        self.add_pan_ms(model=True)
        self.add_int("TILE_SIZE", "Tile size (PAN pixels)", "tile_size", 256, minimum=16,
                     is_advanced=True)
        self.add_tta()
        self.add_device()
        self.add_compute()
        self.add_class_map_output()
