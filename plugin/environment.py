"""The engine's Python environment: is it fit to run the engine, and how to create it.

The check reads package versions with ``importlib.metadata`` in the engine interpreter, so
it costs a Python start-up, not a torch import. The environment is created in the QGIS
profile folder (`settings.engine_venv_folder`, which plugin updates leave alone), on top of
the Python QGIS runs on (``--system-site-packages``: numpy, GDAL and rasterio come from
there), with PyTorch's CUDA build when an NVIDIA GPU is present, else its CPU build, each
from PyTorch's own index only. A stamp in it records what it was made from, so that a later
plugin version reuses it while its requirements and Python match.
"""

from __future__ import annotations

import hashlib
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
#: Importing torch (to say which build and GPUs it has) takes longer than reading versions.
TORCH_PROBE_TIMEOUT_SECONDS = 90
#: Packages the engine imports that come from the system Python, not requirements.txt.
SYSTEM_PACKAGES = ("numpy", "rasterio")
#: Packages that stand in for a pinned one, imported under its name: onnxruntime-gpu (with the
#: CUDA provider, installed by hand in place of onnxruntime: README) for onnxruntime.
STAND_INS = {"onnxruntime": ("onnxruntime-gpu",)}
LOG_TAG = "lcfusion"
TORCH_INDEX = "https://download.pytorch.org/whl/{build}"
CPU_TORCH_INDEX = TORCH_INDEX.format(build="cpu")
#: PyTorch's CUDA 12.8 builds: they run on NVIDIA drivers 570 and newer and on every GPU
#: generation torch 2.13 supports (Blackwell included).
CUDA_BUILD = "cu128"
CUDA_DRIVER = 570
NVIDIA_DRIVER_FILE = Path("/proc/driver/nvidia/version")
STAMP_NAME = "lcfusion-environment.json"
#: What the requirements other than torch download (scikit-learn, sympy, networkx...), MB.
OTHER_DOWNLOAD_MB = 60
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
TORCH_PROBE = """
import json, torch
count = torch.cuda.device_count() if torch.cuda.is_available() else 0
print(json.dumps({"torch": torch.__version__,
                  "gpus": [torch.cuda.get_device_name(i) for i in range(count)]}))
"""


def requirements_file() -> Path:
    return plugin_root() / "requirements.txt"


def light_requirements_file() -> Path:
    """The light environment's packages: onnxruntime (numpy and rasterio come from QGIS's
    Python, as for the full one)."""
    return plugin_root() / "requirements-light.txt"


#: What the light environment costs: onnxruntime's wheel is 27.8 MB, protobuf's and
#: flatbuffers' 0.4 MB; installed, onnxruntime takes 78 MB and the environment's own pip and
#: setuptools 25 MB: 106 MB with du (PyTorch's CPU build alone takes 750 MB).
#: tests/plugin/test_light_environment.py measures the disk size of one it creates.
LIGHT_DOWNLOAD_MB = 28
LIGHT_DISK_MB = 105
LIGHT_DESCRIPTION = (
    f"onnxruntime only, about {LIGHT_DOWNLOAD_MB} MB to download and {LIGHT_DISK_MB} MB on "
    "disk: it classifies with models exported to ONNX (Export a model to ONNX) but cannot "
    "train; create the full environment later to train.")


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
            version = self.version(name)
            wanted = pins.get(name)
            if version is None:
                found.append(f"{name} is missing" + (f" (needs {wanted})" if wanted else ""))
            elif name == "torch" and release(version)[:2] != release(wanted)[:2]:
                found.append(f"torch is {version} but lcfusion needs {wanted}")
        return found

    def version(self, name: str) -> str | None:
        """The version of `name`, or of a package standing in for it (`STAND_INS`)."""
        return next((self.packages[each] for each in (name, *STAND_INS.get(name, ()))
                     if self.packages.get(each)), None)


def probe_environment(python: str, names: list[str]) -> EngineEnvironment:
    """Ask `python` for the versions of `names` and of their stand-ins (an argument list,
    never a shell)."""
    names = [*names, *(each for name in names for each in STAND_INS.get(name, ()))]
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
#: The creation running now (started by the plugin's action), if any.
current_creation: CreateEnvironmentTask | None = None


def being_created_problem(python: str, unfit: bool) -> str | None:
    """The message for an algorithm started while the engine environment is being created:
    when it would run with that environment, or with an unfit interpreter meanwhile."""
    creation = current_creation
    if creation is None or not (unfit or python == str(venv_executable(creation.folder))):
        return None
    return (f"The engine environment is being created ({creation.progress():.0f} %); wait "
            "for it to finish (the task manager in the status bar shows its progress), then "
            "run the algorithm again.")


def engine_environment_problem(python: str | None = None, needs: tuple[str, ...] | None = None
                               ) -> str | None:
    """A message saying what the engine interpreter lacks and how to fix it, or None when it
    is fit. `needs`: the pinned packages the algorithm's engine command imports (all of them
    by default). A fit interpreter is remembered for the session; an unfit one is asked again,
    so that a fix is seen at once."""
    python = python or engine_python()
    creating = being_created_problem(python, unfit=False)
    if creating:
        return creating
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
    creating = being_created_problem(python, unfit=True)
    if creating:
        return creating
    wanted = ", ".join(f"{name}=={version}" for name, version in pins.items())
    point = (f"point the Engine Python of the plugin settings or the {ENGINE_PYTHON_ENV} "
             f"environment variable at a Python that has {wanted}, numpy and rasterio")
    if found.failure is None and any(found.packages.get(n) is None for n in SYSTEM_PACKAGES):
        debian = (" (on Debian or Ubuntu: apt install python3-rasterio)"
                  if Path(python).resolve().parent == Path("/usr/bin") else "")
        return (f"The lcfusion engine cannot run with the Python {python}: "
                f"{'; '.join(problems)}. numpy and rasterio come from the Python QGIS runs on"
                f"{debian}; install them there, or {point}.")
    setup = (f" (or run 'make setup' in {plugin_root()})"
             if (plugin_root() / "Makefile").exists() else "")
    return (f"The lcfusion engine cannot run with the Python {python}: {'; '.join(problems)}. "
            f"To fix it, create the engine environment with {CREATE_ACTION}{setup}, or "
            f"{point}.")


def is_light(python: str) -> bool:
    """Whether `python` is a light engine environment: its stamp names the light
    requirements."""
    stamp = read_stamp(Path(python).parent.parent) or {}
    light = light_requirements_file()
    return light.is_file() and stamp.get("requirements_sha256") == hashlib.sha256(
        light.read_bytes()).hexdigest()


def startup_problem(python: str | None = None) -> str | None:
    """What QGIS's start-up check reports: `engine_environment_problem`, of onnxruntime alone
    for a light environment (made to classify with ONNX models; training tells it to create
    the full one)."""
    python = python or engine_python()
    return engine_environment_problem(python, needs=("onnxruntime",) if is_light(python)
                                      else None)


def engine_python_status(python: str) -> str:
    """Whether `python` runs the engine, in one line: its torch and the GPUs torch sees
    (this imports torch, which takes seconds), or what is wrong."""
    pins = pinned_versions()
    problems = probe_environment(python, [*pins, *SYSTEM_PACKAGES]).problems(pins)
    if problems:
        return f"Does not work: {'; '.join(problems)}."
    try:
        result = subprocess.run([python, "-c", TORCH_PROBE], capture_output=True, text=True,
                                errors="replace", timeout=TORCH_PROBE_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return f"Does not work: importing torch took over {TORCH_PROBE_TIMEOUT_SECONDS} s."
    except OSError as exc:
        return f"Does not work: {python} cannot be started ({exc.strerror})."
    try:
        report = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return f"Does not work: torch cannot be imported ({tail})."
    gpus = report["gpus"]
    where = (f"{len(gpus)} CUDA GPU{'s' if len(gpus) > 1 else ''} ({', '.join(gpus)})"
             if gpus else "CPU only (no CUDA GPU)")
    return f"Works: torch {report['torch']}, {where}."


def offers_creation(problem: str | None) -> bool:
    """Whether creating the engine environment fixes `problem` (not when QGIS's own Python
    lacks numpy or rasterio, which the environment shares)."""
    return bool(problem) and CREATE_ACTION in problem


# Which PyTorch -------------------------------------------------------------------------

@dataclass(frozen=True)
class TorchBuild:
    """A PyTorch build to install: its local version label (``cpu``, ``cu128``), the index
    it comes from, the GPUs it is for, and what it costs."""

    label: str
    gpus: tuple[str, ...] = ()

    @property
    def index(self) -> str:
        return TORCH_INDEX.format(build=self.label)

    @property
    def cuda(self) -> bool:
        return self.label != "cpu"

    @property
    def download_mb(self) -> int:
        """What creating the environment downloads: the CPU wheel is 192 MB, the CUDA 12.8
        wheel about 900 MB plus about 2.3 GB of NVIDIA libraries; scikit-learn, sympy,
        networkx and the rest about 60 MB."""
        return 3300 if self.cuda else 190 + OTHER_DOWNLOAD_MB

    @property
    def disk_mb(self) -> int:
        return 5000 if self.cuda else 1000

    def describe(self) -> str:
        """One sentence for the question before creating the environment."""
        size = (f"about {self.download_mb / 1000:.1f} GB to download, about "
                f"{self.disk_mb / 1000:.0f} GB on disk" if self.cuda else
                f"about {self.download_mb} MB to download (PyTorch's CPU wheel alone is 192 "
                f"MB), about {self.disk_mb / 1000:.0f} GB on disk")
        if self.cuda:
            return (f"PyTorch's CUDA build ({self.label}, for NVIDIA drivers {CUDA_DRIVER} and "
                    f"newer), since this computer has {', '.join(self.gpus)}: {size}.")
        return f"PyTorch's CPU build, since this computer has no NVIDIA GPU: {size}."


def nvidia_gpus() -> tuple[str, ...]:
    """The NVIDIA GPUs ``nvidia-smi`` lists, or one unnamed GPU when only the NVIDIA driver
    is loaded; none without either."""
    program = shutil.which("nvidia-smi")
    if program:
        try:
            result = subprocess.run([program, "--query-gpu=name", "--format=csv,noheader"],
                                    capture_output=True, text=True, errors="replace",
                                    timeout=PROBE_TIMEOUT_SECONDS)
            names = tuple(line.strip() for line in result.stdout.splitlines() if line.strip())
            if result.returncode == 0 and names:
                return names
        except (OSError, subprocess.TimeoutExpired):
            pass
    return ("an NVIDIA GPU",) if NVIDIA_DRIVER_FILE.exists() else ()


def torch_build() -> TorchBuild:
    """The CUDA build with an NVIDIA GPU present, else the CPU build."""
    gpus = nvidia_gpus()
    return TorchBuild(CUDA_BUILD, gpus) if gpus else TorchBuild("cpu")


def wrong_build(version: str, build: TorchBuild) -> str | None:
    """Why an installed torch `version` is not `build` (pip took it from another index, e.g.
    PyPI's CUDA-bundled torch in place of the CPU build), or None."""
    if version.partition("+")[2] == build.label:
        return None
    return (f"pip installed torch {version}, not PyTorch's {build.label} build from "
            f"{build.index}: an index or find-links of your pip configuration provided it. "
            "Remove that, or install torch yourself and set the Engine Python")


# The environment's stamp ---------------------------------------------------------------

def environment_stamp(requirements: Path, python_version: str, build: TorchBuild | None
                      ) -> dict[str, str]:
    """What an environment was made from: the requirements (their hash), the Python
    version (major.minor) and the torch build."""
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    return {"requirements_sha256": digest, "python": python_version,
            "torch_build": build.label if build else ""}


def read_stamp(folder: Path) -> dict[str, str] | None:
    try:
        stamp = json.loads((folder / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def python_version(python: str) -> str:
    """The major.minor version of the interpreter `python` ("" when it cannot say)."""
    try:
        result = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info"
                                 "[:2])"], capture_output=True, text=True,
                                timeout=PROBE_TIMEOUT_SECONDS)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def reusable(folder: Path, stamp: dict[str, str]) -> bool:
    """Whether the environment in `folder` was made from the same requirements, Python and
    torch build, and still answers: a plugin update then reuses it as it is."""
    python = venv_executable(folder)
    return read_stamp(folder) == stamp and python.exists() and \
        engine_environment_problem(str(python)) is None


# Creating it -----------------------------------------------------------------------------

def pip_install(folder: Path) -> list[str]:
    """pip in `folder`'s environment, one line per step, no progress bar (the task reads
    the lines as progress)."""
    return [str(venv_executable(folder)), "-m", "pip", "install",
            "--disable-pip-version-check", "--progress-bar", "off"]


def creation_steps(folder: Path, requirements: Path, python: str,
                   build: TorchBuild | None = None, clear: bool = False) -> list[list[str]]:
    """The commands that create ``folder`` as a virtual environment with `requirements`:
    the venv (`clear`: emptied first, when it was made for another Python), then torch of
    `build` from PyTorch's index alone (``--index-url``: never PyPI's torch in its place),
    then the requirements (torch already satisfied)."""
    venv = [python, "-m", "venv", "--system-site-packages", *(["--clear"] if clear else []),
            str(folder)]
    steps = [venv]
    torch = pinned_versions(requirements).get("torch") if requirements.is_file() else None
    if build and torch:
        steps.append([*pip_install(folder), "--index-url", build.index, f"torch=={torch}"])
    return [*steps, [*pip_install(folder), "--requirement", str(requirements)]]


SIZE_UNITS = {"kB": 1e-3, "MB": 1.0, "GB": 1e3}


@dataclass
class PipProgress:
    """Reads pip's lines as progress through one install: each download is counted when
    the next line shows it finished, against the `expected_mb` the step downloads."""

    expected_mb: float
    downloaded_mb: float = 0.0
    pending_mb: float = 0.0
    fraction: float = 0.0

    def read(self, line: str) -> None:
        text = line.strip()
        self.downloaded_mb += self.pending_mb
        self.pending_mb = 0.0
        share = 0.0
        download = re.match(r"Downloading \S+ \(([\d.]+) (kB|MB|GB)\)", text)
        if download:
            self.pending_mb = float(download.group(1)) * SIZE_UNITS[download.group(2)]
        elif text.startswith("Installing collected packages"):
            share = 0.9
        elif text.startswith("Successfully installed"):
            share = 1.0
        downloaded = 0.85 * min(1.0, self.downloaded_mb / max(self.expected_mb, 1.0))
        self.fraction = max(self.fraction, share, downloaded)


class CreateEnvironmentTask(QgsTask):
    """Runs `creation_steps` in the background, its progress read from pip's lines.
    `lines` keeps their output (also sent to the message log) and `error` says why it
    failed; cancel stops the running step's process group at once; a folder this task
    created is removed again when it fails or is cancelled. On success the folder gets its
    stamp (`environment_stamp`)."""

    def __init__(self, folder: Path, requirements: Path, python: str,
                 build: TorchBuild | None = None) -> None:
        super().__init__("Creating the lcfusion engine environment", QgsTask.Flag.CanCancel)
        self.folder = folder
        self.requirements = requirements
        self.python = python
        self.build = build
        self.steps = creation_steps(folder, requirements, python, build)
        self.lines: list[str] = []
        self.error: str | None = None
        self.plan = self._plan()
        self._done = 0.0
        self._step = 0
        self._pip: PipProgress | None = None

    def _plan(self) -> list[tuple[float, float]]:
        """Each step's share of the progress and what it downloads (MB): the venv
        nothing, torch most of it."""
        torch_mb = self.build.download_mb - OTHER_DOWNLOAD_MB if len(self.steps) == 3 else 0
        total = float(torch_mb + OTHER_DOWNLOAD_MB)
        plan = [(0.05, 0.0)] + ([(0.95 * torch_mb / total, float(torch_mb))] if torch_mb else [])
        return [*plan, (0.95 * OTHER_DOWNLOAD_MB / total, float(OTHER_DOWNLOAD_MB))]

    def run(self) -> bool:
        existed = self.folder.exists()
        made_for = (read_stamp(self.folder) or {}).get("python")
        if made_for and made_for != python_version(self.python):  # QGIS's Python changed
            self.steps[0] = creation_steps(self.folder, self.requirements, self.python,
                                           clear=True)[0]
        for number, args in enumerate(self.steps):
            self._step = number
            self._pip = PipProgress(self.plan[number][1]) if number else None
            self.error = "cancelled" if self.isCanceled() else self._run_step(args)
            if not self.error and "--index-url" in args:
                self.error = self._check_torch()
            if self.error:
                if not existed:
                    shutil.rmtree(self.folder, ignore_errors=True)
                return False
            self._done += self.plan[number][0]
            self.setProgress(100.0 * self._done)
        stamp = environment_stamp(self.requirements,
                                  python_version(str(venv_executable(self.folder))), self.build)
        (self.folder / STAMP_NAME).write_text(json.dumps(stamp), encoding="utf-8")
        self.setProgress(100.0)
        return True

    def _check_torch(self) -> str | None:
        """The torch step installed the chosen build, or why not."""
        found = probe_environment(str(venv_executable(self.folder)), ["torch"])
        version = found.packages.get("torch") or "nothing"
        return found.failure or wrong_build(version, self.build)

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
            self._advance(line)
        returncode = process.wait()
        process.stdout.close()
        if self.isCanceled():
            return "cancelled"
        if returncode:
            last = self.lines[-1] if self.lines else "no output"
            if "--index-url" in args:
                index = args[args.index("--index-url") + 1]
                return (f"{args[-1]} could not be installed from PyTorch's index {index} "
                        f"(unreachable, or it has no such build for this Python): {last}. "
                        "Nothing was installed from another index in its place; check the "
                        "network connection or proxy and try again")
            return f"{shlex.join(args[:4])} failed (exit status {returncode}): {last}"
        return None

    def _advance(self, line: str) -> None:
        """Moves the progress within the running pip step."""
        if self._pip is None:
            return
        self._pip.read(line)
        weight = self.plan[self._step][0]
        self.setProgress(100.0 * (self._done + weight * self._pip.fraction))

    def _log(self, line: str) -> None:
        self.lines.append(line)
        QgsMessageLog.logMessage(line, LOG_TAG, Qgis.MessageLevel.Info)
