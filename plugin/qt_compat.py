"""What no single spelling covers on both QGIS's Qt5 builds (QGIS 3) and its Qt6 builds
(QGIS 4, and the Qt6 builds of late QGIS 3): the type a new `QgsField` is given.

Everything else in the plugin is written once, in the scoped form both builds know
(``QMessageBox.StandardButton.Yes``, ``QgsWkbTypes.GeometryType.PolygonGeometry``);
tests/plugin/test_qt6_compat.py checks that.
"""

from __future__ import annotations

from qgis.core import Qgis
from qgis.PyQt.QtCore import QT_VERSION_STR, QMetaType, QVariant

#: Whether QGIS runs on Qt6.
QT6 = int(QT_VERSION_STR.split(".")[0]) >= 6
#: Whether QgsField takes a QMetaType.Type (QGIS 3.38 and later).
QMETATYPE_FIELDS = QT6 or Qgis.QGIS_VERSION_INT >= 33800


def field_type(meta_type: QMetaType.Type) -> QMetaType.Type | QVariant.Type:
    """The type to give `QgsField` for `meta_type`: `meta_type` itself from QGIS 3.38 on (its
    QMetaType constructor; the QVariant.Type one is deprecated there) and on Qt6, where PyQt6 has
    no QVariant.Type; before 3.38 the QVariant.Type of the same value, the only type QGIS 3.22's
    QgsField takes. (A field's ``type()`` compares equal to QMetaType.Type members on both.)"""
    return meta_type if QMETATYPE_FIELDS else QVariant.Type(int(meta_type))
