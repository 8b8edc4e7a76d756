"""lcfusion:exportonnx — a model file as an ONNX model, for classifying without PyTorch."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
)

from ...engine.modelfile.header import SUFFIX
from .base import EngineAlgorithm
from .bindings.modelfile import ModelInputBinding
from .bindings.outputs import FileOutputBinding


class ExportOnnx(EngineAlgorithm):
    algorithm_id = "exportonnx"
    title = "Export a model to ONNX"
    group_key = "classification"
    command = "export-onnx"
    icon_file = "classify.svg"
    engine_packages = ("torch", "safetensors", "scikit-learn", "onnx", "onnxruntime")
    help_text = """
<p>Writes a model made by <i>Train FG-UNET</i>, <i>Train MRFusion</i>, <i>Train TWINNS</i> or
<i>Train Random Forest</i> (an ensemble of repeated splits too) as an <code>.onnx</code>
file. Every
<i>Classify</i> algorithm of the model's family accepts it as its <b>Model file</b> and runs it
with onnxruntime through the same tiles, readers and writers: the maps equal the PyTorch
model's (the same classes; probabilities within 0.0001, checked on an example when the file is
written). Classifying with it needs only the <i>light</i> engine environment (onnxruntime,
numpy, rasterio — no PyTorch), which <i>Create Engine Environment</i> offers.</p>
<p>The file carries everything classification needs, as the model file does: family, inputs
with their dates and bands, normalisation, class codes, names and colours, and a checksum
over them and the network. An FG-UNET export also carries the metadata keys the Deepness
plugin reads (model type, class names, resolution, tile size and overlap), so that it opens
there as it is; Deepness feeds its own scaling of the bands, not lcfusion's normalisation.</p>
<h3>Parameters</h3>
<ul>
<li><b>Model file</b>: a <code>.lcfusion</code> file of any family. FG-UNET becomes its
network on tiles; MRFusion its dense network (inputs: the tile's PAN with the patch halo, its
MS pixels and each row's and column's MS patch start); TWINNS its network on batches of S1
and S2 patches (the ConvGRU's dates unrolled); the Random Forest one ONNX-ML tree ensemble.</li>
<li>Advanced, for Deepness: the pixel size (metres), the tile size and the tile overlap
(percent).</li>
<li><b>ONNX model</b>: the <code>.onnx</code> file to write.</li>
</ul>
"""

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.bind(ModelInputBinding("MODEL", ""), QgsProcessingParameterFile(
            "MODEL", "Model file", fileFilter=f"lcfusion model (*{SUFFIX})"))
        self.add_setting(QgsProcessingParameterNumber(
            "RESOLUTION", "Pixel size for Deepness (metres)",
            type=QgsProcessingParameterNumber.Type.Double, defaultValue=10.0, minValue=0.001),
            "resolution", is_advanced=True)
        self.add_int("TILE_SIZE", "Tile size for Deepness (pixels)", "tile_size", 512,
                     minimum=16, is_advanced=True)
        self.add_int("OVERLAP", "Tile overlap for Deepness (percent)", "overlap", 15,
                     maximum=49, is_advanced=True)
        self.bind(FileOutputBinding("OUTPUT", "onnx"), QgsProcessingParameterFileDestination(
            "OUTPUT", "ONNX model", fileFilter="ONNX model (*.onnx)"))
        self.addOutput(QgsProcessingOutputString("FAMILY", "Model family"))
        self.addOutput(QgsProcessingOutputNumber(
            "MAX_DIFFERENCE", "Largest difference from the PyTorch probabilities"))
