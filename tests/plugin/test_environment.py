"""The engine-environment check (before an algorithm runs, and when QGIS starts), which
interpreter and which PyTorch build, and the action that creates the engine's virtual
environment in the QGIS profile folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import processing
import pytest
from qgis.core import Qgis, QgsApplication, QgsProcessingException
from qgis.gui import QgsMessageBar
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtWidgets import QAction, QPushButton, QTextBrowser

from lcfusion.plugin import environment
from lcfusion.plugin.environment import (
    CPU_TORCH_INDEX,
    STAMP_NAME,
    CreateEnvironmentTask,
    PipProgress,
    TorchBuild,
    creation_steps,
    engine_environment_problem,
    engine_python_status,
    environment_stamp,
    light_requirements_file,
    pinned_versions,
    probe_environment,
    python_version,
    requirements_file,
    startup_problem,
    torch_build,
    wrong_build,
)
from lcfusion.plugin.plugin import MENU, UNFIT_LINE, LcfusionPlugin
from lcfusion.plugin.settings import engine_python, engine_venv_folder, qgis_python
from lcfusion.plugin.settings_dialog import SettingsDialog

ROOT = Path(__file__).resolve().parents[2]
#: The engine environment `make test` runs with (the checkout's .venv, or the chroot's venv of
#: `make test-qgis`).
ENGINE_PYTHON = Path(os.environ.get("LCFUSION_PYTHON") or ROOT / ".venv" / "bin" / "python")


def bare_venv(folder: Path, packages: dict[str, str], system: bool = True) -> str:
    """A virtual environment on the system Python (sharing its packages when `system`) whose
    only packages of its own are distribution records of `packages` (name -> version): what
    importlib.metadata sees."""
    subprocess.run([qgis_python(), "-m", "venv", "--without-pip", str(folder),
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


@pytest.fixture
def profile_folder(monkeypatch, tmp_path) -> Path:
    """A QGIS profile folder of the test's own (where the engine environment goes)."""
    folder = tmp_path / "profile"
    monkeypatch.setattr(QgsApplication, "qgisSettingsDirPath", staticmethod(lambda: str(folder)))
    return folder


def fake_program(folder: Path, name: str, script: str) -> Path:
    """An executable shell script `name` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    program = folder / name
    program.write_text(f"#!/bin/sh\n{script}\n")
    program.chmod(0o755)
    return program


def fit_pins() -> dict[str, str]:
    return {"torch": "2.13.0+cpu", "safetensors": "0.8.0", "scikit-learn": "1.9.1",
            "onnx": "1.23.2", "onnxruntime": "1.32.0", "ml_dtypes": "0.5.4"}


def test_pins_come_from_the_requirements():
    assert pinned_versions() == {"torch": "2.13.0", "safetensors": "0.8.0",
                                 "scikit-learn": "1.9.1", "onnx": "1.23.2",
                                 "onnxruntime": "1.32.0", "ml_dtypes": "0.5.4"}
    assert pinned_versions(light_requirements_file()) == {"onnxruntime": "1.32.0"}


def test_the_engine_venv_is_fit(unchecked):
    found = probe_environment(str(ENGINE_PYTHON), ["torch", "safetensors", "rasterio"])
    assert found.failure is None
    assert found.packages["torch"].startswith("2.13.0")
    assert engine_environment_problem(str(ENGINE_PYTHON)) is None
    assert (str(ENGINE_PYTHON), ("torch", "safetensors", "scikit-learn", "onnx", "onnxruntime",
                                 "ml_dtypes")) in environment._fit


def test_a_python_without_torch_is_told_how_to_fix_it(unchecked):
    python = qgis_python()
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
    python = bare_venv(tmp_path / "venv", {**fit_pins(), "torch": torch})
    found = engine_environment_problem(python)
    if problem is None:
        assert found is None
    else:
        assert problem in found and "missing" not in found


def test_a_light_environment_passes_the_start_up_check(unchecked, tmp_path):
    python = bare_venv(tmp_path / "venv", {"onnxruntime": "1.32.0"})
    stamp = environment_stamp(light_requirements_file(), python_version(python), None)
    assert startup_problem(python) is not None  # no stamp: a broken full environment
    (tmp_path / "venv" / STAMP_NAME).write_text(json.dumps(stamp))
    assert startup_problem(python) is None
    assert "torch is missing" in engine_environment_problem(python)


def test_onnxruntime_gpu_stands_in_for_onnxruntime(unchecked, tmp_path):
    """onnxruntime-gpu, installed by hand in place of onnxruntime for its CUDA provider,
    satisfies the onnxruntime a classification with an .onnx model needs."""
    python = bare_venv(tmp_path / "venv", {"onnxruntime-gpu": "1.31.1"})
    assert engine_environment_problem(python, needs=("onnxruntime",)) is None


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
    task = CreateEnvironmentTask(folder, requirements, qgis_python())
    reported = []
    task.progressChanged.connect(reported.append)
    assert task.run(), task.lines
    assert task.error is None and task.progress() == 100
    assert reported[0] == 5 and reported[-1] == 100 and reported == sorted(reported)
    python = folder / "bin" / "python"
    assert task.lines[0] == f"$ {qgis_python()} -m venv --system-site-packages '{folder}'"
    found = probe_environment(str(python), ["numpy", "torch"])
    assert found.packages["numpy"] and found.packages["torch"] is None
    assert json.loads((folder / STAMP_NAME).read_text()) == environment_stamp(
        requirements, f"{sys.version_info[0]}.{sys.version_info[1]}", None)


def test_torch_comes_from_pytorchs_index_alone(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("torch==2.13.0\nnumpy\n")
    venv_python = str(tmp_path / "venv" / "bin" / "python")
    pip = [venv_python, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar",
           "off"]
    steps = creation_steps(tmp_path / "venv", requirements, "/usr/bin/python3",
                           TorchBuild("cpu"), clear=True)
    assert steps == [
        ["/usr/bin/python3", "-m", "venv", "--system-site-packages", "--clear",
         str(tmp_path / "venv")],
        [*pip, "--index-url", "https://download.pytorch.org/whl/cpu", "torch==2.13.0"],
        [*pip, "--requirement", str(requirements)]]
    assert not any("--extra-index-url" in step for step in steps)
    assert creation_steps(tmp_path / "venv", requirements, "/usr/bin/python3",
                          TorchBuild("cu128", ("NVIDIA H200",)))[1][-3:] == [
        "--index-url", "https://download.pytorch.org/whl/cu128", "torch==2.13.0"]


def test_an_unreachable_pytorch_index_fails_clearly(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("torch==0.0.1\n")  # no such build anywhere pip may look
    folder = tmp_path / "venv"
    task = CreateEnvironmentTask(folder, requirements, qgis_python(), TorchBuild("cpu"))
    assert not task.run()
    assert task.error.startswith("torch==0.0.1 could not be installed from PyTorch's index "
                                 f"{CPU_TORCH_INDEX} (unreachable, or it has no such build "
                                 "for this Python): ERROR: "), task.error
    assert "Nothing was installed from another index in its place" in task.error
    assert not folder.exists()


def test_the_engine_python_says_whether_it_works(tmp_path):
    assert re.fullmatch(r"Works: torch 2\.13\.0\+(cpu|cu[0-9]+), CPU only \(no CUDA GPU\)\.",
                        engine_python_status(str(ENGINE_PYTHON)))
    assert engine_python_status("/nonexistent/bin/python") == \
        "Does not work: /nonexistent/bin/python does not exist."
    recorded_only = bare_venv(tmp_path / "venv", fit_pins())  # versions, but no torch module
    assert engine_python_status(recorded_only) == ("Does not work: torch cannot be imported "
                                                   "(ModuleNotFoundError: No module named "
                                                   "'torch').")


def test_pytorch_from_another_index_is_refused():
    assert wrong_build("2.13.0+cpu", TorchBuild("cpu")) is None
    assert wrong_build("2.13.0+cu128", TorchBuild("cu128", ("NVIDIA H200",))) is None
    message = wrong_build("2.13.0", TorchBuild("cpu"))  # PyPI's torch, CUDA libraries and all
    assert message.startswith("pip installed torch 2.13.0, not PyTorch's cpu build from "
                              "https://download.pytorch.org/whl/cpu")


def test_an_nvidia_gpu_gets_the_cuda_build(tmp_path, monkeypatch):
    fake_program(tmp_path / "bin", "nvidia-smi",
                 'test "$1" = --query-gpu=name && echo "NVIDIA H200" && echo "NVIDIA H200"')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    build = torch_build()
    assert build == TorchBuild("cu128", ("NVIDIA H200", "NVIDIA H200"))
    assert build.index == "https://download.pytorch.org/whl/cu128"
    assert build.describe() == (
        "PyTorch's CUDA build (cu128, for NVIDIA drivers 570 and newer), since this computer "
        "has NVIDIA H200, NVIDIA H200: about 3.3 GB to download, about 5 GB on disk.")


def test_without_an_nvidia_gpu_the_cpu_build_and_its_true_size(tmp_path, monkeypatch):
    fake_program(tmp_path / "bin", "nvidia-smi",  # what it says where no driver is loaded
                 'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA '
                 'driver."; exit 9')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(environment, "NVIDIA_DRIVER_FILE", tmp_path / "no-driver")
    build = torch_build()
    assert build == TorchBuild("cpu") and build.index == CPU_TORCH_INDEX
    assert build.describe() == (
        "PyTorch's CPU build, since this computer has no NVIDIA GPU: about 250 MB to download "
        "(PyTorch's CPU wheel alone is 192 MB), about 1 GB on disk.")
    (tmp_path / "driver").write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module 570.1\n")
    monkeypatch.setattr(environment, "NVIDIA_DRIVER_FILE", tmp_path / "driver")
    assert torch_build() == TorchBuild("cu128", ("an NVIDIA GPU",))


def test_pip_lines_are_read_as_progress():
    progress = PipProgress(expected_mb=250)
    seen = []
    for line in ["Looking in indexes: https://download.pytorch.org/whl/cpu",
                 "Collecting torch==2.13.0",
                 "  Downloading https://download.pytorch.org/whl/cpu/torch-2.13.0%2Bcpu-cp311-"
                 "cp311-manylinux_2_28_x86_64.whl (191.8 MB)",
                 "Collecting sympy>=1.13.3",
                 "  Downloading sympy-1.14.0-py3-none-any.whl (6.3 MB)",
                 "Collecting mpmath<1.4,>=1.1.0",
                 "  Downloading mpmath-1.3.0-py3-none-any.whl (536 kB)",
                 "Installing collected packages: mpmath, sympy, torch",
                 "Successfully installed mpmath-1.3.0 sympy-1.14.0 torch-2.13.0+cpu"]:
        progress.read(line)
        seen.append(round(progress.fraction, 3))
    assert seen == [0, 0, 0, round(0.85 * 191.8 / 250, 3), round(0.85 * 191.8 / 250, 3),
                    round(0.85 * 198.1 / 250, 3), round(0.85 * 198.1 / 250, 3), 0.9, 1.0]


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
    task = CreateEnvironmentTask(folder, tmp_path / "missing-requirements.txt", qgis_python())
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


def test_at_start_up_one_line_with_details_and_the_action(unchecked, qgis_app, qgis_iface,
                                                         monkeypatch, profile_folder):
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
        assert item.text() == UNFIT_LINE
        buttons = {button.text(): button for button in item.findChildren(QPushButton)}
        assert set(buttons) >= {"Details…", "Create Engine Environment…"}
        bar.resize(1000, bar.sizeHint().height())
        bar.show()
        QCoreApplication.processEvents()
        folder = Path(os.environ.get("LCFUSION_SCREENSHOTS") or tempfile.mkdtemp())
        assert bar.grab().toImage().save(str(folder / "message-bar.png"))
        text = item.findChild(QTextBrowser)  # one line, nothing cut
        assert text.document().size().height() <= text.viewport().height() + 1
        buttons["Details…"].click()
        assert plugin.details.isVisible()
        assert plugin.details.text().startswith(
            "The lcfusion engine cannot run with the Python /nonexistent/bin/python: "
            "/nonexistent/bin/python does not exist. To fix it, create the engine environment "
            "with Plugins > Land Cover Fusion > Create Engine Environment…")
        assert plugin.details.grab().toImage().save(str(folder / "details.png"))
        plugin.details.close()
        bar.hide()
        asked = []
        monkeypatch.setattr("lcfusion.plugin.plugin.choose_environment",
                            lambda parent, text: asked.append(text))
        buttons["Create Engine Environment…"].click()
        assert len(asked) == 1
        assert f"in {profile_folder / 'lcfusion' / 'venv'}?" in asked[0]
        assert "PyTorch's CPU build" in asked[0] or "PyTorch's CUDA build" in asked[0]
    finally:
        plugin.unload()
    assert plugin.environment_action is None


def test_the_warning_goes_once_the_settings_name_a_working_python(unchecked, qgis_app,
                                                                 qgis_iface, monkeypatch):
    monkeypatch.setenv("LCFUSION_PYTHON", "/nonexistent/bin/python")
    bar = QgsMessageBar()
    monkeypatch.setattr(qgis_iface, "messageBar", lambda: bar)
    plugin = LcfusionPlugin(qgis_iface)
    plugin.environment_action = QAction("Create Engine Environment…")
    plugin._environment_checked(None, engine_environment_problem())
    warning = bar.currentItem()
    monkeypatch.setattr(SettingsDialog, "exec", lambda self: 0)
    plugin.show_settings()  # nothing changed there
    assert bar.currentItem() is warning
    monkeypatch.setattr(SettingsDialog, "exec", lambda self: monkeypatch.setenv(
        "LCFUSION_PYTHON", str(ENGINE_PYTHON)) or 1)
    plugin.show_settings()
    assert warning not in bar.items() and plugin.warning is None


def test_make_setup_is_offered_only_in_a_source_checkout(unchecked, tmp_path, monkeypatch):
    (tmp_path / "requirements.txt").write_text(requirements_file().read_text())
    monkeypatch.setattr(environment, "plugin_root", lambda: tmp_path)
    from_zip = engine_environment_problem("/nonexistent/bin/python")
    assert "Create Engine Environment" in from_zip and "make setup" not in from_zip
    (tmp_path / "Makefile").write_text("setup:\n")
    assert f"(or run 'make setup' in {tmp_path})" in engine_environment_problem(
        "/nonexistent/bin/python")


def test_an_algorithm_started_during_the_creation_is_told_to_wait(unchecked, lcfusion_provider,
                                                                  scene, tmp_path, monkeypatch,
                                                                  check):
    creation = CreateEnvironmentTask(tmp_path / "venv", requirements_file(), qgis_python())
    creation.setProgress(42)
    monkeypatch.setattr(environment, "current_creation", creation)
    parameters = {"INPUT": [str(p) for p in scene.s2_paths],
                  "REFERENCE": str(scene.reference_path), "CLASS_FIELD": "class_id",
                  "OUTPUT_MODEL": str(tmp_path / "model.lcfusion")}
    waiting = ("The engine environment is being created (42 %); wait for it to finish (the "
               "task manager in the status bar shows its progress), then run the algorithm "
               "again.")
    monkeypatch.setenv("LCFUSION_PYTHON", str(tmp_path / "venv" / "bin" / "python"))
    assert check("lcfusion:trainfgunet", parameters) == (False, waiting)
    monkeypatch.setenv("LCFUSION_PYTHON", "/nonexistent/bin/python")  # unfit meanwhile
    assert check("lcfusion:trainfgunet", parameters) == (False, waiting)
    monkeypatch.setenv("LCFUSION_PYTHON", str(ENGINE_PYTHON))  # a fit one runs
    assert check("lcfusion:trainfgunet", parameters) == (True, "")


def test_the_environment_outlives_plugin_updates_and_is_reused(unchecked, qgis_app, qgis_iface,
                                                               monkeypatch, profile_folder):
    monkeypatch.delenv("LCFUSION_PYTHON")
    monkeypatch.setattr("lcfusion.plugin.settings.plugin_root", lambda: profile_folder / "none")
    folder = engine_venv_folder()
    assert folder == profile_folder / "lcfusion" / "venv"
    python = bare_venv(folder, fit_pins())  # as a creation left it, with its stamp
    stamp = environment_stamp(requirements_file(), python_version(qgis_python()), torch_build())
    (folder / STAMP_NAME).write_text(json.dumps(stamp))
    assert engine_python("") == python
    bar = QgsMessageBar()
    monkeypatch.setattr(qgis_iface, "messageBar", lambda: bar)
    asked = []
    monkeypatch.setattr("lcfusion.plugin.plugin.choose_environment",
                        lambda parent, text: asked.append(text))
    plugin = LcfusionPlugin(qgis_iface)  # a new plugin version, the same requirements
    assert plugin.create_environment() is None and asked == []
    assert bar.currentItem().text() == (f"The engine environment {folder} is up to date; it is "
                                        "used as it is.")
    (folder / STAMP_NAME).write_text(json.dumps({**stamp, "requirements_sha256": "older"}))
    assert plugin.create_environment() is None and len(asked) == 1  # asked to update it


def test_the_action_creates_the_environment_in_the_background(qgis_app, qgis_iface,
                                                              monkeypatch, tmp_path,
                                                              profile_folder):
    monkeypatch.setattr(LcfusionPlugin, "initProcessing", lambda self: None)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy\n")  # local, and no torch to fetch from PyTorch's index
    monkeypatch.setattr("lcfusion.plugin.plugin.requirements_file", lambda: requirements)
    monkeypatch.setattr("lcfusion.plugin.plugin.choose_environment",
                        lambda parent, text: "full")
    bar = QgsMessageBar()
    monkeypatch.setattr(qgis_iface, "messageBar", lambda: bar)
    plugin = LcfusionPlugin(qgis_iface)
    plugin.initGui()
    try:
        plugin._environment_checked(None, "The lcfusion engine cannot run: torch is missing. "
                                    "Plugins > Land Cover Fusion > Create Engine Environment…")
        warning = bar.currentItem()
        plugin.environment_action.trigger()
        assert not plugin.environment_action.isEnabled()
        assert environment.current_creation is plugin.creation
        assert plugin.create_environment() is None  # one creation at a time
        assert bar.currentItem().text().startswith(
            "The engine environment is already being created (")
        bar.popWidget(bar.currentItem())
        deadline = time.monotonic() + 120
        while plugin.creation is not None and time.monotonic() < deadline:
            QCoreApplication.processEvents()
            time.sleep(0.05)
        assert bar.currentItem().level() == Qgis.Success, bar.currentItem().text()
        assert warning not in bar.items()  # the stale warning went with it
        assert plugin.environment_action.isEnabled() and environment.current_creation is None
        python = profile_folder / "lcfusion" / "venv" / "bin" / "python"
        assert python.exists()
        assert bar.currentItem().text().startswith(f"The engine environment is ready: {python}.")
    finally:
        plugin.unload()
