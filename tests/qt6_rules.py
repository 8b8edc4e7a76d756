"""The Qt6 / QGIS 4 rules for plugin code, checked on its source.

One codebase runs on QGIS 3.22 (Qt5, PyQt5) through QGIS 4 (Qt6, PyQt6). PyQt6 knows enum
members only through their enum (``QMessageBox.StandardButton.Yes``, never ``QMessageBox.Yes``),
has no ``exec_()``, and QGIS 4 refuses PyQt5 imports. The checks:

* every ``Name.attr...`` chain whose root is a Qt or QGIS class (``Q*``, ``Qgs*``, ``Qgis``,
  ``Qt``) imported from ``qgis.*`` resolves on this host's QGIS bindings (3.22, the oldest
  QGIS the plugin supports) and reaches an enum member only through its enum class (a member
  read off a plain class is unscoped: PyQt6 does not have it);
* every such chain rooted in ``qgis.PyQt`` also resolves in PyQt6 (through QGIS's own Qt6 shim,
  ``QT6_SHIM``), as do the names imported from ``qgis.PyQt``;
* no ``exec_`` and no import of ``PyQt5``, ``PyQt6`` or ``sip`` except through ``qgis.PyQt``.

The PyQt6 half runs in a child process (this file as a script), so that PyQt5, which QGIS has
loaded in the test process, and PyQt6 never share an interpreter. Run on its own, this module
imports nothing but the standard library.
"""

from __future__ import annotations

import ast
import enum
import importlib
import importlib.util
import json
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
#: A Qt or QGIS class name: the roots of the chains that are checked.
QT_CLASS = re.compile(r"Q[A-Z]\w*|Qgs\w+|Qgis|Qt")
#: Modules whose top-level names must only be imported through qgis.PyQt.
RAW_QT_MODULES = ("PyQt5", "PyQt6", "sip")
#: Names QGIS's Qt6 build of ``qgis.PyQt.QtWidgets`` adds from QtGui, where Qt6 moved them
#: (qgis/QGIS pull requests 55658 and 57467), so one import works on Qt5 and Qt6.
QT6_SHIM = {("QtWidgets", "QAction"): "QtGui", ("QtWidgets", "QActionGroup"): "QtGui",
            ("QtWidgets", "QShortcut"): "QtGui"}
#: Chains only evaluated on Qt5 builds, by the compatibility module's Qt5 branch:
#: {(path relative to the repository, dotted chain)}.
QT5_ONLY = {("plugin/qt_compat.py", "QVariant.Type")}
MISSING = object()


@dataclass(frozen=True)
class Reference:
    """A chain of attributes read off a Qt or QGIS name, e.g. QMessageBox.StandardButton.Yes."""

    path: str
    line: int
    module: str  #: the module the root was imported from, e.g. "qgis.PyQt.QtWidgets"
    name: str  #: the root's name in that module
    chain: tuple[str, ...]  #: the attributes read after the root

    @property
    def dotted(self) -> str:
        return ".".join((self.name, *self.chain))


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text}"


def plugin_files(root: Path = REPO) -> list[Path]:
    """The plugin's Python files: plugin/ and the entry point."""
    return [root / "__init__.py", *sorted((root / "plugin").rglob("*.py"))]


def relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def qt_bindings(tree: ast.Module) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """Local name -> (module, name in that module, attributes) for every Qt or QGIS class
    imported from ``qgis.*`` anywhere in the file (``from qgis.core import Qgis as Q`` -> Q),
    and for names assigned a chain of one (``standard = QDialogButtonBox.StandardButton``) and
    bound nowhere else in the file (a name bound twice may mean two things: it is not followed)."""
    bindings = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "qgis":
            for alias in node.names:
                if QT_CLASS.fullmatch(alias.name):
                    bindings[alias.asname or alias.name] = (node.module, alias.name, ())
    bound = Counter(n.id for n in ast.walk(tree)
                    if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load))
    bound.update(n.arg for n in ast.walk(tree) if isinstance(n, ast.arg))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name) and bound[node.targets[0].id] == 1 \
                and isinstance(node.value, ast.Attribute | ast.Name):
            found = attribute_chain(node.value)
            if found and found[0] in bindings:
                module, name, prefix = bindings[found[0]]
                bindings[node.targets[0].id] = (module, name, (*prefix, *found[1]))
    return bindings


def attribute_chain(node: ast.expr) -> tuple[str, list[str]] | None:
    """(root name, attributes) of ``Root.a.b`` (or of ``Root``); None when the root is not a
    plain name."""
    attributes = []
    while isinstance(node, ast.Attribute):
        attributes.append(node.attr)
        node = node.value
    return (node.id, attributes[::-1]) if isinstance(node, ast.Name) else None


def scan(path: Path, root: Path = REPO) -> tuple[list[Reference], list[Problem]]:
    """The file's Qt/QGIS references (chains and names imported from qgis.PyQt) and the
    problems visible in the source alone (exec_, raw PyQt imports)."""
    name = relative(path, root)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bindings = qt_bindings(tree)
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    references, problems = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            found = attribute_chain(node)
            if found and found[0] in bindings:
                module, imported, prefix = bindings[found[0]]
                references.append(Reference(name, node.lineno, module, imported,
                                            (*prefix, *found[1])))
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.startswith("qgis.PyQt"):
            references += [Reference(name, node.lineno, node.module, alias.name, ())
                           for alias in node.names]
        problems += source_problems(name, node)
    return references, problems


def source_problems(path: str, node: ast.AST) -> list[Problem]:
    """exec_ calls or definitions, and imports of PyQt5, PyQt6 or sip themselves."""
    if isinstance(node, ast.Attribute) and node.attr == "exec_" or \
            isinstance(node, ast.FunctionDef) and node.name == "exec_":
        return [Problem(path, node.lineno, "exec_() does not exist in PyQt6: use exec()")]
    modules = []
    if isinstance(node, ast.Import):
        modules = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        modules = [node.module]
    return [Problem(path, node.lineno, f"import of {module}: QGIS 4 refuses PyQt5, and code "
                                       "that runs on both imports Qt through qgis.PyQt")
            for module in modules if module.split(".")[0] in RAW_QT_MODULES]


def is_enum_class(value: object) -> bool:
    """A Python enum or a sip (PyQt5) enum type."""
    return isinstance(value, enum.EnumMeta) or type(value).__name__ == "enumtype"


def resolve(value: object, attribute: str) -> object:
    """``value.attribute``, importing it when it is a submodule not imported yet; MISSING when
    there is no such attribute."""
    found = getattr(value, attribute, MISSING)
    if found is MISSING and isinstance(value, ModuleType):
        try:
            found = importlib.import_module(f"{value.__name__}.{attribute}")
        except ImportError:
            pass
    return found


def qgis3_problem(reference: Reference) -> str | None:
    """What is wrong with a reference on this host's QGIS bindings: a name they lack, or an
    enum member read off a class instead of its enum."""
    holder = value = importlib.import_module(reference.module)
    reached = []
    for attribute in (reference.name, *reference.chain):
        holder, value = value, resolve(value, attribute)
        reached.append(attribute)
        if value is MISSING:
            version = importlib.import_module("qgis.core").Qgis.QGIS_VERSION.split("-")[0]
            return f"{'.'.join(reached)} does not exist in QGIS {version}'s bindings"
        if is_enum_class(type(value)):
            if is_enum_class(holder):
                return None
            scoped = ".".join((*reached[:-1], type(value).__name__, attribute))
            return f"{'.'.join(reached)} is an unscoped enum member (gone in PyQt6): use {scoped}"
    return None


def pyqt6_missing(module: str, name: str, chain: list[str]) -> str | None:
    """The first part of ``name.chain`` that PyQt6, with QGIS's Qt6 shim, lacks (None when all
    resolve). Runs in the child process."""
    qt_module = module.removeprefix("qgis.PyQt").lstrip(".")
    home = "PyQt6" + (f".{QT6_SHIM.get((qt_module, name), qt_module)}" if qt_module else "")
    value = importlib.import_module(home)
    reached = []
    for attribute in (name, *chain):
        value = resolve(value, attribute)
        reached.append(attribute)
        if value is MISSING:
            return ".".join(reached)
    return None


def ask_pyqt6(references: list[Reference], python: str = sys.executable) -> list[str | None]:
    """`pyqt6_missing` for each reference, asked of a child process that has not loaded QGIS
    (QGIS 3.44's import hook refuses PyQt6 in a process running its Qt5 bindings)."""
    request = json.dumps([[r.module, r.name, list(r.chain)] for r in references])
    result = subprocess.run([python, __file__], input=request, capture_output=True, text=True,
                            timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"the PyQt6 check itself failed:\n{result.stderr}")
    return json.loads(result.stdout)


def pyqt6_problems(references: list[Reference], python: str = sys.executable) -> list[Problem]:
    """The references rooted in qgis.PyQt that PyQt6 cannot resolve, asked of a child process."""
    asked = [r for r in references if r.module.startswith("qgis.PyQt")
             and (r.path, r.dotted) not in QT5_ONLY]
    answers = ask_pyqt6(asked, python)
    return [Problem(r.path, r.line, f"{r.dotted}: PyQt6 (QGIS 4) has no {missing}")
            for r, missing in zip(asked, answers, strict=True) if missing]


def problems(files: list[Path], root: Path = REPO, qt6: bool = True) -> list[Problem]:
    """Every problem in `files`: the source rules, the QGIS 3.22 check and (when `qt6`) the
    PyQt6 check; one problem per reference, sorted by place."""
    found, references = [], []
    for path in files:
        file_references, file_problems = scan(path, root)
        references += file_references
        found += file_problems
    flagged = set()
    for reference in references:
        text = qgis3_problem(reference)
        if text:
            found.append(Problem(reference.path, reference.line, text))
            flagged.add(reference)
    if qt6:
        found += pyqt6_problems([r for r in references if r not in flagged])
    return sorted(set(found), key=lambda p: (p.path, p.line, p.text))


def pyqt6_installed() -> bool:
    return importlib.util.find_spec("PyQt6") is not None


if __name__ == "__main__":  # the PyQt6 child: [[module, name, chain], ...] in, answers out
    json.dump([pyqt6_missing(*entry) for entry in json.load(sys.stdin)], sys.stdout)
