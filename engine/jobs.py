"""Jobs: a folder with ``job.json`` (what to run, on which files, with which settings).

Relative paths in a job are relative to its folder, so a job folder can be moved or staged
to another machine as a whole.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import LcfusionError

JOB_VERSION = 1


@dataclass
class Job:
    """A parsed job file."""

    command: str
    data: dict[str, Any]
    folder: Path

    @classmethod
    def load(cls, path: str | Path) -> Job:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LcfusionError(f"the job file {path} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LcfusionError(f"the job file {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or "command" not in data:
            raise LcfusionError(f"the job file {path} names no command")
        if int(data.get("version", JOB_VERSION)) > JOB_VERSION:
            raise LcfusionError(f"the job file {path} needs a newer lcfusion engine")
        return cls(str(data["command"]), data, path.resolve().parent)

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name) or {}
        if not isinstance(value, dict):
            raise LcfusionError(f"the job's {name!r} must be an object")
        return value

    def resolve(self, value: str | None) -> Path | None:
        """An absolute path for a path written in the job (relative to the job's folder)."""
        if not value:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.folder / path)

    def workdir(self) -> tempfile.TemporaryDirectory:
        """A scratch folder inside the job's folder, removed afterwards."""
        try:
            return tempfile.TemporaryDirectory(prefix="work-", dir=self.folder)
        except OSError as exc:
            raise LcfusionError(f"cannot create a scratch folder in the job folder "
                                f"{self.folder}: {exc.strerror}") from exc


def write_job(folder: str | Path, command: str, **sections: Any) -> Path:
    """Write ``job.json`` in `folder` and return its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "job.json"
    data = {"version": JOB_VERSION, "command": command, **sections}
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def settings_from(cls, values: dict[str, Any], presets: dict[str, dict] | None = None):
    """Build the settings dataclass `cls` from a job's values.

    A ``preset`` replaces the values it defines (its ``split`` entry, if any, is for
    `splits.preset_split`); unknown keys are an error, so a typo never goes unnoticed.
    """
    values = dict(values)
    preset = values.pop("preset", None)
    if preset and (not presets or preset not in presets):
        raise LcfusionError(f"unknown preset {preset!r}; known: "
                            f"{', '.join(sorted(presets or {})) or 'none'}", "PRESET")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise LcfusionError(f"unknown {'setting' if len(unknown) == 1 else 'settings'} "
                            f"{', '.join(unknown)}; known: "
                            f"{', '.join(sorted(known))}")
    merged = {k: v for k, v in values.items() if v is not None}
    if preset:
        merged.update({k: v for k, v in presets[preset].items() if k != "split"})
    converted = {}
    for key, value in merged.items():
        kind = known[key].type
        try:
            if kind in ("int", int):
                converted[key] = int(value)
            elif kind in ("float", float):
                converted[key] = float(value)
            elif kind in ("bool", bool):
                converted[key] = bool(value)
            else:
                converted[key] = value
        except (TypeError, ValueError):
            raise LcfusionError(f"{key.upper()}: {value!r} is not a valid value",
                                key.upper()) from None
    return cls(**converted)


def check_settings(config: Any, positive: tuple[str, ...] = (),
                   non_negative: tuple[str, ...] = (),
                   choices: dict[str, tuple[str, ...]] | None = None) -> None:
    """The checks every training config shares: values above 0, values not below 0, a
    learning rate in (0, 1) and choices among known values; errors name the parameter."""
    for name in positive:
        if getattr(config, name) <= 0:
            raise LcfusionError(f"must be above 0, got {getattr(config, name)}", name.upper())
    for name in non_negative:
        if getattr(config, name) < 0:
            raise LcfusionError(f"cannot be negative, got {getattr(config, name)}",
                                name.upper())
    rate = getattr(config, "learning_rate", None)
    if rate is not None and not 0 < rate < 1:
        raise LcfusionError(f"must lie between 0 and 1, got {rate}", "LEARNING_RATE")
    for name, known in (choices or {}).items():
        value = getattr(config, name)
        if value not in known:
            raise LcfusionError(f"unknown {name.replace('_', ' ')} {value!r}; use one of "
                                f"{', '.join(known)}", name.upper())
