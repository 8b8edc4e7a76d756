"""Runs the engine as a child process and relays its events to Processing feedback."""

from __future__ import annotations

import collections
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from qgis.core import QgsProcessingException, QgsProcessingFeedback

from .console import ConsoleLine
from .settings import engine_python, package_name, plugin_root

TERMINATE_GRACE_SECONDS = 10.0
POLL_SECONDS = 0.1


@dataclass
class EngineFailure:
    """What the engine said when it failed."""

    message: str
    parameter: str | None = None


@dataclass
class EngineRun:
    """The outcome of one engine run; `pid` is the engine process's id (it names the
    temporary files the engine writes beside its outputs)."""

    returncode: int
    pid: int | None = None
    outputs: dict = field(default_factory=dict)
    failure: EngineFailure | None = None
    cancelled: bool = False
    stderr_tail: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        """The engine finished and reported its outputs (even if a cancel came too late)."""
        return self.returncode == 0 and self.failure is None and bool(self.outputs)


def engine_command(command: str, job_path: Path, python: str | None = None) -> list[str]:
    """The argument list that runs `command` on `job_path` (never a shell string)."""
    return [python or engine_python(), "-u", "-m", f"{package_name()}.engine", "--events", "json",
            command, str(job_path)]


def engine_environment() -> dict[str, str]:
    """The child's environment: the plugin's parent folder first on PYTHONPATH."""
    env = dict(os.environ)
    parent = str(plugin_root().parent)
    existing = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = parent + (os.pathsep + existing if existing else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def pump(stream, sink: queue.Queue, tag: str) -> None:
    """Put each line of `stream` on `sink` as (tag, line), then (tag, None) at its end."""
    for line in iter(stream.readline, ""):
        sink.put((tag, line.rstrip("\n")))
    sink.put((tag, None))


class EngineProcess:
    """One engine child process: start, relay events, cancel on request. Its debug events and
    stderr reach the feedback when `verbose` (the context's verbose log level)."""

    def __init__(self, command: str, job_path: Path, feedback: QgsProcessingFeedback,
                 python: str | None = None, verbose: bool = False):
        self.args = engine_command(command, job_path, python)
        self.feedback = feedback
        self.verbose = verbose
        self.console = ConsoleLine(feedback)
        self._stage = ""

    def run(self) -> EngineRun:
        try:
            process = subprocess.Popen(
                self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                encoding="utf-8", errors="replace", env=engine_environment(),
                start_new_session=sys.platform != "win32",
            )
        except OSError as exc:
            raise QgsProcessingException(
                f"Cannot start the lcfusion engine with {self.args[0]!r}: {exc.strerror}. Set the "
                "engine Python in the plugin settings or the LCFUSION_PYTHON environment "
                "variable to an interpreter that has torch (run 'make setup' in the plugin "
                "folder to create one).") from exc
        events: queue.Queue = queue.Queue()
        readers = [threading.Thread(target=pump, args=(process.stdout, events, "out"),
                                    daemon=True),
                   threading.Thread(target=pump, args=(process.stderr, events, "err"),
                                    daemon=True)]
        for reader in readers:
            reader.start()
        run = EngineRun(returncode=0, pid=process.pid)
        stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        open_streams = 2
        try:
            while open_streams:
                if self.feedback.isCanceled() and not run.cancelled:
                    run.cancelled = True
                    self.console.end_line()
                    self.feedback.pushInfo("Cancelling: stopping the engine…")
                    terminate(process)
                try:
                    tag, line = events.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                if line is None:
                    open_streams -= 1
                elif tag == "err":
                    stderr_tail.append(line)
                    self._debug(line)
                else:
                    self._handle(line, run)
        finally:
            if process.poll() is None:
                terminate(process)
            self.console.end_line()
        run.returncode = process.wait()
        for stream in (process.stdout, process.stderr):
            stream.close()  # both readers saw the end of their stream
        run.stderr_tail = list(stderr_tail)
        return run

    def _handle(self, line: str, run: EngineRun) -> None:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            self.console.end_line()
            self.feedback.pushConsoleInfo(line)
            return
        kind = event.get("event")
        if kind == "progress" and isinstance(event.get("percent"), (int, float)):
            percent = float(event["percent"])
            stage = str(event.get("stage") or "")
            if stage and stage != self._stage:  # named before its progress: it heads its dots
                self._stage = stage
                if self.console.announces_stage(percent):
                    self.console.end_line()
                    self.feedback.setProgressText(stage)
            self.feedback.setProgress(percent)
            self.console.progressed(percent)
        elif kind == "log":
            message, level = str(event.get("message", "")), event.get("level")
            if level != "debug":
                self.console.end_line()
            if level == "warning":
                self.feedback.pushWarning(message)
            elif level == "debug":
                self._debug(message)
            else:
                self.feedback.pushInfo(message)
        elif kind == "result":
            run.outputs = dict(event.get("outputs") or {})
        elif kind == "error":
            run.failure = EngineFailure(str(event.get("message", "")), event.get("parameter"))

    def _debug(self, line: str) -> None:
        """The engine's details and its stderr, shown at the verbose log level only (a crash
        quotes the end of stderr in its error)."""
        if self.verbose:
            self.console.end_line()
            self.feedback.pushDebugInfo(line)


def terminate(process: subprocess.Popen) -> None:
    """SIGTERM to the engine's process group (it cleans up), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        if sys.platform == "win32":
            process.terminate()
        else:
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(TERMINATE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        if sys.platform == "win32":
            process.kill()
        else:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
