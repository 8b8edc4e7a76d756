"""Progress and log events: JSON lines for the plugin, a progress bar for people."""

from __future__ import annotations

import json
import sys
import time
from abc import ABC, abstractmethod
from typing import Any, TextIO

LEVELS = ("debug", "info", "warning")


class Reporter(ABC):
    """Receives progress (0..1 of the whole run), log lines and the final result."""

    @abstractmethod
    def progress(self, fraction: float, stage: str = "") -> None: ...

    @abstractmethod
    def log(self, message: str, level: str = "info") -> None: ...

    @abstractmethod
    def result(self, outputs: dict[str, Any]) -> None: ...

    def error(self, message: str, parameter: str | None = None) -> None:
        self.log(message if not parameter else f"{parameter}: {message}", "warning")

    def info(self, message: str) -> None:
        self.log(message, "info")

    def warning(self, message: str) -> None:
        self.log(message, "warning")

    def debug(self, message: str) -> None:
        self.log(message, "debug")

    def span(self, start: float, end: float) -> Reporter:
        """A reporter whose 0..1 maps onto [start, end] of this one."""
        return SpanReporter(self, start, end)


class SpanReporter(Reporter):
    """A part of a parent's progress range."""

    def __init__(self, parent: Reporter, start: float, end: float):
        self.parent, self.start, self.end = parent, start, end

    def progress(self, fraction: float, stage: str = "") -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        self.parent.progress(self.start + (self.end - self.start) * fraction, stage)

    def log(self, message: str, level: str = "info") -> None:
        self.parent.log(message, level)

    def result(self, outputs: dict[str, Any]) -> None:
        self.parent.result(outputs)

    def error(self, message: str, parameter: str | None = None) -> None:
        self.parent.error(message, parameter)


class JsonLinesReporter(Reporter):
    """One JSON object per line on a stream: the protocol between engine and plugin.

    Events: ``{"event": "progress", "percent": 12.5, "stage": "training"}``,
    ``{"event": "log", "level": "info", "message": "..."}``,
    ``{"event": "result", "outputs": {...}}``,
    ``{"event": "error", "message": "...", "parameter": "..."}``.
    """

    def __init__(self, stream: TextIO | None = None, min_interval: float = 0.2):
        self.stream = stream or sys.stdout
        self.min_interval = min_interval
        self._last_percent = -1.0
        self._last_time = 0.0
        self._last_stage: str | None = None

    def _emit(self, payload: dict[str, Any]) -> None:
        self.stream.write(json.dumps(payload, ensure_ascii=False) + "\n")
        self.stream.flush()

    def progress(self, fraction: float, stage: str = "") -> None:
        """At most one event per `min_interval`, except that a new stage is always sent (a
        stage reported between two events would otherwise never be shown)."""
        percent = round(100.0 * min(max(fraction, 0.0), 1.0), 1)
        now = time.monotonic()
        if stage == self._last_stage:
            if percent == self._last_percent:
                return
            if percent < 100.0 and now - self._last_time < self.min_interval:
                return
        self._last_percent, self._last_time, self._last_stage = percent, now, stage
        self._emit({"event": "progress", "percent": percent, "stage": stage})

    def log(self, message: str, level: str = "info") -> None:
        self._emit({"event": "log", "level": level if level in LEVELS else "info",
                    "message": message})

    def result(self, outputs: dict[str, Any]) -> None:
        self._emit({"event": "result", "outputs": outputs})

    def error(self, message: str, parameter: str | None = None) -> None:
        self._emit({"event": "error", "message": message, "parameter": parameter})


class ConsoleReporter(Reporter):
    """A progress bar and readable log lines on a terminal (stderr); the result on stdout."""

    def __init__(self, stream: TextIO | None = None, out: TextIO | None = None, width: int = 30,
                 verbose: bool = False):
        self.stream = stream or sys.stderr
        self.out = out or sys.stdout
        self.width = width
        self.verbose = verbose
        self._bar_shown = False
        self._last: str | int = ""

    def _clear_bar(self) -> None:
        if self._bar_shown:
            self.stream.write("\r" + " " * (self.width + 60) + "\r")
            self._bar_shown = False

    def progress(self, fraction: float, stage: str = "") -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        if not self.stream.isatty():
            tenth = int(fraction * 10)
            if tenth != self._last:
                self._last = tenth
                self.stream.write(f"{10 * tenth:3d}% {stage}\n")
                self.stream.flush()
            return
        filled = int(round(self.width * fraction))
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {100 * fraction:5.1f}% {stage}"
        if line == self._last:
            return
        self._last = line
        self.stream.write("\r" + line[: self.width + 58])
        self.stream.flush()
        self._bar_shown = True

    def log(self, message: str, level: str = "info") -> None:
        if level == "debug" and not self.verbose:
            return
        self._clear_bar()
        prefix = {"warning": "WARNING: ", "debug": "debug: "}.get(level, "")
        self.stream.write(f"{prefix}{message}\n")
        self.stream.flush()

    def result(self, outputs: dict[str, Any]) -> None:
        self._clear_bar()
        for key, value in outputs.items():
            if not isinstance(value, (dict, list)):
                self.out.write(f"{key}: {value}\n")
        self.out.flush()

    def error(self, message: str, parameter: str | None = None) -> None:
        self._clear_bar()
        where = f"{parameter}: " if parameter else ""
        self.stream.write(f"ERROR: {where}{message}\n")
        self.stream.flush()


class NullReporter(Reporter):
    """Discards everything (library use and tests)."""

    def progress(self, fraction: float, stage: str = "") -> None:
        return None

    def log(self, message: str, level: str = "info") -> None:
        return None

    def result(self, outputs: dict[str, Any]) -> None:
        return None


class FollowerReporter(Reporter):
    """What a rank other than 0 says: only warnings and errors, marked with its rank (rank 0
    alone reports progress, the log and the result)."""

    def __init__(self, parent: Reporter, rank: int):
        self.parent, self.rank = parent, rank

    def progress(self, fraction: float, stage: str = "") -> None:
        return None

    def log(self, message: str, level: str = "info") -> None:
        if level == "warning":
            self.parent.log(f"rank {self.rank}: {message}", level)

    def result(self, outputs: dict[str, Any]) -> None:
        return None

    def error(self, message: str, parameter: str | None = None) -> None:
        self.parent.error(f"rank {self.rank}: {message}", parameter)
