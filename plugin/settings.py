"""Plugin settings: which Python interpreter runs the engine, where the compute profiles are,
and where the plugin lives."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from qgis.core import QgsApplication, QgsSettings

from ..engine.profiles import PROFILES_ENV

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


def engine_python(configured: str | None = None) -> str:
    """The engine interpreter: ``LCFUSION_PYTHON``, else the plugin setting, else the
    project's ``.venv``, else ``python3`` on the PATH. `configured` stands in for the stored
    setting (the settings dialog's unsaved field)."""
    from_env = os.environ.get(ENGINE_PYTHON_ENV, "").strip()
    if from_env:
        return from_env
    if configured is None:
        configured = str(QgsSettings().value(ENGINE_PYTHON_KEY, "") or "")
    configured = configured.strip()
    if configured:
        return configured
    candidate = venv_python(plugin_root())
    if candidate.exists():
        return str(candidate)
    return shutil.which("python3") or shutil.which("python") or "python3"


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
