"""Internal overviews of the written maps and their Cloud Optimized GeoTIFF copies, built on
the temporary files before they replace the outputs.

Class maps are reduced by their most frequent class (mode), never by averaging class codes;
confidence maps by averaging. GDAL does the work, reporting its progress; a cancel (SIGTERM,
or Ctrl+C) stops GDAL and takes effect once GDAL has returned.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from osgeo import gdal

from ..progress import Reporter
from .outputs import RasterOutput, partial_path

gdal.UseExceptions()

#: Resampling of the overviews of each kind of map (GDAL's names).
CLASS_RESAMPLING = "MODE"
CONFIDENCE_RESAMPLING = "AVERAGE"
#: Overviews are added until the smallest is at most this many pixels across (gdaladdo's and
#: the COG driver's default: one 256-pixel tile).
SMALLEST_OVERVIEW = 256
COG_OPTIONS = ("COMPRESS=DEFLATE", "PREDICTOR=YES", "BLOCKSIZE=256", "BIGTIFF=IF_SAFER",
               "OVERVIEWS=AUTO")


class MapFile(NamedTuple):
    """A written map and the resampling of its overviews."""

    output: RasterOutput
    resampling: str


def overview_factors(width: int, height: int, smallest: int = SMALLEST_OVERVIEW) -> list[int]:
    """Reduction factors 2, 4, 8, ... until the overview is at most `smallest` pixels across
    (none for a map that small already)."""
    factors: list[int] = []
    side = max(width, height)
    while -(-side // (factors[-1] if factors else 1)) > smallest:
        factors.append(2 * (factors[-1] if factors else 1))
    return factors


class GdalProgress:
    """GDAL's progress callback: GDAL's fraction goes to `reporter`; it stops GDAL once a stop
    signal is `deferred`, or when reporting raised (the error is kept, to be raised once GDAL
    has returned)."""

    def __init__(self, reporter: Reporter, stage: str, deferred: list[int]):
        self.reporter, self.stage, self.deferred = reporter, stage, deferred
        self.raised: BaseException | None = None

    def __call__(self, complete: float, message: str, data: object) -> int:
        try:
            self.reporter.progress(complete, self.stage)
        except BaseException as exc:  # noqa: BLE001 - raised again after GDAL returns
            self.raised = exc
            return 0
        return 0 if self.deferred else 1


#: The signals that stop a run: the plugin's cancel and the parent's exit (SIGTERM), Ctrl+C.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def deferred_stop_signals() -> Iterator[list[int]]:
    """In the main thread, a SIGTERM or SIGINT during the block is noted in the yielded list
    instead of handled, and the first one delivered again once the block is over: its handler
    (the engine's raises `CancelledError`, Python's `KeyboardInterrupt`) would otherwise raise
    inside GDAL's progress callback, where GDAL prints the traceback and goes on to its own
    error."""
    noted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return
    previous = {number: signal.signal(number, lambda signum, frame: noted.append(signum))
                for number in STOP_SIGNALS}
    try:
        yield noted
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        if noted:
            signal.raise_signal(noted[0])


@contextlib.contextmanager
def gdal_progress(reporter: Reporter, stage: str) -> Iterator[GdalProgress]:
    """A progress callback for one GDAL call inside the block. GDAL stopped by a SIGTERM or
    SIGINT ends the block as that signal's handler says (the engine's SIGTERM:
    `CancelledError`); stopped by an error of the reporter, with that error."""
    with deferred_stop_signals() as deferred:
        progress = GdalProgress(reporter, stage, deferred)
        try:
            yield progress
        except RuntimeError:
            if progress.raised is not None:
                raise progress.raised from None
            if not deferred:
                raise
            return  # GDAL stopped for the signal, delivered again as the block ends
    if progress.raised is not None:
        raise progress.raised


def close_now(dataset: gdal.Dataset | None) -> None:
    """Close `dataset` at once, raising GDAL's errors of its last writes (GDAL >= 3.8; an older
    GDAL closes it when its last reference goes, reporting them to its error handler).

    Without it a failed GDAL call leaves the dataset to the garbage collector: the call's
    traceback holds it in the frames of GDAL's Python wrappers. Closed that late (after its
    disk is gone, or as the interpreter exits), GDAL 3.10+ can crash the process. `Close`
    runs with GDAL's exceptions off: GDAL before 3.11 forgets the closed handle only when
    `Close` returns, so a raising `Close` left it to be closed a second time, a crash."""
    close = getattr(dataset, "Close", None)
    if close is None:
        return
    with gdal.ExceptionMgr(useExceptions=False):
        gdal.ErrorReset()
        status = close()
        message = gdal.GetLastErrorMsg()
    if status != gdal.CE_None:
        raise RuntimeError(message or "GDAL could not finish writing the dataset")


@contextlib.contextmanager
def open_dataset(path: Path, access: int = gdal.GA_ReadOnly) -> Iterator[gdal.Dataset]:
    """The GDAL dataset at `path` for the block, closed as the block ends (`close_now`); an
    error closing it after the block failed does not hide the block's own error."""
    dataset = gdal.Open(str(path), access)
    try:
        yield dataset
    except BaseException:
        with contextlib.suppress(RuntimeError):
            close_now(dataset)
        raise
    close_now(dataset)


#: The progress stage of the Cloud Optimized GeoTIFF copies.
COG_STAGE = "cloud optimized GeoTIFF"


def build_overviews(path: Path, resampling: str, reporter: Reporter) -> None:
    """Internal overviews of the GeoTIFF at `path`, down to `SMALLEST_OVERVIEW` pixels."""
    with open_dataset(path, gdal.GA_Update) as dataset:
        factors = overview_factors(dataset.RasterXSize, dataset.RasterYSize)
        if factors:
            with gdal_progress(reporter, "overviews") as progress:
                dataset.BuildOverviews(resampling, factors, callback=progress)


def convert_to_cog(map_file: MapFile, reporter: Reporter) -> None:
    """Replace the temporary GeoTIFF by a Cloud Optimized GeoTIFF with the same overviews,
    written beside it under another temporary name (removed if the copy fails)."""
    output = map_file.output
    copy = partial_path(output.target)
    try:
        creation = [*COG_OPTIONS, f"RESAMPLING={map_file.resampling}"]
        with open_dataset(output.temporary) as source, \
                gdal_progress(reporter, COG_STAGE) as progress:
            close_now(gdal.Translate(str(copy), source, format="COG",
                                     creationOptions=creation, callback=progress))
        os.replace(copy, output.temporary)
    finally:
        copy.unlink(missing_ok=True)


def finish_maps(maps: Sequence[MapFile], cog: bool, reporter: Reporter) -> float:
    """Overviews of every map (and with `cog` its Cloud Optimized GeoTIFF copy), each step a
    share of `reporter`'s progress; the seconds spent."""
    started = time.monotonic()
    steps = len(maps) * (2 if cog else 1)
    overviews = any(overview_factors(each.output.shape[2], each.output.shape[1])
                    for each in maps)
    for index, map_file in enumerate(maps):
        first = index * steps // len(maps)
        build_overviews(map_file.output.temporary, map_file.resampling,
                        reporter.span(first / steps, (first + 1) / steps))
        if cog:
            convert_to_cog(map_file, reporter.span((first + 1) / steps, (first + 2) / steps))
    # A map too small for overviews gives GDAL nothing to report: the run still ends at 100 %,
    # under the last stage that was done.
    reporter.progress(1.0, "overviews" if overviews else COG_STAGE if cog else "")
    return time.monotonic() - started
