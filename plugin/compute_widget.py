"""The compute profile parameter's widget in Processing dialogs: an editable list of the
known profiles (``local`` and those of the profiles file). The parameter stays a plain
string, so that ``qgis_process`` and models pass any profile name."""

from __future__ import annotations

from processing.gui.wrappers import DIALOG_MODELER, WidgetWrapper
from qgis.core import QgsProcessingOutputString, QgsProcessingParameterString
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QComboBox

from ..engine.compute.profiles import LOCAL, ComputeProfile, load_profiles
from ..engine.errors import LcfusionError
from .settings import profiles_path


def known_profiles() -> dict[str, ComputeProfile]:
    """The profiles of the profiles file in use; ``local`` alone when it cannot be read
    (the algorithm's check then says why)."""
    try:
        return load_profiles(profiles_path())
    except LcfusionError:
        return {LOCAL: ComputeProfile(LOCAL)}


class ComputeProfileWidgetWrapper(WidgetWrapper):
    """An editable combo box of the known profiles; in the modeler, also the model's string
    inputs and outputs."""

    def createWidget(self) -> QComboBox:  # noqa: N802 - QGIS API
        combo = QComboBox()
        combo.setEditable(True)
        if self.dialogType == DIALOG_MODELER:
            for source in self.dialog.getAvailableValuesOfType(QgsProcessingParameterString,
                                                               QgsProcessingOutputString):
                combo.addItem(self.dialog.resolveValueDescription(source), source)
        for name, profile in known_profiles().items():
            combo.addItem(name, name)
            combo.setItemData(combo.count() - 1, profile.describe(), Qt.ItemDataRole.ToolTipRole)
        combo.setToolTip("A profile of the settings (Plugins › Land Cover Fusion › Settings…)"
                         ", or any profile name")
        return combo

    def setValue(self, value) -> None:  # noqa: N802 - QGIS API
        self.setComboValue(value or LOCAL)

    def value(self):
        return self.comboValue()
