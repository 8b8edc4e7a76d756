"""Which Python runs the engine: LCFUSION_PYTHON, then the setting, then the engine
environment in the QGIS profile folder, then the plugin's .venv, then QGIS's own Python."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from qgis.core import QgsApplication, QgsSettings

from lcfusion.plugin.settings import (
    ENGINE_PYTHON_KEY,
    engine_python,
    plugin_root,
    qgis_python,
    venv_executable,
    venv_python,
)


def test_engine_interpreter_resolution_order(qgis_app, monkeypatch, tmp_path):
    settings = QgsSettings()
    previous = settings.value(ENGINE_PYTHON_KEY, "")
    profile = tmp_path / "profile"
    monkeypatch.setattr(QgsApplication, "qgisSettingsDirPath", staticmethod(lambda: str(profile)))
    try:
        monkeypatch.setenv("LCFUSION_PYTHON", "/opt/from-env/python")
        settings.setValue(ENGINE_PYTHON_KEY, "/opt/from-setting/python")
        assert engine_python() == "/opt/from-env/python"
        monkeypatch.delenv("LCFUSION_PYTHON")
        assert engine_python() == "/opt/from-setting/python"
        settings.setValue(ENGINE_PYTHON_KEY, "")
        checkout = tmp_path / "checkout"  # a source checkout's .venv, made by make setup
        monkeypatch.setattr("lcfusion.plugin.settings.plugin_root", lambda: checkout)
        expected = venv_python(checkout)
        expected.parent.mkdir(parents=True)
        expected.symlink_to(sys.executable)
        assert engine_python() == str(expected)
        created = venv_executable(profile / "lcfusion" / "venv")  # the plugin's action made it
        created.parent.mkdir(parents=True)
        created.symlink_to(sys.executable)
        assert engine_python() == str(created)
        created.unlink()
        monkeypatch.setattr("lcfusion.plugin.settings.plugin_root", lambda: tmp_path)
        assert engine_python() == qgis_python()
    finally:
        settings.setValue(ENGINE_PYTHON_KEY, previous)


def test_the_last_resort_is_qgis_own_python_not_the_first_on_the_path(qgis_app, monkeypatch,
                                                                     tmp_path):
    """A pyenv (or any other) python3 first on the PATH is not the Python QGIS runs on: it
    lacks QGIS's GDAL and rasterio."""
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "python3").write_text("#!/bin/sh\necho 'pyenv: python3: command not found'; "
                                   "exit 127\n")
    (shims / "python3").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("LCFUSION_PYTHON", raising=False)
    monkeypatch.setattr(QgsApplication, "qgisSettingsDirPath",
                        staticmethod(lambda: str(tmp_path / "profile")))
    monkeypatch.setattr("lcfusion.plugin.settings.plugin_root", lambda: tmp_path)
    python = engine_python("")
    assert not python.startswith(str(shims))
    answer = subprocess.run([python, "-c", "import sys, osgeo; print(sys.version_info[:2], "
                             "sys.prefix != sys.base_prefix)"], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert answer == f"{tuple(sys.version_info[:2])} False"  # QGIS's Python, with its GDAL


def test_qgis_python_is_the_running_interpreter_when_qgis_reports_a_pyenv_shim(tmp_path):
    """QGIS's embedded Python finds its sys.executable (and _base_executable) by looking up
    ``python3`` on the PATH; with pyenv first there it is a shim script that runs another
    Python. The Python running QGIS is the one its build installed in BINDIR."""
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "python3").write_text('#!/bin/sh\nexec pyenv exec python3 "$@"\n')
    (shims / "python3").chmod(0o755)
    running = Path(sysconfig.get_config_var("BINDIR")) / "python{}.{}".format(*sys.version_info)
    code = ("import sys; from lcfusion.plugin.settings import qgis_python; "
            "print(sys.executable, sys._base_executable, qgis_python())")
    env = {**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(plugin_root().parent)}
    # Started as plain `python3`, the interpreter takes the first one on the PATH for its own.
    result = subprocess.run(["bash", "-c", f'exec -a python3 "{running}" -c "{code}"'],
                            env=env, capture_output=True, text=True, check=True)
    executable, base_executable, chosen = result.stdout.split()
    assert executable == base_executable == str(shims / "python3")  # as QGIS reports them
    assert chosen == str(running)
