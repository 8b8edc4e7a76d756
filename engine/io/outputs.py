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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from ..errors import CancelledError, LcfusionError

PARTIAL_MARK = ".lcfusion-partial-"
#: How the C library says ENOSPC, as GDAL and libtiff pass it on in their messages.
NO_SPACE = "No space left on device"
#: GDAL's message levels (CPLErr), for the messages passed on to stderr.
GDAL_LEVELS = {1: "debug", 2: "warning", 3: "error", 4: "fatal error"}
#: Free space (bytes) under which a disk is taken to be why a write failed without saying why:
#: more than a failed write can have needed (a block of GDAL's and libtiff's directory).
FULL_BELOW = 4 << 20


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


def error_chain(error: BaseException) -> list[BaseException]:
    """`error` and the errors it was raised from, each once."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def is_disk_full(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, is ENOSPC (an OSError, or the message
    of a GDAL, libtiff or safetensors error)."""
    return any((isinstance(each, OSError) and each.errno == errno.ENOSPC)
               or NO_SPACE.lower() in str(each).lower() for each in error_chain(error))


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


def fullest(outputs: Sequence[tuple[Path, str]]) -> tuple[Path, str]:
    """The (target, parameter) whose folder has the least free space."""
    return min(outputs, key=lambda output: shutil.disk_usage(output[0].parent).free)


def short_of_space(outputs: Sequence[tuple[Path, str]]) -> tuple[Path, str] | None:
    """The (target, parameter) on the fullest disk when that disk has less than `FULL_BELOW`
    bytes free, taken as the cause of a write that failed without saying why; else None."""
    target, parameter = fullest(outputs)
    return (target, parameter) if shutil.disk_usage(target.parent).free < FULL_BELOW else None


#: How rasterio, GDAL and libtiff word a failed write (rasterio 1.4: "Write failed", libtiff:
#: "... Write error at ...", "IO error writing directory", and after it, GDAL 3.11's
#: "Error fetching directory count" of the directory it could not write).
WRITE_ERRORS = ("write failed", "write error", "error writing", "error fetching directory")


def is_write_error(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, is rasterio's or GDAL's report of a
    failed write (`WRITE_ERRORS`)."""
    return any(words in str(each).lower() for each in error_chain(error)
               for words in WRITE_ERRORS)


class RasterOutput(NamedTuple):
    """A raster written to `temporary` for `target` (the output `parameter`), expected to hold
    `shape` (bands, rows, columns) once closed."""

    temporary: Path
    target: Path
    parameter: str
    shape: tuple[int, int, int]


def write_failure(outputs: Sequence[RasterOutput], failures: list[str],
                  error: BaseException | None = None) -> LcfusionError | None:
    """The error for writing `outputs` given GDAL's collected write `failures` and the `error`
    raised, if any: `DiskFullError` for a full disk, an `LcfusionError` quoting the failed
    write, or None when nothing says that a write failed.

    An I/O error of GDAL or rasterio (RuntimeError, OSError) with the output's disk short of
    space is taken as a full disk, whatever its words: after a failed write libtiff may report
    only what followed it (GDAL 3.10: "Failed to read directory")."""
    targets = [(output.target, output.parameter) for output in outputs]
    if any(NO_SPACE in message for message in failures) or (error and is_disk_full(error)):
        return DiskFullError(*fullest(targets))
    messages = failures + ([str(each) for each in error_chain(error)]
                           if error and is_write_error(error) else [])
    if not messages:
        full = short_of_space(targets) if isinstance(error, (RuntimeError, OSError)) else None
        return DiskFullError(*full) if full else None
    full = short_of_space(targets)
    if full:
        return DiskFullError(*full)
    return LcfusionError(f"could not write {outputs[0].target}: "
                         f"{'; '.join(dict.fromkeys(messages))}", outputs[0].parameter)


def incompleteness(path: Path, shape: tuple[int, int, int]) -> str | None:
    """Why the GeoTIFF at `path` is not a complete raster of `shape` (bands, rows, columns),
    or None: it must open, have that shape, hold every block of every band within the file
    (GDAL writes the blocks never written when it closes a new file) and read back its last
    block. Reads no more than one block, whatever the raster's size. (rasterio is imported
    here: the plugin, which uses this module's other functions, may run without it.)"""
    import rasterio
    from rasterio._err import CPLE_BaseError
    from rasterio.errors import RasterioError

    size = path.stat().st_size
    try:
        with rasterio.open(path) as dataset:
            found = (dataset.count, dataset.height, dataset.width)
            if found != shape:
                return f"{' x '.join(map(str, found))} instead of {' x '.join(map(str, shape))}"
            for band in dataset.indexes:
                for (row, col), _ in dataset.block_windows(band):
                    offset, length = (dataset.get_tag_item(f"{item}_{col}_{row}", "TIFF",
                                                           bidx=band)
                                      for item in ("BLOCK_OFFSET", "BLOCK_SIZE"))
                    if not offset or not length or int(offset) + int(length) > size:
                        return f"block {row}, {col} of band {band} is missing"
            *_, (_, last) = dataset.block_windows()
            dataset.read(window=last)
    except (OSError, RasterioError, CPLE_BaseError) as exc:
        return str(exc)
    return None


def check_complete(outputs: Sequence[RasterOutput]) -> None:
    """Fail unless every output's closed temporary file is a complete raster: rasterio may
    close a file it could not finish without a word (1.3 lets the errors of the last writes
    pass, a 1.4 wheel raises only some of its own GDAL's). A full disk names the output on
    the fullest disk, as GDAL's messages do."""
    for output in outputs:
        problem = incompleteness(output.temporary, output.shape)
        if problem is None:
            continue
        full = short_of_space([(each.target, each.parameter) for each in outputs])
        if full:
            raise DiskFullError(*full)
        raise LcfusionError(f"could not write {output.target}: the written file is "
                            f"incomplete ({problem})", output.parameter)


@contextlib.contextmanager
def gdal_write_failures() -> Iterator[list[str]]:
    """The messages of the write failures GDAL signals inside the block, in any thread (block
    flushes may run in the reader thread), each also passed on to stderr. The handler is
    process-wide (for the engine process only) and set in osgeo's GDAL: it sees rasterio's
    writes where rasterio shares that library and leaves GDAL's errors to the process's
    handler (rasterio 1.3 on Debian), never those of a rasterio 1.4 wheel, which bundles a
    GDAL of its own."""
    from osgeo import gdal

    failures: list[str] = []

    def collect(level: int, number: int, message: str) -> None:
        if level >= gdal.CE_Failure and (NO_SPACE in message or "write" in message.lower()):
            failures.append(message)
        sys.stderr.write(f"GDAL {GDAL_LEVELS.get(level, level)} {number}: {message}\n")

    gdal.SetErrorHandler(collect)
    try:
        yield failures
    finally:
        gdal.SetErrorHandler("CPLDefaultErrorHandler")


@contextlib.contextmanager
def checked_raster_writes(*outputs: RasterOutput) -> Iterator[None]:
    """Fail, before any output replaces an existing file, when writing `outputs` failed: the
    rasters are written and closed inside the block, and their temporary files checked after
    it. A full disk raises `DiskFullError` naming the output on the fullest disk; another
    failed write an `LcfusionError` that names the output and quotes GDAL or rasterio.

    Failed writes show as GDAL's error messages (rasterio 1.3), as rasterio's own errors
    raised while writing (rasterio 1.4: "Write failed"), or not at all: rasterio lets pass the
    errors of writing the cached blocks and the directory when it closes a file, which is then
    truncated while the write seemed to succeed; the check of the closed files catches those.
    """
    with gdal_write_failures() as failures:
        try:
            yield
        except (DiskFullError, CancelledError):
            raise
        except Exception as exc:
            failure = write_failure(outputs, failures, exc)
            if failure is None:
                raise
            raise failure from exc
    failure = write_failure(outputs, failures)
    if failure:
        raise failure
    check_complete(outputs)
