"""Errors the engine reports to users: each names the parameter at fault and how to fix it."""

from __future__ import annotations


class LcfusionError(Exception):
    """A user-facing error. `parameter` names the Processing parameter (e.g. ``REFERENCE``)."""

    def __init__(self, message: str, parameter: str | None = None):
        super().__init__(message)
        self.message = message
        self.parameter = parameter

    def __str__(self) -> str:
        if self.parameter:
            return f"{self.parameter}: {self.message}"
        return self.message


class CancelledError(LcfusionError):
    """The run was cancelled (SIGTERM from the plugin, Ctrl+C in a terminal)."""

    def __init__(self) -> None:
        super().__init__("the run was cancelled")
