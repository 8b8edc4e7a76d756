"""Sample packs: what a training run needs from the rasters, packed into the job folder.

A pack is extracted where the rasters are and read where the training runs. It holds, for each
input array (a time series, PAN, MS, ...), only the blocks of pixels that patches around the
training and validation pixels can touch, as the readers returned them (masks, gap-filling and
features applied), in compressed chunk files; the labelled pixels; and ``pack.json`` with the
shape of every array, the SHA-256 of every file and the run's metadata. A `PackedArray` reads
windows from a pack exactly as the file readers read them from the rasters, edge mirroring
included, so training from a pack gives the same batches as training from the files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from rasterio.windows import Window

from ..errors import CancelledError, LcfusionError
from ..progress import Reporter
from ..wording import counted
from .rasters import reflect_indices

PACK_FILE = "pack.json"
PACK_VERSION = 1
BLOCK = 64
BLOCKS_PER_CHUNK = 16
#: Longest run of blocks read from the files in one window.
MAX_RUN = 16


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for piece in iter(lambda: stream.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


class ArrayShape(Protocol):
    height: int
    width: int
    n_channels: int


class WindowReader(Protocol):
    """Reads (channels, rows, cols) float32 windows, mirrored outside the array."""

    @property
    def series(self) -> ArrayShape: ...

    def read(self, window: Window) -> np.ndarray: ...


@dataclass(frozen=True)
class Boxes:
    """Inclusive pixel boxes (one per sample) that reads may touch, on a grid of given size."""

    row0: np.ndarray
    row1: np.ndarray
    col0: np.ndarray
    col1: np.ndarray

    @classmethod
    def around(cls, rows: np.ndarray, cols: np.ndarray, before: int, after: int,
               height: int, width: int) -> Boxes:
        """Boxes from ``start - before`` to ``start + after``, clipped to the grid: mirrored
        reads outside the grid stay inside the clipped box."""
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        return cls(np.clip(rows - before, 0, height - 1), np.clip(rows + after, 0, height - 1),
                   np.clip(cols - before, 0, width - 1), np.clip(cols + after, 0, width - 1))

    def blocks(self, height: int, width: int, block: int = BLOCK) -> np.ndarray:
        """(n, 2) block indices (block row, block col) that the boxes touch."""
        grid = np.zeros((-(-height // block), -(-width // block)), dtype=bool)
        spans = np.unique(np.stack([self.row0 // block, self.row1 // block,
                                    self.col0 // block, self.col1 // block], axis=1), axis=0)
        for r0, r1, c0, c1 in spans:
            grid[r0: r1 + 1, c0: c1 + 1] = True
        return np.argwhere(grid)


@dataclass(frozen=True)
class ArraySource:
    """An input array to pack: its shape and a reader of windows ((channels, h, w) arrays)."""

    name: str
    channels: int
    height: int
    width: int
    read: Callable[[Window], np.ndarray]
    boxes: Boxes


def _runs(block_rows: np.ndarray) -> Iterable[tuple[int, int, int]]:
    """(block row, first block col, last block col) runs of adjacent blocks, at most MAX_RUN."""
    for row in np.unique(block_rows[:, 0]):
        cols = np.sort(block_rows[block_rows[:, 0] == row, 1])
        start = previous = int(cols[0])
        for col in map(int, cols[1:]):
            if col != previous + 1 or col - start >= MAX_RUN:
                yield int(row), start, previous
                start = col
            previous = col
        yield int(row), start, previous


class PackWriter:
    """Writes the arrays, the pixel tables and ``pack.json`` of a pack in `folder`."""

    def __init__(self, folder: Path, block: int = BLOCK):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.block = block
        self.files: dict[str, str] = {}
        self.arrays: dict[str, dict] = {}
        self.content = hashlib.sha256()

    def _save(self, name: str, **arrays: np.ndarray) -> str:
        path = self.folder / f"{name}.npz"
        np.savez_compressed(path, **arrays)
        for key, array in arrays.items():
            self.content.update(f"{name}/{key}:{array.dtype}:{array.shape}".encode())
            self.content.update(np.ascontiguousarray(array).tobytes())
        self.files[path.name] = sha256_of(path)
        return path.name

    def add_array(self, source: ArraySource, reporter: Reporter) -> None:
        """Read the blocks the boxes touch from `source` and store them in chunk files."""
        b = self.block
        needed = source.boxes.blocks(source.height, source.width, b)
        chunks, index, data = [], [], []
        total, done = len(needed), 0
        for row, first, last in _runs(needed):
            top, left = row * b, first * b
            height = min(b, source.height - top)
            width = min((last + 1) * b, source.width) - left
            window = source.read(Window(left, top, width, height))
            for col in range(first, last + 1):
                tile = np.full((source.channels, b, b), np.nan, dtype=np.float32)
                part = window[:, :, (col - first) * b: (col - first + 1) * b]
                tile[:, : part.shape[1], : part.shape[2]] = part
                index.append((row, col))
                data.append(tile)
                if len(data) == BLOCKS_PER_CHUNK:
                    chunks.append(self._save(f"{source.name}-{len(chunks):05d}",
                                             index=np.array(index, dtype=np.int32),
                                             data=np.stack(data)))
                    index, data = [], []
            done += last - first + 1
            reporter.progress(done / total, f"packing {source.name}")
        if data:
            chunks.append(self._save(f"{source.name}-{len(chunks):05d}",
                                     index=np.array(index, dtype=np.int32), data=np.stack(data)))
        self.arrays[source.name] = {"channels": source.channels, "height": source.height,
                                    "width": source.width, "block": b, "blocks": total,
                                    "chunks": chunks}
        reporter.info(f"packed {source.name}: {total} blocks of {b} x {b} px x "
                      f"{source.channels} channels (of {source.height} x {source.width} px) "
                      f"in {counted(len(chunks), 'chunk')}")

    def add_table(self, name: str, **columns: np.ndarray) -> None:
        self._save(name, **columns)

    def finish(self, metadata: dict[str, Any]) -> int:
        """Write ``pack.json`` last (a pack without it is incomplete); returns the size of the
        pack's files in bytes."""
        manifest = {"version": PACK_VERSION, "files": self.files, "arrays": self.arrays,
                    "content_sha256": self.content.hexdigest(), "metadata": metadata}
        path = self.folder / PACK_FILE
        path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
        return sum((self.folder / name).stat().st_size for name in self.files)


class SamplePack:
    """A verified pack: its metadata, tables and arrays."""

    def __init__(self, folder: Path, parameter: str = "JOB"):
        self.folder = Path(folder)
        path = self.folder / PACK_FILE
        if not path.is_file():
            raise LcfusionError(f"{self.folder} holds no sample pack ({PACK_FILE} is missing); "
                                "the job was not prepared or its upload was incomplete",
                                parameter)
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LcfusionError(f"{path} is corrupt: {exc}", parameter) from None
        if int(manifest.get("version", 0)) > PACK_VERSION:
            raise LcfusionError(f"{path} needs a newer lcfusion engine", parameter)
        self.manifest = manifest
        self.metadata: dict[str, Any] = manifest["metadata"]
        self.parameter = parameter

    def verify(self, cancelled: Callable[[], bool] = lambda: False) -> None:
        """Every file present with its recorded SHA-256; otherwise a clear error."""
        for name, expected in self.manifest["files"].items():
            if cancelled():
                raise CancelledError()
            path = self.folder / name
            if not path.is_file():
                raise LcfusionError(f"the sample pack lacks {name}; stage the job again",
                                    self.parameter)
            if sha256_of(path) != expected:
                raise LcfusionError(f"the sample pack file {name} is corrupt (checksum "
                                    "mismatch); stage the job again", self.parameter)

    def table(self, name: str) -> dict[str, np.ndarray]:
        with np.load(self.folder / f"{name}.npz", allow_pickle=False) as data:
            return {key: data[key] for key in data.files}

    def array(self, name: str) -> PackedArray:
        if name not in self.manifest["arrays"]:
            raise LcfusionError(f"the sample pack has no array {name!r}", self.parameter)
        return PackedArray(self.folder, self.manifest["arrays"][name])


class PackedArray:
    """Windows of a packed array, as the file reader gave them (mirrored at the edges); it
    stands in for a reader (``read``) and for the series it reads (``height`` and so on)."""

    def __init__(self, folder: Path, entry: dict):
        self.n_channels, self.height, self.width = (int(entry["channels"]),
                                                    int(entry["height"]), int(entry["width"]))
        self.block = int(entry["block"])
        self._tiles: dict[tuple[int, int], np.ndarray] = {}
        for chunk in entry["chunks"]:
            with np.load(folder / chunk, allow_pickle=False) as data:
                for (row, col), tile in zip(data["index"], data["data"], strict=True):
                    self._tiles[int(row), int(col)] = tile

    @property
    def series(self) -> PackedArray:
        return self

    def read(self, window: Window) -> np.ndarray:
        rows = reflect_indices(int(window.row_off), int(window.height), self.height)
        cols = reflect_indices(int(window.col_off), int(window.width), self.width)
        b = self.block
        r0, c0 = int(rows.min()) // b * b, int(cols.min()) // b * b
        r1, c1 = int(rows.max()) // b, int(cols.max()) // b
        box = np.empty((self.n_channels, (r1 + 1) * b - r0, (c1 + 1) * b - c0),
                       dtype=np.float32)
        for row in range(r0 // b, r1 + 1):
            for col in range(c0 // b, c1 + 1):
                tile = self._tiles.get((row, col))
                if tile is None:
                    raise LcfusionError(f"the sample pack holds no data at block ({row}, "
                                        f"{col}); pack the job again")
                box[:, row * b - r0: (row + 1) * b - r0, col * b - c0: (col + 1) * b - c0] = tile
        return box[:, rows - r0][:, :, cols - c0]
