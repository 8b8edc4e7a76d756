"""Outputs written to a temporary name beside the target and renamed when complete.

A failed or cancelled run removes its temporary file and never touches an existing output.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from .errors import LcfusionError

PARTIAL_MARK = ".lcfusion-partial-"


def partial_path(target: Path) -> Path:
    """A unique temporary name in the target's folder, keeping the extension (GDAL needs it)."""
    return target.with_name(f"{target.stem}{PARTIAL_MARK}{uuid.uuid4().hex[:12]}{target.suffix}")


def partial_files(target: Path) -> list[Path]:
    """Temporary files of `target` left by a writer that was killed before it could clean up."""
    return sorted(target.parent.glob(f"{target.stem}{PARTIAL_MARK}*{target.suffix}"))


def check_writable(target: Path, parameter: str) -> None:
    """Fail early, with the parameter's name, when the output folder cannot take the file."""
    folder = target.parent
    if not folder.exists():
        raise LcfusionError(f"the folder {folder} does not exist; create it or choose another "
                            "output path", parameter)
    if not os.access(folder, os.W_OK):
        raise LcfusionError(f"the folder {folder} is not writable; choose another output path",
                            parameter)
    if target.is_dir():
        raise LcfusionError(f"{target} is a folder, not a file name", parameter)


@contextlib.contextmanager
def atomic_output(target: str | os.PathLike, parameter: str) -> Iterator[Path]:
    """Yield a temporary path to write; on success rename it to `target`, else remove it."""
    target = Path(target)
    check_writable(target, parameter)
    temporary = partial_path(target)
    try:
        yield temporary
        try:
            os.replace(temporary, target)
        except OSError as exc:
            raise LcfusionError(f"could not write {target}: {exc.strerror}", parameter) from exc
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
