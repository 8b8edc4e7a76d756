"""Outputs written to a temporary name beside the target and renamed when complete.

A failed or cancelled run removes its temporary file and never touches an existing output. The
temporary name carries the writing process's id, so that whoever cleans up after a killed
writer removes that writer's files only, never those of another run writing the same output.
A full disk is reported as such, naming the output's parameter.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from ..errors import CancelledError, LcfusionError

PARTIAL_MARK = ".lcfusion-partial-"
#: How the C library says ENOSPC, as GDAL and libtiff pass it on in their messages.
NO_SPACE = "No space left on device"
#: GDAL's message levels (CPLErr), for the messages passed on to stderr.
GDAL_LEVELS = {1: "debug", 2: "warning", 3: "error", 4: "fatal error"}


class DiskFullError(LcfusionError):
    """The output's file system is full."""

    def __init__(self, target: Path, parameter: str | None):
        super().__init__(f"no space left on device while writing {target}: free space or "
                         "choose another output folder", parameter)


def partial_path(target: Path, pid: int | None = None) -> Path:
    """A unique temporary name in the target's folder for process `pid` (this one by default),
    keeping the extension (GDAL needs it)."""
    pid = os.getpid() if pid is None else pid
    return target.with_name(f"{target.stem}{PARTIAL_MARK}{pid}-{uuid.uuid4().hex[:12]}"
                            f"{target.suffix}")


def partial_files(target: Path, pid: int | None = None) -> list[Path]:
    """Temporary files of `target` left by a writer that was killed before it could clean up:
    those of process `pid`, or of every process."""
    owner = f"{pid}-" if pid is not None else ""
    pattern = (f"{glob.escape(target.stem)}{PARTIAL_MARK}{owner}*"
               f"{glob.escape(target.suffix)}")
    return sorted(target.parent.glob(pattern))


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


def is_disk_full(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, is ENOSPC (an OSError, or the message
    of a GDAL, libtiff or safetensors error)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return True
        if NO_SPACE.lower() in str(current).lower():
            return True
        current = current.__cause__ or current.__context__
    return False


def reports_full_disk(error: BaseException) -> bool:
    """Whether `error` should become a `DiskFullError`: a failure (not a cancel, nor already
    one) caused by a full disk."""
    return (isinstance(error, Exception) and not isinstance(error, (DiskFullError,
                                                                     CancelledError))
            and is_disk_full(error))


def replace_sidecar(temporary: Path, target: Path) -> None:
    """GDAL's ``.aux.xml`` (statistics, metadata) follows the file it describes: the new file's
    replaces the old one's, which is removed when the new file has none."""
    old, new = (path.with_name(path.name + ".aux.xml") for path in (target, temporary))
    if new.exists():
        os.replace(new, old)
    else:
        with contextlib.suppress(FileNotFoundError):
            old.unlink()


@contextlib.contextmanager
def atomic_output(target: str | os.PathLike, parameter: str) -> Iterator[Path]:
    """Yield a temporary path to write; on success rename it to `target`, else remove it. A
    write that failed because the disk is full raises `DiskFullError`."""
    target = Path(target)
    check_writable(target, parameter)
    temporary = partial_path(target)
    try:
        yield temporary
        try:
            os.replace(temporary, target)
            replace_sidecar(temporary, target)
        except OSError as exc:
            raise LcfusionError(f"could not write {target}: {exc.strerror}", parameter) from exc
    except BaseException as exc:
        for path in (temporary, temporary.with_name(temporary.name + ".aux.xml")):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if reports_full_disk(exc):
            raise DiskFullError(target, parameter) from exc
        raise


def fullest(outputs: tuple[tuple[Path, str], ...]) -> tuple[Path, str]:
    """The (target, parameter) whose folder has the least free space."""
    return min(outputs, key=lambda output: shutil.disk_usage(output[0].parent).free)


@contextlib.contextmanager
def gdal_write_errors(*outputs: tuple[Path, str]) -> Iterator[None]:
    """Fail when GDAL signalled a write error inside the block, in any thread, while writing
    `outputs` ((target, parameter) pairs; a full disk names the one on the fullest disk).

    rasterio lets pass the errors of writing GDAL's cached blocks when a dataset is closed: the
    file is then truncated while the write seemed to succeed. The write errors GDAL signals are
    collected with a process-wide error handler (block flushes may run in the reader thread)
    and raised at the end of the block: `DiskFullError` for a full disk, else an
    `LcfusionError` that quotes GDAL. For the engine process only (the handler is
    process-wide); read errors are left to rasterio, which raises them.
    """
    from osgeo import gdal

    failures: list[str] = []

    def collect(level: int, number: int, message: str) -> None:
        if level >= gdal.CE_Failure and (NO_SPACE in message or "write" in message.lower()):
            failures.append(message)
        sys.stderr.write(f"GDAL {GDAL_LEVELS.get(level, level)} {number}: {message}\n")

    gdal.SetErrorHandler(collect)
    try:
        yield
    except Exception as exc:
        full = any(NO_SPACE in message for message in failures) or is_disk_full(exc)
        if full and not isinstance(exc, (DiskFullError, CancelledError)):
            raise DiskFullError(*fullest(outputs)) from exc
        raise
    finally:
        gdal.SetErrorHandler("CPLDefaultErrorHandler")
    if any(NO_SPACE in message for message in failures):
        raise DiskFullError(*fullest(outputs))
    if failures:
        target, parameter = outputs[0]
        raise LcfusionError(f"could not write {target}: {'; '.join(dict.fromkeys(failures))}",
                            parameter)
