"""Helpers for tests that run algorithms through Processing: cancelling at a stage and
checking that no engine process survives, and the parameters of a quick MRFusion training."""

from __future__ import annotations

import os
import signal
import threading
import time

import processing
import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback

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
            self.engine = engine_children()
            self.cancelled_at = time.monotonic()
            self.watchdog = threading.Timer(WATCHDOG, self._kill_engine)
            self.watchdog.daemon = True
            self.watchdog.start()
            self.cancel()
        super().setProgressText(text)

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
    assert feedback.cancelled_at is not None, f"never reached {feedback.prefix!r}: " \
                                              f"{feedback.stages}"
    assert not feedback.watchdog_fired, "the engine ignored the cancel; the test killed it"
    return str(caught.value), returned - feedback.cancelled_at
