"""The QGIS plugin object: registers the Processing provider and the Settings menu entry."""

from __future__ import annotations

from qgis.core import QgsApplication
from qgis.PyQt.QtWidgets import QAction

from .algorithms.base import icon
from .provider import LcfusionProvider

MENU = "Land Cover Fusion"


class LcfusionPlugin:
    """Registered in ``initProcessing`` so that headless ``qgis_process`` sees the provider;
    the menu entry is made in ``initGui``, which only a QGIS window calls."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider: LcfusionProvider | None = None
        self.settings_action: QAction | None = None

    def initProcessing(self) -> None:  # noqa: N802 - QGIS hook
        if self.provider is None:
            self.provider = LcfusionProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 - QGIS hook
        self.initProcessing()
        if self.iface is None or self.settings_action is not None:
            return
        self.settings_action = QAction(icon("lcfusion.svg"), "Settings…",
                                       self.iface.mainWindow())
        self.settings_action.setObjectName("lcfusionSettings")
        self.settings_action.triggered.connect(self.show_settings)
        self.iface.addPluginToMenu(MENU, self.settings_action)

    def show_settings(self) -> None:
        """Opens the settings dialog (modal)."""
        from .settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.iface.mainWindow())
        dialog.exec_()
        dialog.deleteLater()

    def unload(self) -> None:
        if self.settings_action is not None:
            self.iface.removePluginMenu(MENU, self.settings_action)
            self.settings_action.deleteLater()
            self.settings_action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
