"""The QGIS plugin object: registers the Processing provider."""

from __future__ import annotations

from qgis.core import QgsApplication

from .provider import LcfusionProvider


class LcfusionPlugin:
    """Registered in ``initProcessing`` so that headless ``qgis_process`` sees the provider."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider: LcfusionProvider | None = None

    def initProcessing(self) -> None:  # noqa: N802 - QGIS hook
        if self.provider is None:
            self.provider = LcfusionProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 - QGIS hook
        self.initProcessing()

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
