"""The QGIS plugin object: registers the Processing provider, the Settings and Create Engine
Environment menu entries, and checks the engine environment when QGIS starts."""

from __future__ import annotations

from qgis.core import Qgis, QgsApplication, QgsTask
from qgis.gui import QgsMessageBarItem
from qgis.PyQt import sip
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QAction, QMessageBox, QPushButton

from . import environment
from .algorithms.base import icon
from .environment import (
    LIGHT_DESCRIPTION,
    CreateEnvironmentTask,
    engine_environment_problem,
    environment_stamp,
    light_requirements_file,
    offers_creation,
    python_version,
    requirements_file,
    reusable,
    startup_problem,
    torch_build,
)
from .provider import LcfusionProvider
from .settings import engine_python, engine_venv_folder, qgis_python, venv_executable

MENU = "Land Cover Fusion"


def choose_environment(parent, text: str) -> str | None:
    """Which engine environment to create, asked in a message box: "full", "light", or None
    when the user cancels."""
    box = QMessageBox(QMessageBox.Icon.Question, MENU, text, QMessageBox.StandardButton.Cancel,
                      parent)
    full = box.addButton("Full (train and classify)", QMessageBox.ButtonRole.YesRole)
    light = box.addButton("Light (classify with ONNX models)", QMessageBox.ButtonRole.AcceptRole)
    box.setDefaultButton(full)
    box.exec()
    clicked = box.clickedButton()
    return "full" if clicked is full else "light" if clicked is light else None
#: The message bar's one line when the start-up check finds a problem (details on a button).
UNFIT_LINE = "The engine environment is not ready."


class LcfusionPlugin:
    """Registered in ``initProcessing`` so that headless ``qgis_process`` sees the provider;
    the menu entries are made in ``initGui``, which only a QGIS window calls."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider: LcfusionProvider | None = None
        self.settings_action: QAction | None = None
        self.environment_action: QAction | None = None
        self.tasks: list[QgsTask] = []
        self.creation: CreateEnvironmentTask | None = None
        self.warning: QgsMessageBarItem | None = None
        self.details: QMessageBox | None = None

    def initProcessing(self) -> None:  # noqa: N802 - QGIS hook
        if self.provider is None:
            self.provider = LcfusionProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 - QGIS hook
        self.initProcessing()
        if self.iface is None or self.settings_action is not None:
            return
        window = self.iface.mainWindow()
        self.settings_action = QAction(icon("lcfusion.svg"), "Settings…", window)
        self.settings_action.setObjectName("lcfusionSettings")
        self.settings_action.triggered.connect(self.show_settings)
        self.environment_action = QAction("Create Engine Environment…", window)
        self.environment_action.setObjectName("lcfusionCreateEnvironment")
        self.environment_action.triggered.connect(lambda: self.create_environment())
        for action in (self.settings_action, self.environment_action):
            self.iface.addPluginToMenu(MENU, action)
        self._start(QgsTask.fromFunction("Checking the lcfusion engine environment",
                                         lambda _task: startup_problem(),
                                         on_finished=self._environment_checked))

    def _start(self, task: QgsTask) -> None:
        self.tasks = [t for t in self.tasks if not sip.isdeleted(t)]
        self.tasks.append(task)
        QgsApplication.taskManager().addTask(task)

    def _environment_checked(self, exception, problem: str | None = None) -> None:
        """Shows one line when the start-up check found a problem, with the full message
        behind Details… and, where it helps, Create Engine Environment…."""
        if exception is not None or not problem or self.environment_action is None:
            return
        bar = self.iface.messageBar()
        item = bar.createMessage(MENU, UNFIT_LINE)
        details = QPushButton("Details…", item)
        details.clicked.connect(lambda: self.show_details(problem))
        item.layout().addWidget(details)
        if offers_creation(problem):
            button = QPushButton("Create Engine Environment…", item)
            button.clicked.connect(self.environment_action.trigger)
            item.layout().addWidget(button)
        bar.pushWidget(item, Qgis.MessageLevel.Warning)
        self.warning = item

    def show_details(self, problem: str) -> QMessageBox:
        """The start-up check's full message, in a window of its own."""
        self.details = QMessageBox(QMessageBox.Icon.Warning, MENU, problem,
                                   QMessageBox.StandardButton.Close, self.iface.mainWindow())
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.open()
        return self.details

    def create_environment(self) -> CreateEnvironmentTask | None:
        """Creates the engine environment in the QGIS profile folder (PyTorch's CUDA build
        with an NVIDIA GPU, else its CPU build), in the background, after the user agreed;
        one creation at a time. One that matches the requirements already is reused."""
        bar = self.iface.messageBar()
        if self.creation is not None:
            bar.pushMessage(MENU, "The engine environment is already being created "
                            f"({self.creation.progress():.0f} %).", Qgis.MessageLevel.Info, 5)
            return None
        folder = engine_venv_folder()
        build = torch_build()
        stamp = environment_stamp(requirements_file(), python_version(qgis_python()), build)
        if reusable(folder, stamp):
            self._environment_works()
            bar.pushMessage(MENU, f"The engine environment {folder} is up to date; it is "
                            "used as it is.", Qgis.MessageLevel.Success, 10)
            return None
        kind = choose_environment(
            self.iface.mainWindow(),
            f"Create the engine's Python environment in {folder}?\n\nFull: it installs "
            f"{build.describe()} The other packages of {requirements_file()} come from "
            f"PyPI.\n\nLight: {LIGHT_DESCRIPTION}\n\nThe environment shares the packages "
            "of QGIS's Python and outlives plugin updates. It runs in the background: the task "
            "manager shows its progress and the lcfusion tab of the log panel pip's output.")
        if kind is None:
            return None
        task = (CreateEnvironmentTask(folder, requirements_file(), qgis_python(), build)
                if kind == "full" else
                CreateEnvironmentTask(folder, light_requirements_file(), qgis_python()))
        task.taskCompleted.connect(lambda: self._creation_ended(task, True))
        task.taskTerminated.connect(lambda: self._creation_ended(task, False))
        self.creation = environment.current_creation = task
        self.environment_action.setEnabled(False)
        self._start(task)
        return task

    def _environment_works(self) -> None:
        """Takes back the start-up warning, which no longer holds."""
        if self.warning is not None and not sip.isdeleted(self.warning):
            self.iface.messageBar().popWidget(self.warning)
        self.warning = None

    def _creation_ended(self, task: CreateEnvironmentTask, succeeded: bool) -> None:
        self.creation = environment.current_creation = None
        if self.environment_action is not None:
            self.environment_action.setEnabled(True)
        if not succeeded:
            self.iface.messageBar().pushMessage(
                MENU, f"Creating the engine environment failed: {task.error or 'cancelled'}. "
                "The lcfusion tab of the log panel has the details.", Qgis.MessageLevel.Critical, 0)
            return
        self._environment_works()
        python = str(venv_executable(task.folder))
        note = ("" if engine_python() == python else f" The engine still runs with "
                f"{engine_python()} (set in the settings or LCFUSION_PYTHON); clear that to "
                "use the new environment.")
        self.iface.messageBar().pushMessage(
            MENU, f"The engine environment is ready: {python}.{note}", Qgis.MessageLevel.Success, 0)

    def show_settings(self) -> None:
        """Opens the settings dialog (modal); a start-up warning that the Engine Python set
        there answers goes."""
        from .settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.iface.mainWindow())
        dialog.exec()
        dialog.deleteLater()
        if self.warning is not None and engine_environment_problem() is None:
            self._environment_works()

    def unload(self) -> None:
        if self.creation is not None:
            self.creation.cancel()
            self.creation = environment.current_creation = None
        for action in (self.settings_action, self.environment_action):
            if action is not None:
                self.iface.removePluginMenu(MENU, action)
                action.deleteLater()
        self.settings_action = self.environment_action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
