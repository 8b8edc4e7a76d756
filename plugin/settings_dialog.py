"""The lcfusion settings dialog: the engine interpreter, the compute profiles file and its
profiles, each of which can be tried with the engine's ``probe-compute`` command.

The logic (form values <-> `ComputeProfile`, which fields a kind uses, running the probe and
reading its report) is in plain functions; the widgets only call them.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsSettings
from qgis.gui import QgsFileWidget, QgsMessageBar
from qgis.PyQt.QtCore import QObject, Qt, QTimer, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..engine.compute.profiles import (
    KINDS,
    LOCAL,
    PROFILES_ENV,
    ComputeProfile,
    load_profiles,
    save_profiles,
)
from ..engine.errors import LcfusionError
from .engine_process import engine_environment
from .environment import engine_python_status
from .settings import (
    ENGINE_PYTHON_ENV,
    ENGINE_PYTHON_KEY,
    PROFILES_KEY,
    engine_python,
    package_name,
    profiles_path,
)

PROBE_TIMEOUT_SECONDS = 120
TAIL_LINES = 12
#: Between a local prefix and the target's prefix on a line of the path map.
MAPS_TO = "->"

# Which fields a kind uses ------------------------------------------------------------------

#: How ranks are started (mpirun here, over ssh or in a Slurm job) and where the job folder is.
RUN_FIELDS = frozenset({"python", "mpirun", "mpirun_args", "hostfile", "ranks", "gpus_per_node",
                        "env", "work_dir", "keep_work_dir", "path_map"})
#: How a remote host is reached (ssh, and Slurm through a login host).
SSH_FIELDS = frozenset({"host", "user", "port", "identity_file", "known_hosts_file",
                        "accept_new_host_key"})
SLURM_FIELDS = frozenset({"partition", "nodes", "gpus", "time_limit", "sbatch_lines"})
KIND_FIELDS: dict[str, frozenset[str]] = {
    "local": frozenset(),
    "mpi": RUN_FIELDS,
    "ssh": RUN_FIELDS | SSH_FIELDS,
    "slurm": RUN_FIELDS | SSH_FIELDS | SLURM_FIELDS,
}
#: Fields every editable profile shows.
COMMON_FIELDS = frozenset({"name", "kind"})


def fields_for_kind(kind: str) -> frozenset[str]:
    """The `ComputeProfile` fields a profile of `kind` uses (name and kind included)."""
    return COMMON_FIELDS | KIND_FIELDS.get(kind, frozenset())


# Form values <-> profiles ------------------------------------------------------------------

def form_values(profile: ComputeProfile) -> dict[str, Any]:
    """The form's values for a profile: lists as text (mpirun arguments shell-quoted on one
    line, sbatch lines, ``NAME=value`` environment entries and ``local -> target`` path
    prefixes one per line)."""
    values = {f.name: getattr(profile, f.name) for f in fields(ComputeProfile)}
    values["mpirun_args"] = shlex.join(profile.mpirun_args)
    values["sbatch_lines"] = "\n".join(profile.sbatch_lines)
    values["env"] = "\n".join(f"{key}={value}" for key, value in profile.env.items())
    values["path_map"] = "\n".join(f"{local} {MAPS_TO} {remote}"
                                   for local, remote in profile.path_map)
    return values


def _lines(text: str) -> list[str]:
    return [line.strip() for line in str(text).splitlines() if line.strip()]


def profile_from_values(values: dict[str, Any]) -> ComputeProfile:
    """The profile the form describes; `LcfusionError` says what is wrong with it."""
    data = {key: value.strip() if isinstance(value, str) else value
            for key, value in values.items()}
    name = data.pop("name")
    where = f"compute profile {name!r}"
    try:
        data["mpirun_args"] = tuple(shlex.split(data["mpirun_args"]))
    except ValueError as exc:
        raise LcfusionError(f"{where}: mpirun arguments: {exc}", "COMPUTE") from None
    data["sbatch_lines"] = tuple(_lines(data["sbatch_lines"]))
    env = {}
    for line in _lines(data["env"]):
        key, equals, value = line.partition("=")
        if not equals or not key.strip():
            raise LcfusionError(f"{where}: environment entries are NAME=value lines, got "
                                f"{line!r}", "COMPUTE")
        env[key.strip()] = value.strip()
    data["env"] = env
    pairs = []
    for line in _lines(data["path_map"]):
        local, arrow, remote = line.partition(MAPS_TO)
        if not arrow:
            raise LcfusionError(f"{where}: path_map entries are 'local prefix {MAPS_TO} prefix "
                                f"on the target' lines, got {line!r}", "COMPUTE")
        pairs.append((local.strip(), remote.strip()))
    data["path_map"] = tuple(pairs)
    return ComputeProfile(name=name, **data)


def unique_name(base: str, taken: set[str]) -> str:
    """`base`, or `base-2`, `base-3`... whichever is not taken."""
    if base not in taken:
        return base
    number = 2
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"


# The probe ---------------------------------------------------------------------------------

@dataclass
class ProbeResult:
    """What ``probe-compute`` said: its JSON report, or why there is none."""

    report: dict[str, Any] | None = None
    failure: str = ""
    lines: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.report is not None


def probe_command(python: str, profiles_file: Path, name: str) -> list[str]:
    """The argument list that probes profile `name` of `profiles_file` (never a shell string)."""
    return [python, "-m", f"{package_name()}.engine", "--events", "text", "probe-compute",
            "--profiles", str(profiles_file), name]


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode("utf-8", errors="replace")
    return output or ""


def tail_lines(stdout: str | bytes | None, stderr: str | bytes | None) -> list[str]:
    """The last non-empty lines of stderr, then of stdout."""
    return [line for stream in (stderr, stdout)
            for line in [line for line in _text(stream).splitlines() if line.strip()]
            [-TAIL_LINES:]]


def json_report(stdout: str) -> dict[str, Any] | None:
    """The JSON object the probe printed: all of stdout, else the last part of it, from a line
    that starts with ``{`` to the end, or a single line that is one."""
    text = stdout.strip()
    lines = text.splitlines()
    tails = ["\n".join(lines[start:]) for start in reversed(range(len(lines)))
             if lines[start].startswith("{")]
    for candidate in [text, *tails, *reversed(lines)]:
        try:
            report = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(report, dict):
            return report
    return None


def probe_result(returncode: int, stdout: str, stderr: str) -> ProbeResult:
    """Reads a finished probe: exit 0 and a JSON object on stdout, or a failure."""
    lines = tail_lines(stdout, stderr)
    if returncode != 0:
        return ProbeResult(failure=f"the engine exited with code {returncode}", lines=lines)
    report = json_report(stdout)
    if report is None:
        return ProbeResult(failure="the engine printed no JSON report", lines=lines)
    return ProbeResult(report=report)


def run_probe(profile: ComputeProfile, python: str) -> ProbeResult:
    """Runs ``probe-compute`` on `profile` (written to a temporary profiles file) and waits
    at most `PROBE_TIMEOUT_SECONDS`."""
    with tempfile.TemporaryDirectory(prefix="lcfusion-probe-") as folder:
        profiles_file = Path(folder) / "profiles.toml"
        save_profiles(profiles_file, {profile.name: profile})
        args = probe_command(python, profiles_file, profile.name)
        try:
            finished = subprocess.run(args, capture_output=True, text=True, encoding="utf-8",
                                      errors="replace", env=engine_environment(),
                                      timeout=PROBE_TIMEOUT_SECONDS, check=False)
        except subprocess.TimeoutExpired as exc:
            return ProbeResult(failure=f"no answer within {PROBE_TIMEOUT_SECONDS} s",
                               lines=tail_lines(exc.stdout, exc.stderr))
        except OSError as exc:
            return ProbeResult(failure=f"cannot start the engine with {python!r}: "
                                       f"{exc.strerror or exc}")
    return probe_result(finished.returncode, finished.stdout, finished.stderr)


def report_text(report: dict[str, Any]) -> str:
    """The probe's report, one ``label: value`` line per key."""
    gpus = report.get("gpus") or []
    missing = report.get("missing") or []
    seconds = report.get("seconds")
    lines = [
        f"where: {report.get('where', '?')}",
        f"python: {report.get('python', '?')}",
        f"torch: {report.get('torch') or 'not found'}",
        f"CUDA: {report.get('cuda') or 'not available'}",
        f"GPUs: {', '.join(map(str, gpus)) if gpus else 'none'}",
        f"mpirun: {report.get('mpirun') or 'not found'}",
        f"missing Python modules: {', '.join(map(str, missing)) if missing else 'none'}",
        f"seconds: {seconds:.1f}" if isinstance(seconds, (int, float)) else "seconds: ?",
    ]
    known = {"where", "python", "torch", "cuda", "gpus", "mpirun", "missing", "seconds"}
    lines += [f"{key}: {value}" for key, value in report.items() if key not in known]
    return "\n".join(lines)


def result_text(name: str, result: ProbeResult) -> str:
    """What the dialog shows after probing profile `name`."""
    if result.succeeded:
        return f"Profile {name!r} answered:\n{report_text(result.report)}"
    text = f"Profile {name!r} failed: {result.failure}"
    return text + ("\n\n" + "\n".join(result.lines) if result.lines else "")


class ProbeRunner(QObject):
    """Runs `run_probe` in a worker thread; `done` carries the `ProbeResult` to the UI thread."""

    done = pyqtSignal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.running = False

    def start(self, profile: ComputeProfile, python: str) -> None:
        self.running = True
        threading.Thread(target=self._run, args=(profile, python), daemon=True,
                         name="lcfusion-probe").start()

    def _run(self, profile: ComputeProfile, python: str) -> None:
        try:
            result = run_probe(profile, python)
        except Exception as exc:  # noqa: BLE001 - the UI must leave its busy state
            result = ProbeResult(failure=f"the probe could not run: {exc}")
        try:
            self.done.emit(result)
        except RuntimeError:  # the dialog, and this object with it, is gone
            pass


class EnginePythonChecker(QObject):
    """Runs `engine_python_status` in a worker thread; `done` carries the interpreter and
    its status line to the UI thread."""

    done = pyqtSignal(str, str)

    def start(self, python: str) -> None:
        threading.Thread(target=self._run, args=(python,), daemon=True,
                         name="lcfusion-engine-python").start()

    def _run(self, python: str) -> None:
        try:
            status = engine_python_status(python)
        except Exception as exc:  # noqa: BLE001 - the label must leave "Checking…"
            status = f"Could not check it: {exc}"
        try:
            self.done.emit(python, status)
        except RuntimeError:  # the dialog, and this object with it, is gone
            pass


# Widgets -----------------------------------------------------------------------------------

def _file_widget(mode, dialog_title: str, file_filter: str = "") -> QgsFileWidget:
    widget = QgsFileWidget()
    widget.setStorageMode(mode)
    widget.setDialogTitle(dialog_title)
    if file_filter:
        widget.setFilter(file_filter)
    return widget


class ProfileForm(QWidget):
    """The editor of one profile: a widget per `ComputeProfile` field, enabled by kind."""

    changed = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.editable = True
        self._filling = False
        self.widgets: dict[str, QWidget] = {}
        self.labels: dict[str, QLabel] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        sections = (
            ("Profile", (
                ("name", "Name", QLineEdit()),
                ("kind", "Kind", self._kind_combo()),
            )),
            ("Run (mpi, ssh, slurm)", (
                ("python", "Python on the target", QLineEdit()),
                ("mpirun", "mpirun", QLineEdit()),
                ("mpirun_args", "mpirun arguments", QLineEdit()),
                ("hostfile", "Hostfile", QLineEdit()),
                ("ranks", "Ranks", self._spin(0, 100000)),
                ("gpus_per_node", "GPUs per node", self._spin(0, 1024)),
                ("env", "Environment", self._text_box()),
                ("work_dir", "Work folder", QLineEdit()),
                ("keep_work_dir", "", QCheckBox("Keep the work folder after a run")),
                ("path_map", "Shared paths", self._text_box()),
            )),
            ("Connection (ssh, slurm)", (
                ("host", "Host", QLineEdit()),
                ("user", "User", QLineEdit()),
                ("port", "Port", self._spin(0, 65535)),
                ("identity_file", "Identity file (key)",
                 _file_widget(QgsFileWidget.StorageMode.GetFile, "SSH private key")),
                ("known_hosts_file", "Known hosts file",
                 _file_widget(QgsFileWidget.StorageMode.GetFile, "SSH known hosts file")),
                ("accept_new_host_key", "", QCheckBox("Accept a new host key on first "
                                                      "connection")),
            )),
            ("Slurm", (
                ("partition", "Partition", QLineEdit()),
                ("nodes", "Nodes", self._spin(0, 100000)),
                ("gpus", "GPUs", self._spin(0, 100000)),
                ("time_limit", "Time limit", QLineEdit()),
                ("sbatch_lines", "Extra #SBATCH lines", self._text_box()),
            )),
        )
        for title, rows in sections:
            group = QGroupBox(title)
            form = QFormLayout(group)
            for name, label, widget in rows:
                self.widgets[name] = widget
                self.labels[name] = QLabel(label)
                form.addRow(self.labels[name], widget)
                self._connect(widget)
            layout.addWidget(group)
        self.widgets["mpirun_args"].setPlaceholderText("shell-like, e.g. --bind-to none")
        self.widgets["python"].setPlaceholderText("python3 on the target (with torch)")
        self.widgets["env"].setPlaceholderText("NAME=value, one per line")
        self.widgets["path_map"].setPlaceholderText(
            f"/data {MAPS_TO} /shared/data: inputs the target reads there (one per line)")
        self.widgets["sbatch_lines"].setPlaceholderText("#SBATCH --account=... (one per line)")
        self.widgets["time_limit"].setPlaceholderText("minutes, HH:MM:SS or D-HH:MM:SS")
        self.widgets["work_dir"].setPlaceholderText("lcfusion-jobs in the remote home, "
                                                    "~/.cache/lcfusion/jobs here")
        self.widgets["host"].setPlaceholderText("slurm: empty when sbatch runs on this machine")
        self.widgets["kind"].currentTextChanged.connect(self._update_enabled)
        self._update_enabled()

    @staticmethod
    def _kind_combo() -> QComboBox:
        combo = QComboBox()
        combo.addItems(list(KINDS))
        return combo

    @staticmethod
    def _spin(minimum: int, maximum: int) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(minimum, maximum)
        return spin

    @staticmethod
    def _text_box() -> QPlainTextEdit:
        box = QPlainTextEdit()
        box.setMinimumHeight(48)
        box.setMaximumHeight(80)
        return box

    def _connect(self, widget: QWidget) -> None:
        if isinstance(widget, QLineEdit):
            widget.textChanged.connect(self._emit_changed)
        elif isinstance(widget, QComboBox):
            widget.currentTextChanged.connect(self._emit_changed)
        elif isinstance(widget, QSpinBox):
            widget.valueChanged.connect(self._emit_changed)
        elif isinstance(widget, QCheckBox):
            widget.toggled.connect(self._emit_changed)
        elif isinstance(widget, QPlainTextEdit):
            widget.textChanged.connect(self._emit_changed)
        elif isinstance(widget, QgsFileWidget):
            widget.fileChanged.connect(self._emit_changed)

    def _emit_changed(self, *_args) -> None:
        if not self._filling:
            self.changed.emit()

    def kind(self) -> str:
        return self.widgets["kind"].currentText()

    def values(self) -> dict[str, Any]:
        """The form's values, keyed by `ComputeProfile` field."""
        values: dict[str, Any] = {}
        for name, widget in self.widgets.items():
            if isinstance(widget, QLineEdit):
                values[name] = widget.text()
            elif isinstance(widget, QComboBox):
                values[name] = widget.currentText()
            elif isinstance(widget, QSpinBox):
                values[name] = widget.value()
            elif isinstance(widget, QCheckBox):
                values[name] = widget.isChecked()
            elif isinstance(widget, QPlainTextEdit):
                values[name] = widget.toPlainText()
            elif isinstance(widget, QgsFileWidget):
                values[name] = widget.filePath()
        return values

    def set_values(self, values: dict[str, Any], editable: bool = True) -> None:
        """Shows `values` (as made by `form_values`) without emitting `changed`."""
        self._filling = True
        try:
            for name, widget in self.widgets.items():
                value = values[name]
                if isinstance(widget, QLineEdit):
                    widget.setText(str(value))
                elif isinstance(widget, QComboBox):
                    widget.setCurrentText(str(value))
                elif isinstance(widget, QSpinBox):
                    widget.setValue(int(value))
                elif isinstance(widget, QCheckBox):
                    widget.setChecked(bool(value))
                elif isinstance(widget, QPlainTextEdit):
                    widget.setPlainText(str(value))
                elif isinstance(widget, QgsFileWidget):
                    widget.setFilePath(str(value))
        finally:
            self._filling = False
        self.editable = editable
        self._update_enabled()

    def _update_enabled(self, *_args) -> None:
        used = fields_for_kind(self.kind()) if self.editable else frozenset()
        for name, widget in self.widgets.items():
            widget.setEnabled(name in used)
            self.labels[name].setEnabled(name in used)


class SettingsDialog(QDialog):
    """Engine interpreter, compute profiles file, and the profiles in it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Land Cover Fusion — Settings")
        self.drafts: list[dict[str, Any]] = []
        self.current_row = -1
        self.loaded_path: Path | None = None
        self.file_readable = True
        self.probe_runner = ProbeRunner(self)
        self.probe_runner.done.connect(self.show_probe_result)
        self.probed_name = ""
        self.python_checker = EnginePythonChecker(self)
        self.python_checker.done.connect(self.show_engine_python_status)
        self.python_check_delay = QTimer(self)
        self.python_check_delay.setSingleShot(True)
        self.python_check_delay.setInterval(600)
        self.python_check_delay.timeout.connect(self.check_engine_python)
        self._build()
        self.resize(900, 900)
        settings = QgsSettings()
        self.engine_python_field.setFilePath(str(settings.value(ENGINE_PYTHON_KEY, "") or ""))
        self.profiles_file_field.setFilePath(str(settings.value(PROFILES_KEY, "") or ""))
        self.engine_python_field.fileChanged.connect(self._update_placeholders)
        self.engine_python_field.fileChanged.connect(self.python_check_delay.start)
        self.profiles_file_field.fileChanged.connect(self._on_profiles_file_changed)
        self._update_placeholders()
        self.load_profiles_file()

    # Layout ------------------------------------------------------------------------------

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        self.message_bar = QgsMessageBar(self)
        layout.addWidget(self.message_bar)

        files = QFormLayout()
        self.engine_python_field = _file_widget(QgsFileWidget.StorageMode.GetFile, "Engine Python")
        self.engine_python_note = QLabel()
        self.engine_python_note.setWordWrap(True)
        self.engine_python_status = QLabel()
        self.engine_python_status.setWordWrap(True)
        self.engine_python_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        engine_python_box = QWidget()
        engine_python_rows = QVBoxLayout(engine_python_box)
        engine_python_rows.setContentsMargins(0, 0, 0, 0)
        engine_python_rows.addWidget(self.engine_python_field)
        engine_python_rows.addWidget(self.engine_python_status)
        files.addRow("Engine Python", engine_python_box)
        files.addRow("", self.engine_python_note)
        self.profiles_file_field = _file_widget(QgsFileWidget.StorageMode.SaveFile,
                                                "Compute profiles file", "TOML files (*.toml)")
        self.profiles_file_field.setConfirmOverwrite(False)
        self.profiles_file_note = QLabel()
        self.profiles_file_note.setWordWrap(True)
        files.addRow("Compute profiles file", self.profiles_file_field)
        files.addRow("", self.profiles_file_note)
        layout.addLayout(files)

        splitter = QSplitter()
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        self.profile_list = QListWidget()
        left_layout.addWidget(self.profile_list)
        buttons = QHBoxLayout()
        self.add_button = QPushButton("Add")
        self.duplicate_button = QPushButton("Duplicate")
        self.remove_button = QPushButton("Remove")
        for button in (self.add_button, self.duplicate_button, self.remove_button):
            buttons.addWidget(button)
        left_layout.addLayout(buttons)
        splitter.addWidget(left)

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        self.form = ProfileForm()
        form_scroll = QScrollArea()
        form_scroll.setWidgetResizable(True)
        form_scroll.setWidget(self.form)
        right_layout.addWidget(form_scroll, 1)
        self.profile_error = QLabel()
        self.profile_error.setWordWrap(True)
        self.profile_error.setStyleSheet("color: #b00020;")
        right_layout.addWidget(self.profile_error)
        test_row = QHBoxLayout()
        self.test_button = QPushButton("Test")
        self.test_button.setToolTip("Run the engine's probe on this profile, as edited")
        self.test_button.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
        self.probe_busy = QProgressBar()
        self.probe_busy.setRange(0, 0)
        self.probe_busy.setVisible(False)
        test_row.addWidget(self.test_button)
        test_row.addWidget(self.probe_busy, 1)
        test_row.addStretch()
        right_layout.addLayout(test_row)
        self.probe_output = QPlainTextEdit()
        self.probe_output.setReadOnly(True)
        self.probe_output.setMaximumHeight(130)
        right_layout.addWidget(self.probe_output)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([220, 620])
        layout.addWidget(splitter, 1)

        standard = QDialogButtonBox.StandardButton
        self.button_box = QDialogButtonBox(standard.Ok | standard.Apply | standard.Cancel)
        layout.addWidget(self.button_box)

        self.profile_list.currentRowChanged.connect(self._on_row_changed)
        self.form.changed.connect(self._on_form_changed)
        self.add_button.clicked.connect(self.add_profile)
        self.duplicate_button.clicked.connect(self.duplicate_profile)
        self.remove_button.clicked.connect(self.remove_profile)
        self.test_button.clicked.connect(self.test_profile)
        self.button_box.accepted.connect(self.accept)
        self.button_box.rejected.connect(self.reject)
        self.button_box.button(QDialogButtonBox.StandardButton.Apply).clicked.connect(self.save)

    def _update_placeholders(self, *_args) -> None:
        configured_python = self.engine_python_field.filePath()
        self.engine_python_field.lineEdit().setPlaceholderText(engine_python(""))
        self.profiles_file_field.lineEdit().setPlaceholderText(str(profiles_path("")))
        self.engine_python_note.setText(self._override_note(
            ENGINE_PYTHON_ENV, "the interpreter with torch that runs the engine; in use: "
            + engine_python(configured_python)))
        self.profiles_file_note.setText(self._override_note(
            PROFILES_ENV, f"in use: {self.profiles_file()}"))

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        if not self.engine_python_status.text():
            self.check_engine_python()

    def check_engine_python(self) -> None:
        """Asks the Engine Python in use whether it works, in the background."""
        python = engine_python(self.engine_python_field.filePath())
        self.engine_python_status.setStyleSheet("")
        self.engine_python_status.setText(f"Checking {python}…")
        self.python_checker.start(python)

    def show_engine_python_status(self, python: str, status: str) -> None:
        """Shows the answer of the Engine Python still in use (a late one is dropped)."""
        if python != engine_python(self.engine_python_field.filePath()):
            return
        colour = "#1b7a1b" if status.startswith("Works") else "#b00020"
        self.engine_python_status.setStyleSheet(f"color: {colour};")
        self.engine_python_status.setText(status)

    @staticmethod
    def _override_note(variable: str, usage: str) -> str:
        value = os.environ.get(variable, "").strip()
        state = f"it is set now ({value})" if value else "it is not set now"
        return f"{usage}. {variable} overrides this field when set; {state}."

    # Profiles file -----------------------------------------------------------------------

    def profiles_file(self) -> Path:
        """The profiles file the dialog edits (``LCFUSION_PROFILES`` wins over the field)."""
        return profiles_path(self.profiles_file_field.filePath())

    def load_profiles_file(self) -> None:
        """Lists the profiles of the file in use (``local`` only if it cannot be read)."""
        path = self.profiles_file()
        self.loaded_path = path
        try:
            profiles = load_profiles(path)
            self.file_readable = True
        except LcfusionError as exc:
            profiles = {LOCAL: ComputeProfile(LOCAL)}
            self.file_readable = False
            self.message_bar.pushMessage("Cannot read the profiles file", exc.message,
                                         Qgis.MessageLevel.Warning, 0)
        self._set_drafts([form_values(profile) for profile in profiles.values()])

    def _on_profiles_file_changed(self, *_args) -> None:
        self._update_placeholders()
        path = self.profiles_file()
        if path == self.loaded_path:
            return
        if path.is_file():
            self.load_profiles_file()
        else:  # a new file: the profiles listed now are written there
            self.loaded_path = path
            self.file_readable = True

    # Profile list ------------------------------------------------------------------------

    def _set_drafts(self, drafts: list[dict[str, Any]], select: int = 0) -> None:
        self.drafts = drafts
        self.current_row = -1
        self.profile_list.blockSignals(True)
        self.profile_list.clear()
        self.profile_list.addItems([self._item_text(values) for values in drafts])
        self.profile_list.blockSignals(False)
        row = max(0, min(select, len(drafts) - 1))
        self.profile_list.setCurrentRow(row)
        if self.current_row != row:  # the list had already made that row current
            self._on_row_changed(row)

    @staticmethod
    def _item_text(values: dict[str, Any]) -> str:
        return f"{values['name']} ({values['kind']})"

    def profile_names(self) -> list[str]:
        return [str(values["name"]) for values in self.drafts]

    def is_local(self, row: int) -> bool:
        return row == 0

    def _on_row_changed(self, row: int) -> None:
        self.current_row = row
        if row < 0:
            return
        editable = not self.is_local(row)
        self.form.set_values(self.drafts[row], editable=editable)
        self.remove_button.setEnabled(editable)
        self._show_profile_problem()

    def _on_form_changed(self) -> None:
        row = self.current_row
        if row < 0 or self.is_local(row):
            return
        self.drafts[row] = self.form.values()
        self.profile_list.item(row).setText(self._item_text(self.drafts[row]))
        self._show_profile_problem()

    def _show_profile_problem(self) -> None:
        try:
            profile_from_values(self.drafts[self.current_row])
        except LcfusionError as exc:
            self.profile_error.setText(exc.message)
        else:
            self.profile_error.clear()

    def _append(self, values: dict[str, Any]) -> None:
        self.drafts.append(values)
        self.profile_list.addItem(self._item_text(values))
        self.profile_list.setCurrentRow(len(self.drafts) - 1)

    def add_profile(self) -> None:
        name = unique_name("new", set(self.profile_names()))
        self._append(form_values(ComputeProfile(name, kind="mpi")))

    def duplicate_profile(self) -> None:
        if self.current_row < 0:
            return
        values = dict(self.drafts[self.current_row])
        values["name"] = unique_name(f"{values['name']}-copy", set(self.profile_names()))
        self._append(values)

    def remove_profile(self) -> None:
        row = self.current_row
        if row < 0 or self.is_local(row):
            return
        del self.drafts[row]
        self._set_drafts(self.drafts, select=row - 1)

    def edited_profiles(self) -> dict[str, ComputeProfile]:
        """Every listed profile; the first invalid one is selected and raises `LcfusionError`."""
        profiles: dict[str, ComputeProfile] = {}
        for row, values in enumerate(self.drafts):
            try:
                profile = profile_from_values(values)
                if profile.name in profiles:
                    raise LcfusionError(f"two profiles are called {profile.name!r}; rename one",
                                        "COMPUTE")
            except LcfusionError as exc:
                self.profile_list.setCurrentRow(row)
                self.profile_error.setText(exc.message)
                raise
            profiles[profile.name] = profile
        return profiles

    # Saving ------------------------------------------------------------------------------

    def save(self) -> bool:
        """Stores the settings and writes the profiles file; False (and a message) if a
        profile is invalid or the file cannot be written."""
        try:
            profiles = self.edited_profiles()
        except LcfusionError as exc:
            self.message_bar.pushMessage("Not saved", exc.message, Qgis.MessageLevel.Warning, 0)
            return False
        path = self.profiles_file()
        if not self.file_readable:
            self.message_bar.pushMessage(
                "Not saved", f"{path} could not be read; fix it, move it away or choose "
                "another profiles file", Qgis.MessageLevel.Warning, 0)
            return False
        try:
            if len(profiles) > 1 or path.exists():  # no file that would only say "local"
                save_profiles(path, profiles)
        except OSError as exc:
            self.message_bar.pushMessage("Not saved", f"cannot write {path}: {exc}",
                                         Qgis.MessageLevel.Critical, 0)
            return False
        settings = QgsSettings()
        for key, widget in ((ENGINE_PYTHON_KEY, self.engine_python_field),
                            (PROFILES_KEY, self.profiles_file_field)):
            value = widget.filePath().strip()
            if value:
                settings.setValue(key, value)
            else:
                settings.remove(key)
        self._update_placeholders()
        written = f"compute profiles written to {path}" if path.exists() else \
            "no compute profiles besides local, so no profiles file"
        self.message_bar.pushMessage("Saved", written, Qgis.MessageLevel.Success, 5)
        return True

    def accept(self) -> None:
        if self.save():
            super().accept()

    # Test --------------------------------------------------------------------------------

    def test_profile(self) -> None:
        """Probes the selected profile, as edited, in a worker thread."""
        if self.probe_runner.running or self.current_row < 0:
            return
        try:
            profile = profile_from_values(self.drafts[self.current_row])
        except LcfusionError as exc:
            self.profile_error.setText(exc.message)
            return
        self.probed_name = profile.name
        self.test_button.setEnabled(False)
        self.probe_busy.setVisible(True)
        self.probe_output.setPlainText(f"Testing {profile.describe()}…")
        self.probe_runner.start(profile, engine_python(self.engine_python_field.filePath()))

    def show_probe_result(self, result: ProbeResult) -> None:
        self.probe_runner.running = False
        self.test_button.setEnabled(True)
        self.probe_busy.setVisible(False)
        self.probe_output.setPlainText(result_text(self.probed_name, result))
