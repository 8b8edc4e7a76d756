"""Helpers for the fault and concurrency tests: large inputs made from the small scene, engine
runs started from the command line, a full disk (a small tmpfs) and a watch on new files."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import rasterio

from lcfusion.engine.io.outputs import partial_files
from lcfusion.engine.jobs import write_job

#: Seconds to wait for an engine run to reach a point (a partial file) on two loaded cores.
REACH_WITHIN = 120.0


def tiled_series(paths: list[Path], folder: Path, repeat: int) -> list[str]:
    """Each raster as a VRT that tiles it `repeat` x `repeat` times (band names kept): a local
    raster big enough that working on it takes a while."""
    tiled = []
    for source in paths:
        with rasterio.open(source) as ds:
            width, height, count = ds.width, ds.height, ds.count
            transform, crs, names = ds.transform, ds.crs.to_string(), ds.descriptions
        bands = []
        for band in range(1, count + 1):
            sources = "".join(
                f"<SimpleSource><SourceFilename relativeToVRT=\"0\">{source}</SourceFilename>"
                f"<SourceBand>{band}</SourceBand>"
                f"<SrcRect xOff=\"0\" yOff=\"0\" xSize=\"{width}\" ySize=\"{height}\"/>"
                f"<DstRect xOff=\"{i * width}\" yOff=\"{j * height}\" xSize=\"{width}\" "
                f"ySize=\"{height}\"/></SimpleSource>"
                for i in range(repeat) for j in range(repeat))
            name = f"<Description>{names[band - 1]}</Description>" if names[band - 1] else ""
            bands.append(f"<VRTRasterBand dataType=\"UInt16\" band=\"{band}\">{name}"
                         f"<NoDataValue>0</NoDataValue>{sources}</VRTRasterBand>")
        geo = ", ".join(str(v) for v in (transform.c, transform.a, transform.b, transform.f,
                                         transform.d, transform.e))
        text = (f"<VRTDataset rasterXSize=\"{width * repeat}\" "
                f"rasterYSize=\"{height * repeat}\"><SRS>{crs}</SRS>"
                f"<GeoTransform>{geo}</GeoTransform>{''.join(bands)}</VRTDataset>")
        path = folder / Path(source).with_suffix(".vrt").name
        path.write_text(text)
        tiled.append(str(path))
    return tiled


def fgunet_classify_job(folder: Path, model: Path, series: list[str], class_map: Path,
                        confidence: Path | None = None) -> Path:
    """A classify-fgunet job in `folder` (tiles of 64 px, margin 8)."""
    return write_job(folder, "classify-fgunet",
                     inputs={"model": str(model), "series": {"paths": series}},
                     settings={"tile_size": 64, "margin": 8},
                     outputs={"class_map": str(class_map),
                              "confidence": str(confidence) if confidence else None})


def start_engine(command: str, job: Path, **env: str) -> subprocess.Popen:
    """The engine CLI on `job` in a session of its own (as the plugin starts it), with extra
    environment variables; its JSON events and messages are discarded."""
    return subprocess.Popen([sys.executable, "-m", "lcfusion.engine", "--events", "json",
                             command, str(job)], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for_partial(target: Path, pid: int, larger_than: int = 0,
                     process: subprocess.Popen | None = None) -> Path:
    """The temporary file process `pid` writes for `target`, once it is larger than
    `larger_than` bytes; fails if `process` ends first or nothing comes in time."""
    deadline = time.monotonic() + REACH_WITHIN
    while time.monotonic() < deadline:
        for partial in partial_files(target, pid):
            with contextlib.suppress(FileNotFoundError):
                if partial.stat().st_size > larger_than:
                    return partial
        if process is not None and process.poll() is not None:
            pytest.fail(f"the engine ended (exit {process.returncode}) before writing more "
                        f"than {larger_than} bytes of {target.name}: "
                        f"{process.stderr.read()[-2000:] if process.stderr else ''}")
        time.sleep(0.02)
    pytest.fail(f"no partial file of {target.name} larger than {larger_than} bytes within "
                f"{REACH_WITHIN:.0f} s")


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (as mount takes it: "64k") mounted on `folder` for the block; skips the
    test where mounting is not permitted (an unprivileged container, not root)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                               str(folder)], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        pytest.skip("no mount command: cannot make a small full disk (tmpfs)")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill a disk (needs root and mount permission): "
                    f"{done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def fill_disk(disk: Path, leave: int) -> Path:
    """Fill `disk` with a file, then free `leave` bytes of it; the file."""
    filler = disk / "filler.bin"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\xa5" * (64 << 10))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with open(filler, "r+b") as handle:
        handle.truncate(max(0, filler.stat().st_size - leave))
    return filler


IN_CREATE = 0x100
IN_MOVED_TO = 0x80
_EVENT = struct.Struct("iIII")


class CreationWatch:
    """New names in a folder as the kernel reports them (inotify): reacts within a fraction of
    a millisecond, where polling the folder would miss a short-lived file."""

    def __init__(self, folder: Path):
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            pytest.skip(f"inotify is not available: {os.strerror(ctypes.get_errno())}")
        if self._libc.inotify_add_watch(self.fd, str(folder).encode(),
                                        IN_CREATE | IN_MOVED_TO) < 0:
            os.close(self.fd)
            pytest.fail(f"cannot watch {folder}: {os.strerror(ctypes.get_errno())}")

    def next_names(self, timeout: float) -> list[str]:
        """The names created or moved in since the last call (waits up to `timeout` s)."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return []
        data, names = os.read(self.fd, 65536), []
        offset = 0
        while offset < len(data):
            _, _, _, length = _EVENT.unpack_from(data, offset)
            start = offset + _EVENT.size
            names.append(data[start:start + length].rstrip(b"\0").decode())
            offset = start + length
        return names

    def close(self) -> None:
        os.close(self.fd)
