"""Land Cover Fusion (lcfusion): QGIS plugin entry point."""


def classFactory(iface):  # noqa: N802 - name required by QGIS
    from .plugin.plugin import LcfusionPlugin

    return LcfusionPlugin(iface)
