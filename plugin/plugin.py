"""The QGIS plugin object: registers the Processing provider, the Settings and Create Engine
Environment menu entries, and checks the engine environment when QGIS starts."""

from __future__ import annotations

from qgis.core import Qgis, QgsApplication, QgsTask
from qgis.PyQt import sip
from qgis.PyQt.QtWidgets import QAction, QMessageBox, QPushButton

from .algorithms.base import icon
from .environment import (
    CPU_TORCH_INDEX,
    CreateEnvironmentTask,
    base_python,
    engine_environment_problem,
    requirements_file,
)
from .provider import LcfusionProvider
from .settings import engine_python, plugin_root, venv_python

MENU = "Land Cover Fusion"


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
                                         lambda _task: engine_environment_problem(),
                                         on_finished=self._environment_checked))

    def _start(self, task: QgsTask) -> None:
        self.tasks = [t for t in self.tasks if not sip.isdeleted(t)]
        self.tasks.append(task)
        QgsApplication.taskManager().addTask(task)

    def _environment_checked(self, exception, problem: str | None = None) -> None:
        """Offers to create the environment when the start-up check found a problem."""
        if exception is not None or not problem or self.environment_action is None:
            return
        bar = self.iface.messageBar()
        item = bar.createMessage(MENU, problem)
        button = QPushButton("Create Engine Environment…", item)
        button.clicked.connect(self.environment_action.trigger)
        item.layout().addWidget(button)
        bar.pushWidget(item, Qgis.Warning)

    def create_environment(self) -> CreateEnvironmentTask | None:
        """Creates the plugin folder's ``.venv`` with the engine's packages (PyTorch's CPU
        build), in the background, after the user agreed; one creation at a time."""
        if self.creation is not None:
            self.iface.messageBar().pushMessage(
                MENU, "The engine environment is already being created.", Qgis.Info, 5)
            return None
        folder = venv_python(plugin_root()).parent.parent
        if QMessageBox.question(
                self.iface.mainWindow(), MENU,
                f"Create the engine's Python environment in {folder}?\n\nIt installs the "
                f"packages of {requirements_file()}, PyTorch's CPU build among them (about "
                "200 MB to download), into a virtual environment that shares the packages of "
                "QGIS's Python. It runs in the background; the lcfusion tab of the log panel "
                "shows its progress.") != QMessageBox.Yes:
            return None
        task = CreateEnvironmentTask(folder, requirements_file(), base_python(),
                                     CPU_TORCH_INDEX)
        task.taskCompleted.connect(lambda: self._creation_ended(task, True))
        task.taskTerminated.connect(lambda: self._creation_ended(task, False))
        self.creation = task
        self.environment_action.setEnabled(False)
        self._start(task)
        return task

    def _creation_ended(self, task: CreateEnvironmentTask, succeeded: bool) -> None:
        self.creation = None
        if self.environment_action is not None:
            self.environment_action.setEnabled(True)
        if not succeeded:
            self.iface.messageBar().pushMessage(
                MENU, f"Creating the engine environment failed: {task.error or 'cancelled'}. "
                "The lcfusion tab of the log panel has the details.", Qgis.Critical, 0)
            return
        python = str(venv_python(plugin_root()))
        note = ("" if engine_python() == python else f" The engine still runs with "
                f"{engine_python()} (set in the settings or LCFUSION_PYTHON); clear that to "
                "use the new environment.")
        self.iface.messageBar().pushMessage(
            MENU, f"The engine environment is ready: {python}.{note}", Qgis.Success, 0)

    def show_settings(self) -> None:
        """Opens the settings dialog (modal)."""
        from .settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.iface.mainWindow())
        dialog.exec_()
        dialog.deleteLater()

    def unload(self) -> None:
        if self.creation is not None:
            self.creation.cancel()
        for action in (self.settings_action, self.environment_action):
            if action is not None:
                self.iface.removePluginMenu(MENU, action)
                action.deleteLater()
        self.settings_action = self.environment_action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
