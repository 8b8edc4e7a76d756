"""The settings dialog: engine interpreter, profiles file, profile editing, the Test button,
and the plugin's menu entry that opens it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from unittest.mock import MagicMock

import pytest
from processing.gui.AlgorithmDialog import AlgorithmDialog
from qgis.core import QgsApplication, QgsProcessingParameterString, QgsSettings
from qgis.gui import QgsBrowserGuiModel
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtWidgets import QComboBox, QDialogButtonBox, QScrollArea

from lcfusion.engine.compute.profiles import ComputeProfile, load_profiles, save_profiles
from lcfusion.plugin import settings_dialog
from lcfusion.plugin.compute_widget import ComputeProfileWidgetWrapper
from lcfusion.plugin.plugin import MENU, LcfusionPlugin
from lcfusion.plugin.settings import ENGINE_PYTHON_KEY, PROFILES_KEY, engine_python, plugin_root
from lcfusion.plugin.settings_dialog import (
    PROBE_TIMEOUT_SECONDS,
    SettingsDialog,
    fields_for_kind,
    form_values,
    probe_result,
    profile_from_values,
    run_probe,
)

GPU = ComputeProfile("gpu", kind="ssh", host="gpu.example.org", user="ana", ranks=2,
                     identity_file="/home/ana/.ssh/id_ed25519", mpirun_args=("--bind-to", "none"),
                     env={"OMP_NUM_THREADS": "4"}, path_map=(("/data", "/shared/data"),))
CLUSTER = ComputeProfile("cluster", kind="slurm", partition="gpu", nodes=2, gpus_per_node=4,
                         time_limit="01:00:00", sbatch_lines=("#SBATCH --account=lc",))
REPORT = {"where": "gpu.example.org", "python": "/usr/bin/python3 3.11.2", "torch": "2.13.0",
          "cuda": "12.4", "gpus": ["NVIDIA H100", "NVIDIA H100"],
          "mpirun": "mpirun (Open MPI) 4.1.4", "missing": [], "seconds": 2.25}


@pytest.fixture
def saved_settings(qgis_app):
    """Restores the two lcfusion settings the dialog writes."""
    settings = QgsSettings()
    previous = {key: settings.value(key, None) for key in (ENGINE_PYTHON_KEY, PROFILES_KEY)}
    yield settings
    for key, value in previous.items():
        if value is None:
            settings.remove(key)
        else:
            settings.setValue(key, value)


@pytest.fixture
def profiles_file(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "profiles.toml"
    save_profiles(path, {"gpu": GPU, "cluster": CLUSTER})
    monkeypatch.setenv("LCFUSION_PROFILES", str(path))
    return path


@pytest.fixture
def dialog(qgis_app, saved_settings, profiles_file):
    dialog = SettingsDialog()
    yield dialog
    deadline = time.monotonic() + PROBE_TIMEOUT_SECONDS
    while dialog.probe_runner.running and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    dialog.deleteLater()
    QCoreApplication.processEvents()


def select(dialog: SettingsDialog, name: str) -> None:
    dialog.profile_list.setCurrentRow(dialog.profile_names().index(name))


def press_ok(dialog: SettingsDialog) -> None:
    dialog.button_box.button(QDialogButtonBox.Ok).click()


def wait_until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        QCoreApplication.processEvents()
        time.sleep(0.01)


def screenshot(widget, name: str) -> Path:
    """Renders `widget` to ``LCFUSION_SCREENSHOTS`` (when set, to look at) or a temporary
    file; the path."""
    folder = Path(os.environ.get("LCFUSION_SCREENSHOTS") or tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    assert widget.grab().toImage().save(str(path))
    return path


def enabled_fields(dialog: SettingsDialog) -> set[str]:
    return {name for name, widget in dialog.form.widgets.items() if widget.isEnabled()}


# Form values <-> profiles ------------------------------------------------------------------

QUOTED = ComputeProfile("quoted", kind="mpi", mpirun_args=("-x", "A=b c", "--oversubscribe"))


@pytest.mark.parametrize("profile", [ComputeProfile("local"), GPU, CLUSTER, QUOTED])
def test_form_values_give_back_the_profile(profile):
    values = form_values(profile)
    assert isinstance(values["mpirun_args"], str)
    assert profile_from_values(values) == profile


def test_form_text_is_read_as_lists_and_tables():
    values = form_values(ComputeProfile("p", kind="mpi"))
    values.update(mpirun_args="--bind-to none -x 'NAME=a b'", env="A=1\n\n B = two \n",
                  sbatch_lines="#SBATCH --qos=long\n\n#SBATCH --mem=8G\n", host="  h  ",
                  path_map=" /data/s2 -> /scratch/s2 \n\n/home/ana->/shared/ana\n")
    profile = profile_from_values(values)
    assert profile.mpirun_args == ("--bind-to", "none", "-x", "NAME=a b")
    assert profile.env == {"A": "1", "B": "two"}
    assert profile.sbatch_lines == ("#SBATCH --qos=long", "#SBATCH --mem=8G")
    assert profile.host == "h"
    assert profile.path_map == (("/data/s2", "/scratch/s2"), ("/home/ana", "/shared/ana"))


@pytest.mark.parametrize(("change", "message"), [
    ({"ranks": 0}, "ranks must be at least 1"),
    ({"kind": "ssh", "host": ""}, "needs a host"),
    ({"mpirun_args": "--x 'unclosed"}, "mpirun arguments"),
    ({"env": "JUST_A_NAME"}, "NAME=value"),
    ({"path_map": "/data /shared/data"}, "path_map entries are 'local prefix -> prefix"),
    ({"path_map": "/data -> shared/data"}, "path_map entry 1 maps '/data' to 'shared/data'"),
    ({"name": "has space"}, "letters, digits"),
])
def test_invalid_form_values_raise_the_engine_message(change, message):
    values = form_values(ComputeProfile("p", kind="mpi"))
    values.update(change)
    with pytest.raises(settings_dialog.LcfusionError, match=message):
        profile_from_values(values)


def test_fields_by_kind():
    assert fields_for_kind("local") == {"name", "kind"}
    assert {"ranks", "mpirun", "mpirun_args", "python"} <= fields_for_kind("mpi")
    assert not fields_for_kind("mpi") & {"host", "port", "partition", "nodes"}
    assert {"host", "user", "port", "identity_file", "ranks"} <= fields_for_kind("ssh")
    assert "partition" not in fields_for_kind("ssh")
    assert {"host", "partition", "nodes", "gpus", "time_limit", "sbatch_lines",
            "ranks"} <= fields_for_kind("slurm")


# The dialog --------------------------------------------------------------------------------

def test_the_dialog_lists_the_profiles_of_the_file(dialog, profiles_file):
    assert dialog.profiles_file() == profiles_file
    assert dialog.profile_names() == ["local", "gpu", "cluster"]
    select(dialog, "gpu")
    form = dialog.form.widgets
    assert form["host"].text() == "gpu.example.org"
    assert form["kind"].currentText() == "ssh"
    assert form["ranks"].value() == 2
    assert form["mpirun_args"].text() == "--bind-to none"
    assert form["identity_file"].filePath() == "/home/ana/.ssh/id_ed25519"
    assert form["env"].toPlainText() == "OMP_NUM_THREADS=4"
    assert form["path_map"].toPlainText() == "/data -> /shared/data"
    select(dialog, "cluster")
    assert form["sbatch_lines"].toPlainText() == "#SBATCH --account=lc"
    assert form["time_limit"].text() == "01:00:00"
    assert dialog.profile_error.text() == ""


def test_the_environment_overrides_are_shown(dialog, monkeypatch, profiles_file):
    monkeypatch.setenv("LCFUSION_PYTHON", "/opt/from-env/python")
    dialog.engine_python_field.setFilePath("/opt/typed/python")
    assert dialog.engine_python_field.lineEdit().placeholderText() == "/opt/from-env/python"
    assert "LCFUSION_PYTHON" in dialog.engine_python_note.text()
    assert "/opt/from-env/python" in dialog.engine_python_note.text()
    assert "LCFUSION_PROFILES" in dialog.profiles_file_note.text()
    assert str(profiles_file) in dialog.profiles_file_note.text()


def test_editing_and_saving_writes_the_profiles_file(dialog, profiles_file, saved_settings):
    select(dialog, "gpu")
    form = dialog.form.widgets
    form["host"].setText("other.example.org")
    form["ranks"].setValue(4)
    form["mpirun_args"].setText("--bind-to none -x 'GREETING=hello world'")
    form["accept_new_host_key"].setChecked(True)
    select(dialog, "cluster")
    form["nodes"].setValue(3)
    dialog.engine_python_field.setFilePath("/opt/engine/bin/python")
    press_ok(dialog)
    assert dialog.result() == SettingsDialog.Accepted
    saved = load_profiles(profiles_file)
    assert list(saved) == ["local", "gpu", "cluster"]
    assert saved["gpu"] == replace(GPU, host="other.example.org", ranks=4,
                                   mpirun_args=("--bind-to", "none", "-x",
                                                "GREETING=hello world"),
                                   accept_new_host_key=True)
    assert saved["cluster"] == replace(CLUSTER, nodes=3)
    assert saved_settings.value(ENGINE_PYTHON_KEY) == "/opt/engine/bin/python"
    assert "password" not in profiles_file.read_text()


def test_add_duplicate_and_remove(dialog, profiles_file):
    dialog.add_button.click()
    assert dialog.profile_names()[-1] == "new"
    assert dialog.form.widgets["name"].text() == "new"
    dialog.form.widgets["name"].setText("spare")
    assert dialog.profile_list.currentItem().text() == "spare (mpi)"
    select(dialog, "gpu")
    dialog.duplicate_button.click()
    assert dialog.profile_names() == ["local", "gpu", "cluster", "spare", "gpu-copy"]
    assert dialog.form.widgets["host"].text() == "gpu.example.org"
    select(dialog, "cluster")
    dialog.remove_button.click()
    assert dialog.save()
    saved = load_profiles(profiles_file)
    assert list(saved) == ["local", "gpu", "spare", "gpu-copy"]
    assert saved["gpu-copy"] == replace(GPU, name="gpu-copy")
    assert saved["spare"] == ComputeProfile("spare", kind="mpi")


def test_local_is_shown_but_cannot_be_edited_or_removed(dialog):
    select(dialog, "local")
    assert dialog.form.widgets["kind"].currentText() == "local"
    assert enabled_fields(dialog) == set()
    assert not dialog.remove_button.isEnabled()
    dialog.remove_profile()
    assert dialog.profile_names()[0] == "local"
    select(dialog, "gpu")
    assert dialog.remove_button.isEnabled()


@pytest.mark.parametrize("kind", ["mpi", "ssh", "slurm"])
def test_fields_are_enabled_by_kind(dialog, kind):
    select(dialog, "gpu")
    dialog.form.widgets["kind"].setCurrentText(kind)
    assert enabled_fields(dialog) == fields_for_kind(kind)
    assert dialog.form.labels["host"].isEnabled() == (kind != "mpi")
    assert dialog.form.widgets["partition"].isEnabled() == (kind == "slurm")
    assert dialog.form.widgets["work_dir"].isEnabled()
    assert dialog.form.widgets["ranks"].isEnabled()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("ranks", 0, "ranks must be at least 1"),
    ("host", "", "an ssh profile needs a host"),
    ("time_limit", "soon", "is not a Slurm time"),
])
def test_an_invalid_value_is_shown_and_nothing_is_written(dialog, profiles_file, field, value,
                                                          message):
    before = profiles_file.read_bytes()
    select(dialog, "gpu")
    widget = dialog.form.widgets[field]
    widget.setValue(value) if isinstance(value, int) else widget.setText(value)
    assert message in dialog.profile_error.text()
    select(dialog, "local")
    press_ok(dialog)
    assert dialog.result() != SettingsDialog.Accepted
    assert dialog.profile_list.currentItem().text().startswith("gpu")
    assert message in dialog.profile_error.text()
    assert message in dialog.message_bar.currentItem().text()
    assert profiles_file.read_bytes() == before


def test_two_profiles_with_one_name_are_not_saved(dialog, profiles_file):
    before = profiles_file.read_bytes()
    select(dialog, "cluster")
    dialog.form.widgets["name"].setText("gpu")
    assert not dialog.save()
    assert "two profiles are called 'gpu'" in dialog.profile_error.text()
    assert profiles_file.read_bytes() == before


def test_an_unreadable_profiles_file_is_reported_and_not_overwritten(qgis_app, saved_settings,
                                                                    tmp_path, monkeypatch):
    broken = tmp_path / "broken.toml"
    broken.write_text("[profiles.gpu\nkind = 'ssh'\n")
    monkeypatch.setenv("LCFUSION_PROFILES", str(broken))
    dialog = SettingsDialog()
    assert dialog.profile_names() == ["local"]
    assert "not valid TOML" in dialog.message_bar.currentItem().text()
    assert not dialog.save()
    assert broken.read_text() == "[profiles.gpu\nkind = 'ssh'\n"


# The Test button ---------------------------------------------------------------------------

class FakeRun:
    """Stands in for subprocess.run: records the call and the profiles file it was given."""

    def __init__(self, returncode: int = 0, stdout: str = "", stderr: str = "") -> None:
        self.result = (returncode, stdout, stderr)
        self.args: list[str] = []
        self.kwargs: dict = {}
        self.profiles: dict[str, ComputeProfile] = {}
        self.release = threading.Event()
        self.release.set()

    def __call__(self, args, **kwargs):
        self.args, self.kwargs = list(args), kwargs
        self.profiles = load_profiles(args[args.index("--profiles") + 1])
        assert self.release.wait(10)
        return subprocess.CompletedProcess(args, *self.result)


def test_the_test_button_probes_the_edited_profile_and_shows_the_report(dialog, monkeypatch):
    fake = FakeRun(stdout=json.dumps(REPORT, indent=2) + "\n")
    fake.release.clear()
    monkeypatch.setattr(subprocess, "run", fake)
    select(dialog, "gpu")
    dialog.form.widgets["host"].setText("edited.example.org")
    dialog.test_button.click()
    wait_until(lambda: fake.args)
    assert not dialog.probe_busy.isHidden()
    assert not dialog.test_button.isEnabled()
    fake.release.set()
    wait_until(lambda: not dialog.probe_runner.running)
    assert dialog.probe_busy.isHidden()
    assert dialog.test_button.isEnabled()
    profiles_arg = fake.args[fake.args.index("--profiles") + 1]
    assert fake.args == [engine_python(), "-m", "lcfusion.engine", "--events", "text",
                         "probe-compute", "--profiles", profiles_arg, "gpu"]
    assert fake.kwargs["timeout"] == PROBE_TIMEOUT_SECONDS == 120
    assert fake.kwargs["env"]["PYTHONPATH"].split(":")[0] == str(plugin_root().parent)
    assert "shell" not in fake.kwargs
    assert fake.profiles["gpu"] == replace(GPU, host="edited.example.org")
    assert not Path(profiles_arg).exists()
    shown = dialog.probe_output.toPlainText()
    for line in ("where: gpu.example.org", "torch: 2.13.0", "CUDA: 12.4",
                 "GPUs: NVIDIA H100, NVIDIA H100", "mpirun: mpirun (Open MPI) 4.1.4",
                 "missing Python modules: none", "seconds: 2.2"):
        assert line in shown


def test_a_failed_probe_shows_the_engine_error(dialog, monkeypatch):
    stderr = "starting\nerror: ssh: connect to host gpu.example.org port 22: refused\n"
    monkeypatch.setattr(subprocess, "run", FakeRun(returncode=1, stderr=stderr))
    select(dialog, "gpu")
    dialog.test_button.click()
    wait_until(lambda: not dialog.probe_runner.running)
    shown = dialog.probe_output.toPlainText()
    assert "exited with code 1" in shown
    assert "error: ssh: connect to host gpu.example.org port 22: refused" in shown
    assert dialog.test_button.isEnabled()


def test_an_invalid_profile_is_not_probed(dialog, monkeypatch):
    fake = FakeRun()
    monkeypatch.setattr(subprocess, "run", fake)
    select(dialog, "gpu")
    dialog.form.widgets["ranks"].setValue(0)
    dialog.test_button.click()
    assert not dialog.probe_runner.running
    assert fake.args == []
    assert "ranks must be at least 1" in dialog.profile_error.text()


def test_probe_results_are_read_from_the_exit_code_and_stdout():
    for printed in (json.dumps(REPORT), json.dumps(REPORT, indent=2)):
        report = probe_result(0, "probing gpu…\n" + printed + "\n", "")
        assert report.succeeded and report.report == REPORT
    missing = probe_result(0, "no json here\n", "")
    assert not missing.succeeded and "no JSON report" in missing.failure
    assert missing.lines == ["no json here"]
    failed = probe_result(2, "", "error: unknown compute profile 'x'\n")
    assert not failed.succeeded and failed.lines == ["error: unknown compute profile 'x'"]


def test_a_probe_that_cannot_start_or_times_out_says_so(monkeypatch):
    def missing(args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(subprocess, "run", missing)
    result = run_probe(GPU, "/no/such/python")
    assert "cannot start the engine with '/no/such/python'" in result.failure

    def slow(args, **kwargs):
        raise subprocess.TimeoutExpired(args, kwargs["timeout"], output=b"probing\n",
                                        stderr=b"waiting for ssh\n")

    monkeypatch.setattr(subprocess, "run", slow)
    result = run_probe(GPU, "python3")
    assert result.failure == "no answer within 120 s"
    assert result.lines == ["waiting for ssh", "probing"]


# The plugin's menu entry -------------------------------------------------------------------

def test_init_gui_adds_the_settings_entry_and_unload_removes_it(qgis_app, qgis_iface,
                                                                monkeypatch, profiles_file,
                                                                saved_settings):
    monkeypatch.setattr(LcfusionPlugin, "initProcessing", lambda self: None)
    add, remove = MagicMock(), MagicMock()
    monkeypatch.setattr(qgis_iface, "addPluginToMenu", add)
    monkeypatch.setattr(qgis_iface, "removePluginMenu", remove)
    opened = []
    monkeypatch.setattr(SettingsDialog, "exec", lambda self: opened.append(self) or 0)
    plugin = LcfusionPlugin(qgis_iface)
    plugin.initGui()
    action, environment_action = plugin.settings_action, plugin.environment_action
    assert [c.args for c in add.call_args_list] == [(MENU, action), (MENU, environment_action)]
    assert MENU == "Land Cover Fusion" and action.text() == "Settings…"
    action.trigger()
    assert len(opened) == 1 and opened[0].profile_names() == ["local", "gpu", "cluster"]
    plugin.unload()
    assert [c.args for c in remove.call_args_list] == [(MENU, action),
                                                       (MENU, environment_action)]
    assert plugin.settings_action is None
    headless = LcfusionPlugin(None)
    headless.initGui()
    headless.unload()
    assert headless.settings_action is None


# The engine interpreter's state, an empty profiles file, the compute profile widget -------

def test_the_dialog_shows_whether_the_engine_python_works(dialog, monkeypatch):
    engine = engine_python()
    dialog.show()
    assert dialog.engine_python_status.text() == f"Checking {engine}…"  # the UI is not held
    wait_until(lambda: not dialog.engine_python_status.text().startswith("Checking"), 120)
    # The CPU build here; PyPI's CUDA build (+cu130) in a chroot that cannot reach PyTorch's
    # CPU index.
    assert re.fullmatch(r"Works: torch 2\.13\.0\+(cpu|cu[0-9]+), CPU only \(no CUDA GPU\)\.",
                        dialog.engine_python_status.text())
    screenshot(dialog, "settings-dialog.png")
    monkeypatch.delenv("LCFUSION_PYTHON")
    dialog.engine_python_field.setFilePath("/nonexistent/bin/python")
    wait_until(lambda: dialog.engine_python_status.text().startswith("Does not work"), 30)
    assert dialog.engine_python_status.text() == \
        "Does not work: /nonexistent/bin/python does not exist."
    dialog.hide()


def test_saving_only_local_writes_no_profiles_file(qgis_app, saved_settings, tmp_path,
                                                   monkeypatch):
    path = tmp_path / "lcfusion" / "profiles.toml"
    monkeypatch.setenv("LCFUSION_PROFILES", str(path))
    dialog = SettingsDialog()
    try:
        dialog.engine_python_field.setFilePath("/opt/engine/bin/python")
        assert dialog.save()
        assert not path.exists() and not path.parent.exists()
        assert saved_settings.value(ENGINE_PYTHON_KEY) == "/opt/engine/bin/python"
        dialog.add_profile()
        assert dialog.save() and load_profiles(path).keys() == {"local", "new"}
        dialog.remove_profile()
        assert dialog.save() and load_profiles(path).keys() == {"local"}  # emptied, kept
    finally:
        dialog.deleteLater()


def test_the_compute_profile_offers_the_known_profiles(lcfusion_provider, qgis_iface,
                                                       profiles_file, monkeypatch):
    browser_model = QgsBrowserGuiModel()
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser_model)
    alg = QgsApplication.processingRegistry().createAlgorithmById("lcfusion:trainfgunet")
    assert isinstance(alg.parameterDefinition("COMPUTE"), QgsProcessingParameterString)
    dialog = AlgorithmDialog(alg)
    try:
        wrapper = dialog.mainWidget().wrappers["COMPUTE"]
        assert isinstance(wrapper, ComputeProfileWidgetWrapper)
        combo = wrapper.widget
        assert isinstance(combo, QComboBox) and combo.isEditable()
        assert [combo.itemText(i) for i in range(combo.count())] == ["local", "gpu", "cluster"]
        assert combo.currentText() == "local"
        dialog.resize(900, 1000)
        dialog.show()
        dialog.mainWidget().findChild(QScrollArea).ensureWidgetVisible(combo)
        QCoreApplication.processEvents()
        screenshot(dialog, "compute-profile.png")
        dialog.hide()
        combo.setCurrentIndex(1)
        assert wrapper.parameterValue() == "gpu"
        combo.setEditText("elsewhere")  # any name, as qgis_process takes it
        assert wrapper.parameterValue() == "elsewhere"
    finally:
        dialog.deleteLater()
        browser_model.deleteLater()
