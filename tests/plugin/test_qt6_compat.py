"""One codebase for QGIS 3.22 (Qt5) through QGIS 4 (Qt6): the plugin's source follows the rules
of tests/qt6_rules.py (scoped enums, exec(), Qt only through qgis.PyQt), the checker finds
planted breaches of each rule, and the metadata lets QGIS 4 install the plugin."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
import qt6_rules
from qgis.core import QgsField
from qgis.PyQt.QtCore import QT_VERSION_STR, QMetaType

from lcfusion.plugin.qt_compat import QT6, field_type

needs_pyqt6 = pytest.mark.skipif(
    not qt6_rules.pyqt6_installed(),
    reason="PyQt6 is not installed, so Qt6 names cannot be checked (Debian: python3-pyqt6, "
           "one of make setup's APT_PACKAGES)")

#: Every rule broken once; the comment at the end of a line names what the checker must say.
BROKEN = '''\
from qgis.core import Qgis, QgsWkbTypes
from qgis.PyQt.QtCore import QVariant
from qgis.PyQt.QtWidgets import QMessageBox
from PyQt5.QtCore import Qt  # import of PyQt5.QtCore


def ask(parent):
    box = QMessageBox(parent)
    box.exec_()  # exec_() does not exist in PyQt6: use exec()
    icon = QMessageBox
    answer = box.question(parent, "Title", "Question?")
    return (answer == QMessageBox.Yes,  # use QMessageBox.StandardButton.Yes
            icon.Warning,  # use QMessageBox.Icon.Warning
            QgsWkbTypes.PolygonGeometry,  # use QgsWkbTypes.GeometryType.PolygonGeometry
            Qgis.Info,  # use Qgis.MessageLevel.Info
            QgsWkbTypes.GeometryType.Hexagon,  # QgsWkbTypes.GeometryType.Hexagon does not exist
            QVariant.Type.String)  # QVariant.Type.String: PyQt6 (QGIS 4) has no QVariant.Type
'''

#: The same code written for both Qt5 and Qt6.
CLEAN = '''\
from qgis.core import Qgis, QgsWkbTypes
from qgis.PyQt.QtCore import QMetaType
from qgis.PyQt.QtWidgets import QAction, QHBoxLayout, QMessageBox


def ask(parent):
    box = QMessageBox(parent)
    box.exec()
    buttons = QHBoxLayout()
    buttons.addWidget(box)
    buttons = QMessageBox.StandardButton
    answer = box.question(parent, "Title", "Question?")
    return (answer == buttons.Yes, QMessageBox.Icon.Warning,
            QgsWkbTypes.GeometryType.PolygonGeometry, Qgis.MessageLevel.Info,
            QMetaType.Type.QString, QAction)
'''


def expected_problems(source: str) -> set[tuple[int, str]]:
    """(line, expected text) of the ``# ...`` notes in `source`."""
    return {(number, line.split("  # ")[1]) for number, line in
            enumerate(source.splitlines(), start=1) if "  # " in line}


def found_problems(tmp_path: Path, source: str, qt6: bool) -> list[qt6_rules.Problem]:
    path = tmp_path / "plugin_code.py"
    path.write_text(source, encoding="utf-8")
    return qt6_rules.problems([path], root=tmp_path, qt6=qt6)


def matches(expected: set[tuple[int, str]], found: list[qt6_rules.Problem]) -> bool:
    """Whether each expected note is in the one problem reported on its line."""
    return len(found) == len(expected) and all(
        any(p.line == line and text in p.text for p in found) for line, text in expected)


def test_plugin_code_scopes_every_enum_and_exists_on_qgis_3_22(qgis_app):
    problems = qt6_rules.problems(qt6_rules.plugin_files(), qt6=False)
    assert not problems, "\n".join(map(str, problems))


@needs_pyqt6
def test_plugin_code_resolves_in_pyqt6(qgis_app):
    references = [r for path in qt6_rules.plugin_files() for r in qt6_rules.scan(path)[0]]
    assert len(references) > 100  # the plugin's Qt and QGIS names were all found
    problems = qt6_rules.pyqt6_problems(references)
    assert not problems, "\n".join(map(str, problems))


def test_checker_finds_each_broken_rule_on_qgis_3_22(qgis_app, tmp_path):
    expected = {(line, text) for line, text in expected_problems(BROKEN)
                if "PyQt6 (QGIS 4) has no" not in text}
    found = found_problems(tmp_path, BROKEN, qt6=False)
    assert matches(expected, found), "\n".join(map(str, found))


@needs_pyqt6
def test_checker_finds_what_only_pyqt6_lacks(qgis_app, tmp_path):
    found = found_problems(tmp_path, BROKEN, qt6=True)
    assert matches(expected_problems(BROKEN), found), "\n".join(map(str, found))


def test_checker_passes_code_written_for_both(qgis_app, tmp_path):
    found = found_problems(tmp_path, CLEAN, qt6=qt6_rules.pyqt6_installed())
    assert not found, "\n".join(map(str, found))


@needs_pyqt6
def test_each_qt5_only_exception_is_used_and_missing_in_pyqt6():
    used = []
    for path, dotted in qt6_rules.QT5_ONLY:
        references = [r for r in qt6_rules.scan(qt6_rules.REPO / path)[0] if r.dotted == dotted]
        assert references, f"{path} no longer uses {dotted}: drop it from QT5_ONLY"
        used.append(references[0])
    missing = qt6_rules.ask_pyqt6(used)
    assert all(missing), [r.dotted for r, gone in zip(used, missing, strict=True) if not gone]


def test_new_fields_get_the_type_this_qt_build_takes(qgis_app):
    assert QT6 == QT_VERSION_STR.startswith("6.")
    for meta_type in (QMetaType.Type.QString, QMetaType.Type.Int):
        assert QgsField("name", field_type(meta_type)).type() == meta_type


def test_metadata_lets_qgis_3_22_through_4_install_the_plugin():
    metadata = configparser.ConfigParser(interpolation=None)
    metadata.read(qt6_rules.REPO / "metadata.txt", encoding="utf-8")
    general = metadata["general"]
    assert general["qgisMinimumVersion"] == "3.22"
    assert general["qgisMaximumVersion"] == "4.99"
    assert general["supportsQt6"] == "True"

