"""The engine-environment check (before an algorithm runs, and when QGIS starts) and the
action that creates the engine's virtual environment."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import processing
import pytest
from qgis.core import Qgis, QgsProcessingException
from qgis.gui import QgsMessageBar
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtWidgets import QMessageBox, QPushButton

from lcfusion.plugin import environment
from lcfusion.plugin.environment import (
    CPU_TORCH_INDEX,
    CreateEnvironmentTask,
    base_python,
    creation_steps,
    engine_environment_problem,
    pinned_versions,
    probe_environment,
)
from lcfusion.plugin.plugin import MENU, LcfusionPlugin
from lcfusion.plugin.settings import plugin_root

ROOT = Path(__file__).resolve().parents[2]
ENGINE_PYTHON = ROOT / ".venv" / "bin" / "python"


def bare_venv(folder: Path, packages: dict[str, str], system: bool = True) -> str:
    """A virtual environment on the system Python (sharing its packages when `system`) whose
    only packages of its own are distribution records of `packages` (name -> version): what
    importlib.metadata sees."""
    subprocess.run([base_python(), "-m", "venv", "--without-pip", str(folder),
                    *(["--system-site-packages"] if system else [])], check=True)
    site = next((folder / "lib").glob("python3*/site-packages"))
    for name, version in packages.items():
        record = site / f"{name.replace('-', '_')}-{version}.dist-info"
        record.mkdir()
        (record / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return str(folder / "bin" / "python")


@pytest.fixture
def unchecked(monkeypatch):
    """No interpreter is known to be fit yet."""
    monkeypatch.setattr(environment, "_fit", set())


def test_pins_come_from_the_requirements():
    assert pinned_versions() == {"torch": "2.13.0", "safetensors": "0.8.0",
                                 "scikit-learn": "1.9.1"}


def test_the_engine_venv_is_fit(unchecked):
    found = probe_environment(str(ENGINE_PYTHON), ["torch", "safetensors", "rasterio"])
    assert found.failure is None
    assert found.packages["torch"].startswith("2.13.0")
    assert engine_environment_problem(str(ENGINE_PYTHON)) is None
    assert (str(ENGINE_PYTHON), ("torch", "safetensors", "scikit-learn")) in environment._fit


def test_a_python_without_torch_is_told_how_to_fix_it(unchecked):
    python = base_python()
    if probe_environment(python, ["torch"]).packages.get("torch"):
        pytest.skip(f"{python} has torch")
    problem = engine_environment_problem(python)
    assert problem.startswith(f"The lcfusion engine cannot run with the Python {python}: "
                              "torch is missing (needs 2.13.0)")
    assert "safetensors is missing (needs 0.8.0)" in problem
    for fix in ("Plugins > Land Cover Fusion > Create Engine Environment…", "'make setup' in",
                "LCFUSION_PYTHON", "torch==2.13.0"):
        assert fix in problem
    assert not environment._fit


@pytest.mark.parametrize(("torch", "problem"), [
    ("2.1.0", "torch is 2.1.0 but lcfusion needs 2.13.0"),
    ("2.13.1+cu124", None),
])
def test_the_torch_version_must_match_the_pin(unchecked, tmp_path, torch, problem):
    python = bare_venv(tmp_path / "venv", {"torch": torch, "safetensors": "0.8.0",
                                           "scikit-learn": "1.9.1"})
    found = engine_environment_problem(python)
    if problem is None:
        assert found is None
    else:
        assert problem in found and "missing" not in found


def test_evaluate_needs_no_torch(unchecked, tmp_path):
    python = bare_venv(tmp_path / "venv", {"scikit-learn": "1.9.1"})
    assert engine_environment_problem(python, needs=("scikit-learn",)) is None
    assert "torch is missing" in engine_environment_problem(python)


def test_missing_system_packages_are_not_offered_the_action(unchecked, tmp_path):
    python = bare_venv(tmp_path / "venv", {"torch": "2.13.0", "safetensors": "0.8.0",
                                           "scikit-learn": "1.9.1"}, system=False)
    problem = engine_environment_problem(python)
    assert "numpy is missing; rasterio is missing" in problem
    assert "apt install python3-rasterio" in problem
    assert "Create Engine Environment" not in problem


@pytest.mark.parametrize(("python", "problem"), [
    ("/nonexistent/bin/python", "/nonexistent/bin/python does not exist"),
    ("/bin/false", "/bin/false is not a working Python"),
])
def test_an_interpreter_that_cannot_answer_is_named(unchecked, python, problem):
    assert problem in engine_environment_problem(python)


def test_an_algorithm_refuses_to_start_with_an_unfit_engine(unchecked, lcfusion_provider,
                                                            scene, tmp_path, monkeypatch,
                                                            check):
    monkeypatch.setenv("LCFUSION_PYTHON", "/nonexistent/bin/python")
    model = tmp_path / "model.lcfusion"
    parameters = {"INPUT": [str(p) for p in scene.s2_paths],
                  "REFERENCE": str(scene.reference_path), "CLASS_FIELD": "class_id",
                  "OUTPUT_MODEL": str(model)}
    ok, message = check("lcfusion:trainfgunet", parameters)
    assert not ok
    assert message.startswith("The lcfusion engine cannot run with the Python "
                              "/nonexistent/bin/python: /nonexistent/bin/python does not exist")
    with pytest.raises(QgsProcessingException, match="Create Engine Environment"):
        processing.run("lcfusion:trainfgunet", parameters)
    assert list(tmp_path.iterdir()) == []


def test_creating_an_environment_on_the_system_python(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy\n")  # already in the system Python: nothing to download
    folder = tmp_path / "engine venv"
    task = CreateEnvironmentTask(folder, requirements, base_python())
    assert task.run(), task.lines
    assert task.error is None and task.progress() == 100
    python = folder / "bin" / "python"
    assert task.lines[0] == f"$ {base_python()} -m venv --system-site-packages '{folder}'"
    found = probe_environment(str(python), ["numpy", "torch"])
    assert found.packages["numpy"] and found.packages["torch"] is None


def test_creation_steps_take_pytorchs_cpu_index(tmp_path):
    steps = creation_steps(tmp_path / "venv", tmp_path / "requirements.txt", "/usr/bin/python3",
                           CPU_TORCH_INDEX)
    assert steps == [
        ["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(tmp_path / "venv")],
        [str(tmp_path / "venv" / "bin" / "python"), "-m", "pip", "install",
         "--disable-pip-version-check", "--requirement", str(tmp_path / "requirements.txt"),
         "--extra-index-url", "https://download.pytorch.org/whl/cpu"]]


def test_cancel_stops_a_silent_step_at_once(tmp_path):
    silent = tmp_path / "silent-python"
    silent.write_text("#!/bin/sh\nsleep 60\n")
    silent.chmod(0o755)
    task = CreateEnvironmentTask(tmp_path / "venv", tmp_path / "requirements.txt", str(silent))
    outcome = []
    runner = threading.Thread(target=lambda: outcome.append(task.run()))
    runner.start()
    time.sleep(0.5)
    cancelled = time.monotonic()
    task.cancel()
    runner.join(15)
    assert outcome == [False] and time.monotonic() - cancelled < 3
    assert task.error == "cancelled"
    assert not (tmp_path / "venv").exists()


def test_a_failed_creation_says_why_and_removes_what_it_made(tmp_path):
    folder = tmp_path / "venv"
    task = CreateEnvironmentTask(folder, tmp_path / "missing-requirements.txt", base_python())
    assert not task.run()
    assert task.error.startswith(f"{folder / 'bin' / 'python'} -m pip install failed (exit "
                                 "status 1)")
    assert not folder.exists()
    absent = CreateEnvironmentTask(folder, tmp_path / "requirements.txt", "/nonexistent/python3")
    assert not absent.run()
    assert absent.error == "cannot run /nonexistent/python3: No such file or directory"


def wait_for_message(bar: QgsMessageBar) -> None:
    deadline = time.monotonic() + 120
    while bar.currentItem() is None:
        assert time.monotonic() < deadline, "no message came"
        QCoreApplication.processEvents()
        time.sleep(0.05)


def test_at_start_up_the_plugin_offers_to_create_the_environment(unchecked, qgis_app,
                                                                  qgis_iface, monkeypatch):
    monkeypatch.setattr(LcfusionPlugin, "initProcessing", lambda self: None)
    monkeypatch.setenv("LCFUSION_PYTHON", "/nonexistent/bin/python")
    bar = QgsMessageBar()
    monkeypatch.setattr(qgis_iface, "messageBar", lambda: bar)
    plugin = LcfusionPlugin(qgis_iface)
    plugin.initGui()
    try:
        assert plugin.environment_action.text() == "Create Engine Environment…"
        wait_for_message(bar)
        item = bar.currentItem()
        assert item.level() == Qgis.Warning and item.title() == MENU
        assert item.text().startswith("The lcfusion engine cannot run with the Python "
                                      "/nonexistent/bin/python")
        button = item.findChild(QPushButton)
        assert button.text() == "Create Engine Environment…"
        asked = []
        monkeypatch.setattr(QMessageBox, "question",
                            lambda *args: asked.append(args[2]) or QMessageBox.No)
        button.click()
        assert len(asked) == 1 and str(plugin_root() / ".venv") in asked[0]
    finally:
        plugin.unload()
    assert plugin.environment_action is None


def test_the_action_creates_the_environment_in_the_background(qgis_app, qgis_iface,
                                                              monkeypatch, tmp_path):
    monkeypatch.setattr(LcfusionPlugin, "initProcessing", lambda self: None)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy\n")
    monkeypatch.setattr("lcfusion.plugin.plugin.plugin_root", lambda: tmp_path)
    monkeypatch.setattr("lcfusion.plugin.plugin.requirements_file", lambda: requirements)
    monkeypatch.setattr("lcfusion.plugin.plugin.CPU_TORCH_INDEX", None)  # numpy is local
    monkeypatch.setattr(QMessageBox, "question", lambda *args: QMessageBox.Yes)
    bar = QgsMessageBar()
    monkeypatch.setattr(qgis_iface, "messageBar", lambda: bar)
    plugin = LcfusionPlugin(qgis_iface)
    plugin.initGui()
    try:
        plugin.environment_action.trigger()
        assert not plugin.environment_action.isEnabled()
        assert plugin.create_environment() is None  # one creation at a time
        assert bar.currentItem().text() == "The engine environment is already being created."
        bar.clearWidgets()
        wait_for_message(bar)
        assert plugin.environment_action.isEnabled()
        assert bar.currentItem().level() == Qgis.Success, bar.currentItem().text()
        assert (tmp_path / ".venv" / "bin" / "python").exists()
        assert bar.currentItem().text().startswith(
            f"The engine environment is ready: {tmp_path / '.venv' / 'bin' / 'python'}.")
    finally:
        plugin.unload()
