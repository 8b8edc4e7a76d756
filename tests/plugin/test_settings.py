"""Which Python runs the engine: LCFUSION_PYTHON, then the setting, then the plugin's .venv."""

from qgis.core import QgsSettings

from lcfusion.plugin.settings import ENGINE_PYTHON_KEY, engine_python, plugin_root, venv_python


def test_engine_interpreter_resolution_order(qgis_app, monkeypatch, tmp_path):
    settings = QgsSettings()
    previous = settings.value(ENGINE_PYTHON_KEY, "")
    try:
        monkeypatch.setenv("LCFUSION_PYTHON", "/opt/from-env/python")
        settings.setValue(ENGINE_PYTHON_KEY, "/opt/from-setting/python")
        assert engine_python() == "/opt/from-env/python"
        monkeypatch.delenv("LCFUSION_PYTHON")
        assert engine_python() == "/opt/from-setting/python"
        settings.setValue(ENGINE_PYTHON_KEY, "")
        expected = venv_python(plugin_root())
        assert engine_python() == str(expected) and expected.exists()
        monkeypatch.setattr("lcfusion.plugin.settings.plugin_root", lambda: tmp_path)
        assert engine_python().endswith(("python3", "python"))
        assert not engine_python().startswith(str(tmp_path))
    finally:
        settings.setValue(ENGINE_PYTHON_KEY, previous)
