"""Helpers for tests that run algorithms through Processing: running one as the toolbox dialog
does (outputs loaded and post-processed), cancelling at a stage or a message, checking that no
engine process survives and nothing is left behind, and the parameters of a quick MRFusion
training."""

from __future__ import annotations

import gc
import hashlib
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import processing
import pytest
import rasterio
from helpers import processes_in, write_raster
from processing.core.Processing import Processing
from processing.gui.Postprocessing import handleAlgorithmResults
from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingUtils,
)

#: Seconds from cancel() to processing.run returning. The plugin sends SIGTERM and falls back
#: to SIGKILL after 10 s; a bound below that shows the engine stopped on SIGTERM.
STOP_WITHIN = 8.0
#: Seconds allowed for processes to disappear after the run returned.
GRACE = 3.0
#: Seconds after cancel() at which the test itself kills the engine it saw, so that a broken
#: cancel fails the test instead of letting the engine train on (the plugin's own SIGKILL
#: fallback comes at 10 s).
WATCHDOG = 20.0


TINY_MRFUSION = {"EPOCHS": 1, "SAMPLES_PER_EPOCH": 64, "VALIDATION_SAMPLES": 0,
                 "BATCH_SIZE": 32, "TILE_SIZE": 192}
TINY_TWINNS = {"EPOCHS": 1, "SAMPLES_PER_EPOCH": 128, "VALIDATION_SAMPLES": 32,
               "BATCH_SIZE": 64, "TILE_SIZE": 96}
TINY_FOREST = {"N_TREES": 10, "SAMPLES_PER_CLASS": 100, "TILE_SIZE": 64}


def run_and_load(algorithm: str, parameters: dict, context: QgsProcessingContext) -> dict:
    """Run `algorithm` as the toolbox dialog does: its outputs loaded into the context's
    project and styled by Processing's post-processing (`handleAlgorithmResults`)."""
    alg = QgsApplication.processingRegistry().createAlgorithmById(algorithm)
    results = Processing.runAlgorithm(alg, parameters, onFinish=handleAlgorithmResults,
                                      context=context)
    gc.collect()
    QgsApplication.processEvents()
    return results


def landsat_like_pair(folder: Path, scene) -> tuple[Path, Path, tuple[float, float]]:
    """A PAN and MS laid out as Landsat 8's: ratio 2, PAN and MS pixel centres meeting at the
    upper-left corner (so the PAN origin is half a PAN pixel right of and below the MS's) and
    a PAN of 2n - 1 rows and columns for n MS rows and columns. Made of the scene's MS (10 m)
    and its PAN averaged to 5 m; returns the paths and the PAN origin."""
    with rasterio.open(scene.ms_path) as src:
        ms, transform, crs = src.read(), src.transform, src.crs.to_string()
        descriptions = src.descriptions
    with rasterio.open(scene.pan_path) as src:
        pan = src.read(1).astype(np.float32)
    rows, cols = pan.shape[0] // 4, pan.shape[1] // 4  # PAN pixels at 5 m = 2 x the MS's
    pan = pan.reshape(2 * rows, 2, 2 * cols, 2).mean(axis=(1, 3))[: 2 * rows - 1, : 2 * cols - 1]
    origin = (transform.c + 2.5, transform.f - 2.5)
    return (write_raster(folder / "landsat_pan.tif", pan, origin=origin, pixel=5.0, crs=crs),
            write_raster(folder / "landsat_ms.tif", ms, origin=(transform.c, transform.f),
                         pixel=10.0, crs=crs, descriptions=descriptions),
            origin)


def mrfusion_train_parameters(scene, **changes) -> dict:
    return {"PAN": str(scene.pan_path), "MS": str(scene.ms_path),
            "REFERENCE": f"{scene.reference_path}|layername={scene.reference_layer}",
            "CLASS_FIELD": "class_id", "NAME_FIELD": "class_name", "SEED": 2,
            "OUTPUT_MODEL": "TEMPORARY_OUTPUT", **TINY_MRFUSION, **changes}


def engine_children() -> dict[int, str]:
    """pid -> command line of this process's children that run the lcfusion engine."""
    found = {}
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as handle:
                ppid = next(line.split()[1] for line in handle if line.startswith("PPid:"))
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, StopIteration):
            continue
        if ppid == me and "lcfusion.engine" in cmdline:
            found[int(entry)] = cmdline
    return found


def survivors(pid: int, job_marker: str) -> list[str]:
    """Processes left over from the engine run `pid`: in its session, or running its job."""
    left = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, session = fields[0], int(fields[3])
        if state == "Z" and int(entry) != pid:
            continue  # a zombie of someone else's
        if int(entry) == pid or session == pid or job_marker in cmdline:
            left.append(f"{entry} [{state}] {cmdline}")
    return left


def wait_for_no_survivors(pid: int, job_marker: str) -> list[str]:
    deadline = time.monotonic() + GRACE
    while True:
        left = survivors(pid, job_marker)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def wait_for_no_processes_in(folder: Path) -> list[str]:
    deadline = time.monotonic() + GRACE
    while True:
        left = processes_in(folder)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def job_folders() -> set[str]:
    """The engine job folders in Processing's temporary folder."""
    folder = QgsProcessingUtils.tempFolder()
    return {name for name in os.listdir(folder) if name.startswith("lcfusion-job-")}


def contents(folder: Path) -> dict[str, str]:
    """File name -> SHA-256 of every file in `folder`."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def engine_job_folder(cmdline: str) -> Path:
    """The job folder of an engine command line (``... <folder>/job.json``)."""
    return Path(next(part for part in cmdline.split() if part.endswith("job.json"))).parent


def assert_engine_gone(engine: dict[int, str]) -> None:
    """The one engine child seen during the run, its session and its job folder are gone."""
    assert len(engine) == 1, f"expected one engine child, saw {engine}"
    (pid, cmdline), = engine.items()
    job = engine_job_folder(cmdline)
    left = wait_for_no_survivors(pid, str(job))
    assert not left, f"engine processes left: {left}"
    assert not job.exists(), "the job folder was not removed"


class CancelAtStage(QgsProcessingFeedback):
    """Cancels once the engine reports a stage starting with `prefix`; remembers the engine
    child process that was running at that moment."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.cancelled_at: float | None = None
        self.engine: dict[int, str] = {}
        self.stages: list[str] = []
        self.watchdog: threading.Timer | None = None
        self.watchdog_fired = False

    def setProgressText(self, text):  # noqa: N802 - QGIS API
        self.stages.append(text)
        if self.cancelled_at is None and text.startswith(self.prefix):
            self.cancel_now()
        super().setProgressText(text)

    def cancel_now(self) -> None:
        """Cancel, remembering when and which engine child ran (none before it started)."""
        self.engine = engine_children()
        self.cancelled_at = time.monotonic()
        self.watchdog = threading.Timer(WATCHDOG, self._kill_engine)
        self.watchdog.daemon = True
        self.watchdog.start()
        self.cancel()

    def _kill_engine(self) -> None:
        """The engine outlived the cancel by far: stop it (only the process group we saw)."""
        for pid in self.engine:
            if pid in engine_children():
                self.watchdog_fired = True
                os.killpg(pid, signal.SIGKILL)


def run_and_cancel(algorithm: str, parameters: dict, feedback: CancelAtStage) -> tuple[str,
                                                                                        float]:
    """Run until the feedback cancels; the error message and seconds from cancel to return."""
    try:
        with pytest.raises(QgsProcessingException) as caught:
            processing.run(algorithm, parameters, feedback=feedback)
    finally:
        if feedback.watchdog is not None:
            feedback.watchdog.cancel()
    returned = time.monotonic()
    assert feedback.cancelled_at is not None, (
        f"never reached {feedback.prefix!r} (stages: {feedback.stages}); the run said: "
        f"{caught.value}")
    assert not feedback.watchdog_fired, "the engine ignored the cancel; the test killed it"
    return str(caught.value), returned - feedback.cancelled_at


class CancelAtMessage(CancelAtStage):
    """Cancels `after` seconds after the algorithm tells the user a message that contains
    `fragment` (a step of the plugin before the engine starts, such as exporting a layer); the
    cancel then comes from another thread, as the dialog's Cancel button does."""

    def __init__(self, fragment: str, after: float = 0.0) -> None:
        super().__init__(fragment)
        self.after = after
        self.timer: threading.Timer | None = None

    def pushInfo(self, info):  # noqa: N802 - QGIS API
        if self.timer is None and self.prefix in info:
            self.stages.append(info)
            self.timer = threading.Timer(self.after, self.cancel_now)
            self.timer.start()
        super().pushInfo(info)
