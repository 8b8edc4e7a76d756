"""The lcfusion Processing provider."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms.area_accuracy import AreaAccuracy
from .algorithms.base import icon
from .algorithms.classify_fgunet import ClassifyFGUNet
from .algorithms.classify_mrfusion import ClassifyMRFusion
from .algorithms.classify_randomforest import ClassifyRandomForest
from .algorithms.classify_twinns import ClassifyTWINNS
from .algorithms.compare_maps import CompareMaps
from .algorithms.evaluate import Evaluate
from .algorithms.export_onnx import ExportOnnx
from .algorithms.sample_design import SampleDesign
from .algorithms.train_fgunet import TrainFGUNet
from .algorithms.train_mrfusion import TrainMRFusion
from .algorithms.train_randomforest import TrainRandomForest
from .algorithms.train_twinns import TrainTWINNS

ALGORITHMS = (TrainFGUNet, ClassifyFGUNet, TrainMRFusion, ClassifyMRFusion, TrainTWINNS,
              ClassifyTWINNS, TrainRandomForest, ClassifyRandomForest, Evaluate, SampleDesign,
              AreaAccuracy, CompareMaps, ExportOnnx)


class LcfusionProvider(QgsProcessingProvider):
    """Land Cover Fusion: deep land-cover models as Processing algorithms."""

    def id(self) -> str:
        return "lcfusion"

    def name(self) -> str:
        return "Land Cover Fusion"

    def longName(self) -> str:  # noqa: N802 - QGIS API
        return "Land Cover Fusion (MRFusion, TWINNS, FG-UNET)"

    def icon(self) -> QIcon:
        return icon("lcfusion.svg")

    def loadAlgorithms(self) -> None:  # noqa: N802 - QGIS API
        for algorithm in ALGORITHMS:
            self.addAlgorithm(algorithm())

    def supportedOutputRasterLayerExtensions(self) -> list[str]:  # noqa: N802 - QGIS API
        return ["tif"]
