"""lcfusion:classifyrandomforest — a class map from a trained Random Forest."""

from __future__ import annotations

from .base import EngineAlgorithm
from .train_randomforest import add_source_inputs


class ClassifyRandomForest(EngineAlgorithm):
    algorithm_id = "classifyrandomforest"
    title = "Classify with Random Forest"
    group_key = "classification"
    command = "classify-randomforest"
    icon_file = "classify.svg"
    help_text = """
<p>Applies a model trained with <i>Train Random Forest</i> and writes a class map on the grid
of its inputs (the model's class codes, names and colours; the PAN grid for a PAN + MS model)
and, optionally, a confidence map (the forest's probability of the chosen class, the mean over
its trees, 0–1).</p>
<p>The source is the model's: give the layers it was trained on. The scene is read tile by
tile with the halo the patch features need, and the features go through the forest in
batches, so memory does not depend on the size of the scene. The model's spectral indices,
backscatter scale, gap-filling and replacement of missing values are applied as in training;
pixels without any data are nodata.</p>
<h3>Parameters</h3>
<ul>
<li><b>Model file</b>: a <code>.lcfusion</code> file of the Random Forest family, or its
<code>.onnx</code> export (<i>Export a model to ONNX</i>), which runs with onnxruntime and needs
no PyTorch: the same maps.</li>
<li><b>Sentinel-2 rasters</b> (optionally with their cloud masks) for a Sentinel-2 model;
<b>Sentinel-1 rasters</b> and <b>Sentinel-2 rasters</b> for a Sentinel-1 + Sentinel-2 model;
<b>PAN</b> and <b>MS</b> for a PAN + MS model: the same dates and bands as for training (dated
series are put in the order of the model's dates), aligned as for training unless <b>Align the
MS onto the PAN grid</b> says otherwise.</li>
<li>Advanced: tile size; threads (0: all cores), over which the forest's trees are run.</li>
</ul>
"""

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.add_model_input("randomforest")
        add_source_inputs(self, model="MODEL")
        self.add_int("TILE_SIZE", "Tile size (pixels)", "tile_size", 128, minimum=16,
                     is_advanced=True)
        self.add_int("THREADS", "Threads (0: all cores)", "threads", 0, is_advanced=True)
        self.add_compute()
        self.add_class_map_output()
