"""Plugin settings: which Python interpreter runs the engine, where the compute profiles are,
and where the plugin lives."""

from __future__ import annotations

import os
import re
import sys
import sysconfig
from pathlib import Path

from qgis.core import QgsApplication, QgsSettings

from ..engine.compute.profiles import PROFILES_ENV

ENGINE_PYTHON_KEY = "lcfusion/engine_python"
ENGINE_PYTHON_ENV = "LCFUSION_PYTHON"
PROFILES_KEY = "lcfusion/profiles_path"


def plugin_root() -> Path:
    """The plugin folder (the ``lcfusion`` package), symbolic links kept as they are."""
    return Path(__file__).parent.parent


def package_name() -> str:
    """The name the plugin package was imported under (``lcfusion``)."""
    return __name__.split(".")[0]


def venv_executable(venv: Path) -> Path:
    """The Python of the virtual environment `venv`."""
    if sys.platform == "win32":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def venv_python(folder: Path) -> Path:
    """The Python of `folder`'s ``.venv`` (the engine environment of a plugin folder)."""
    return venv_executable(folder / ".venv")


def engine_venv_folder() -> Path:
    """The engine environment the plugin creates: in the QGIS user profile folder, so that
    it outlives plugin updates (which replace the plugin folder) and serves every version."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "lcfusion" / "venv"


def _is_python(path: Path) -> bool:
    return bool(re.fullmatch(r"python[\d.]*(\.exe)?", path.name.lower())) and path.is_file() \
        and os.access(path, os.X_OK)


def _is_running_installation(path: Path) -> bool:
    """Whether `path` is an interpreter of the installation this Python runs from: it
    resolves to a file inside ``sys.base_prefix``. A pyenv shim (a script elsewhere that
    starts another Python) is not."""
    resolved = Path(os.path.realpath(path))
    return _is_python(path) and resolved.is_relative_to(os.path.realpath(sys.base_prefix))


def qgis_python() -> str:
    """The Python QGIS runs on (its numpy, GDAL and rasterio are the engine's): the
    interpreter of the running version in the folder QGIS's Python was built for, else in
    its installation folder, else the base interpreter (never a virtual environment's) or
    the Python next to the QGIS program when they belong to that installation. Never a
    ``python3`` that merely comes first on the PATH, which embedded Python may report as
    its ``sys.executable``."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    names = (f"python{version}", f"python{sys.version_info[0]}", "python")
    if sys.platform == "win32":
        names = ("python.exe", f"python{sys.version_info[0]}.exe")
    candidates = []
    for folder in (sysconfig.get_config_var("BINDIR"), Path(sys.base_prefix) / "bin",
                   sys.base_prefix):
        candidates += [Path(folder) / name for name in names] if folder else []
    base = getattr(sys, "_base_executable", "")
    candidates += [Path(base)] if base else []  # a virtual environment's base interpreter
    if sys.executable:
        executable = Path(sys.executable)
        candidates += [executable, *(executable.parent / name for name in names)]
    for candidate in candidates:
        if _is_running_installation(candidate):
            return str(candidate)
    return str(Path(sys.base_prefix) / "bin" / f"python{version}")


def engine_python(configured: str | None = None) -> str:
    """The engine interpreter: ``LCFUSION_PYTHON``, else the plugin setting, else the engine
    environment in the QGIS profile folder, else the plugin folder's ``.venv`` (a source
    checkout's, made by ``make setup``), else QGIS's own Python. `configured` stands in for
    the stored setting (the settings dialog's unsaved field)."""
    from_env = os.environ.get(ENGINE_PYTHON_ENV, "").strip()
    if from_env:
        return from_env
    if configured is None:
        configured = str(QgsSettings().value(ENGINE_PYTHON_KEY, "") or "")
    configured = configured.strip()
    if configured:
        return configured
    for candidate in (venv_executable(engine_venv_folder()), venv_python(plugin_root())):
        if candidate.exists():
            return str(candidate)
    return qgis_python()


def profiles_path(configured: str | None = None) -> Path:
    """The compute profiles file: ``LCFUSION_PROFILES``, else the plugin setting, else
    ``lcfusion/profiles.toml`` in the QGIS user profile folder. `configured` stands in for the
    stored setting (the settings dialog's unsaved field)."""
    from_env = os.environ.get(PROFILES_ENV, "").strip()
    if from_env:
        return Path(from_env).expanduser()
    if configured is None:
        configured = str(QgsSettings().value(PROFILES_KEY, "") or "")
    configured = configured.strip()
    if configured:
        return Path(configured).expanduser()
    return Path(QgsApplication.qgisSettingsDirPath()) / "lcfusion" / "profiles.toml"
