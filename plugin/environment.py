"""The engine's Python environment: is it fit to run the engine, and how to create it.

The check reads package versions with ``importlib.metadata`` in the engine interpreter, so
it costs a Python start-up, not a torch import. The environment is created as the plugin
folder's ``.venv`` (the third place `settings.engine_python` looks), on top of the Python
QGIS runs on (``--system-site-packages``: numpy, GDAL and rasterio come from there).
"""

from __future__ import annotations

import json
import queue
import re
import shlex
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from qgis.core import Qgis, QgsMessageLog, QgsTask

from .engine_process import POLL_SECONDS, pump, terminate
from .settings import ENGINE_PYTHON_ENV, engine_python, plugin_root, venv_executable

PROBE_TIMEOUT_SECONDS = 15
#: Packages the engine imports that come from the system Python, not requirements.txt.
SYSTEM_PACKAGES = ("numpy", "rasterio")
LOG_TAG = "lcfusion"
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
CREATE_ACTION = "Plugins > Land Cover Fusion > Create Engine Environment…"
PROBE = """
import importlib.metadata as metadata, json, sys
names = json.loads(sys.argv[1])
found = {}
for name in names:
    try:
        found[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        found[name] = None
print(json.dumps({"python": sys.version.split()[0], "packages": found}))
"""


def requirements_file() -> Path:
    return plugin_root() / "requirements.txt"


def pinned_versions(requirements: Path | None = None) -> dict[str, str]:
    """name -> version of the ``name==version`` lines of requirements.txt."""
    pins = {}
    for line in (requirements or requirements_file()).read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+).*", line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def release(version: str) -> tuple[int, ...]:
    """The leading numbers of a version: ``2.13.0+cpu`` -> (2, 13, 0)."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


@dataclass
class EngineEnvironment:
    """What the engine interpreter has: package versions (None: missing), or why it could
    not be asked."""

    python: str
    packages: dict[str, str | None] = field(default_factory=dict)
    failure: str | None = None

    def problems(self, pins: dict[str, str]) -> list[str]:
        """What is missing or of the wrong version. torch must match the pinned major and
        minor version (a CUDA build such as 2.13.0+cu124 is fine); the other pinned packages
        only have to be there."""
        if self.failure:
            return [self.failure]
        found = []
        for name in (*pins, *SYSTEM_PACKAGES):
            version = self.packages.get(name)
            wanted = pins.get(name)
            if version is None:
                found.append(f"{name} is missing" + (f" (needs {wanted})" if wanted else ""))
            elif name == "torch" and release(version)[:2] != release(wanted)[:2]:
                found.append(f"torch is {version} but lcfusion needs {wanted}")
        return found


def probe_environment(python: str, names: list[str]) -> EngineEnvironment:
    """Ask `python` for the versions of `names` (an argument list, never a shell)."""
    try:
        result = subprocess.run([python, "-c", PROBE, json.dumps(names)], capture_output=True,
                                text=True, errors="replace", timeout=PROBE_TIMEOUT_SECONDS)
    except FileNotFoundError:
        return EngineEnvironment(python, failure=f"{python} does not exist")
    except PermissionError:
        return EngineEnvironment(python, failure=f"{python} is not executable")
    except OSError as exc:
        return EngineEnvironment(python, failure=f"{python} cannot be started: {exc.strerror}")
    except subprocess.TimeoutExpired:
        return EngineEnvironment(python, failure=f"{python} gave no answer within "
                                                 f"{PROBE_TIMEOUT_SECONDS} s")
    try:
        report = json.loads(result.stdout.strip().splitlines()[-1])
        return EngineEnvironment(python, dict(report["packages"]))
    except (IndexError, KeyError, TypeError, ValueError):
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return EngineEnvironment(python, failure=f"{python} is not a working Python ({tail})")


_fit: set[tuple[str, tuple[str, ...]]] = set()


def engine_environment_problem(python: str | None = None, needs: tuple[str, ...] | None = None
                               ) -> str | None:
    """A message saying what the engine interpreter lacks and how to fix it, or None when it
    is fit. `needs`: the pinned packages the algorithm's engine command imports (all of them
    by default). A fit interpreter is remembered for the session; an unfit one is asked again,
    so that a fix is seen at once."""
    python = python or engine_python()
    pins = pinned_versions()
    if needs is not None:
        pins = {name: version for name, version in pins.items() if name in needs}
    key = (python, tuple(pins))
    if key in _fit:
        return None
    found = probe_environment(python, [*pins, *SYSTEM_PACKAGES])
    problems = found.problems(pins)
    if not problems:
        _fit.add(key)
        return None
    wanted = ", ".join(f"{name}=={version}" for name, version in pins.items())
    point = (f"point the Engine Python of the plugin settings or the {ENGINE_PYTHON_ENV} "
             f"environment variable at a Python that has {wanted}, numpy and rasterio")
    if found.failure is None and any(found.packages.get(n) is None for n in SYSTEM_PACKAGES):
        return (f"The lcfusion engine cannot run with the Python {python}: "
                f"{'; '.join(problems)}. numpy and rasterio come from the Python QGIS runs on "
                "(on Debian or Ubuntu: apt install python3-rasterio); install them there, or "
                f"{point}.")
    setup = (f" (or run 'make setup' in {plugin_root()})"
             if (plugin_root() / "Makefile").exists() else "")
    return (f"The lcfusion engine cannot run with the Python {python}: {'; '.join(problems)}. "
            f"To fix it, create the engine environment with {CREATE_ACTION}{setup}, or "
            f"{point}.")


def base_python() -> str:
    """The Python QGIS runs on, whose packages (numpy, GDAL, rasterio) the environment
    shares."""
    if sys.platform == "win32":
        return str(Path(sys.base_prefix) / "python.exe")
    return str(Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}."
               f"{sys.version_info[1]}")


def creation_steps(folder: Path, requirements: Path, python: str,
                   extra_index: str | None = None) -> list[list[str]]:
    """The commands that create ``folder`` as a virtual environment with `requirements`
    (`extra_index`: a package index pip also looks in, e.g. PyTorch's CPU builds)."""
    install = [str(venv_executable(folder)), "-m", "pip", "install",
               "--disable-pip-version-check", "--requirement", str(requirements)]
    if extra_index:
        install += ["--extra-index-url", extra_index]
    return [[python, "-m", "venv", "--system-site-packages", str(folder)], install]


class CreateEnvironmentTask(QgsTask):
    """Runs `creation_steps` in the background. `lines` keeps their output (also sent to the
    message log) and `error` says why it failed; cancel stops the running step's process
    group at once; a folder this task created is removed again when it fails or is
    cancelled."""

    def __init__(self, folder: Path, requirements: Path, python: str,
                 extra_index: str | None = None) -> None:
        super().__init__("Creating the lcfusion engine environment", QgsTask.CanCancel)
        self.folder = folder
        self.steps = creation_steps(folder, requirements, python, extra_index)
        self.lines: list[str] = []
        self.error: str | None = None

    def run(self) -> bool:
        existed = self.folder.exists()
        for number, args in enumerate(self.steps):
            self.error = "cancelled" if self.isCanceled() else self._run_step(args)
            if self.error:
                if not existed:
                    shutil.rmtree(self.folder, ignore_errors=True)
                return False
            self.setProgress(100.0 * (number + 1) / len(self.steps))
        return True

    def _run_step(self, args: list[str]) -> str | None:
        self._log("$ " + shlex.join(args))
        try:
            process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True, errors="replace",
                                       start_new_session=sys.platform != "win32")
        except OSError as exc:
            return f"cannot run {args[0]}: {exc.strerror}"
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=pump, args=(process.stdout, lines, "out"), daemon=True).start()
        while True:
            if self.isCanceled():
                terminate(process)
            try:
                _, line = lines.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            if line is None:
                break
            self._log(line)
        returncode = process.wait()
        process.stdout.close()
        if self.isCanceled():
            return "cancelled"
        if returncode:
            return f"{shlex.join(args[:4])} failed (exit status {returncode}): " + \
                (self.lines[-1] if self.lines else "no output")
        return None

    def _log(self, line: str) -> None:
        self.lines.append(line)
        QgsMessageLog.logMessage(line, LOG_TAG, Qgis.Info)
