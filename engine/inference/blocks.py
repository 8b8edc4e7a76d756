"""A classification cut into blocks for the ranks of a compute target, and the blocks merged
back into the maps.

A block is a run of the predictor's cores along one row of cores, so every rank computes the
very cores (tiles with their margins) a local run computes and the merged map equals the local
one. Each rank writes each of its blocks as a GeoTIFF of its own (the class map, and the
confidence if asked for) under a temporary name, then renames it: a block file that exists is
complete, and a rerun of the job classifies only the missing blocks. Rank 0 writes the layout
(the grid, the classes, the tags and the blocks' windows) that the merge needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rasterio
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from ..errors import LcfusionError
from ..io.outputs import RasterOutput
from ..io.rasters import Grid
from ..progress import Reporter
from ..reference.classes import ClassTable
from ..wording import counted
from .classifying import BandStatistics, classifying, map_values, open_maps, write_maps
from .tiles import TilePredictor

if TYPE_CHECKING:
    from ..compute.distributed import Ranks

LAYOUT_FILE = "layout.json"
#: The name of a finished block's class map (`MapBlock.path`).
BLOCK_FILE = re.compile(r"block-[0-9]{5}\.tif")
#: The pixels of a block at most (unless one core holds more): a few blocks per rank on a
#: Sentinel-2 tile, each a file of a few megabytes.
BLOCK_PIXELS = 2048 * 2048
#: How often rank 0 reports the tiles finished by all ranks while it waits for the others.
WAIT_SECONDS = 0.5
#: Each rank's note of the tiles it has finished of the block it is writing ("block tiles"),
#: which rank 0 adds to the finished blocks' tiles for the progress of all ranks, and the
#: name a note is written under before it replaces the last one.
TILES_FILE, TILES_PARTIAL = ".tiles-rank-{}", ".partial-tiles-rank-{}"


@dataclass(frozen=True)
class MapBlock:
    """A block: its window on the map and the predictor's cores it holds."""

    index: int
    window: Window
    cores: tuple[Window, ...]

    def path(self, folder: Path, confidence: bool = False) -> Path:
        return folder / f"block-{self.index:05d}{'-confidence' if confidence else ''}.tif"


def map_blocks(cores: list[Window], max_pixels: int = BLOCK_PIXELS) -> list[MapBlock]:
    """The cores (row-major windows) grouped into blocks: consecutive cores of one row of
    cores, at most `max_pixels` a block (a larger core is a block of its own)."""
    blocks: list[MapBlock] = []
    run: list[Window] = []

    def close_run() -> None:
        if run:
            first, last = run[0], run[-1]
            window = Window(first.col_off, first.row_off,
                            last.col_off + last.width - first.col_off, first.height)
            blocks.append(MapBlock(len(blocks), window, tuple(run)))
            run.clear()

    for core in cores:
        pixels = sum(int(c.width * c.height) for c in run) + int(core.width * core.height)
        if run and (core.row_off != run[0].row_off or pixels > max_pixels):
            close_run()
        run.append(core)
    close_run()
    return blocks


def block_grid(grid: Grid, window: Window) -> Grid:
    """The grid of `window` of `grid`."""
    affine = window_transform(window, grid.affine())
    return Grid(grid.crs_wkt, affine.to_gdal(), int(window.width), int(window.height))


def write_layout(folder: Path, grid: Grid, classes: ClassTable, blocks: list[MapBlock],
                 tags: dict[str, str]) -> None:
    """What the merge needs to know, written atomically."""
    layout = {"grid": {"crs_wkt": grid.crs_wkt, "transform": list(grid.transform),
                       "width": grid.width, "height": grid.height},
              "classes": classes.to_json(), "tags": tags,
              "blocks": [[int(b.window.col_off), int(b.window.row_off), int(b.window.width),
                          int(b.window.height)] for b in blocks]}
    partial = folder / f".{LAYOUT_FILE}.partial"
    partial.write_text(json.dumps(layout), encoding="utf-8")
    os.replace(partial, folder / LAYOUT_FILE)


def write_block(predictor: TilePredictor, reader: Any, grid: Grid, classes: ClassTable,
                block: MapBlock, folder: Path, confidence: bool,
                tags: dict[str, str], on_tile: Callable[[int], None] = lambda done: None
                ) -> None:
    """Classify one block into its file(s): temporary names first, the class map renamed
    last, so that its file exists only once the block is complete. `on_tile(done)` follows
    each tile written."""
    here = block_grid(grid, block.window)
    finals = [block.path(folder)] + ([block.path(folder, True)] if confidence else [])
    partials = [path.with_name(f".{path.name}.partial") for path in finals]
    try:
        with contextlib.ExitStack() as stack:
            opened = open_maps(stack, here, classes, partials, tags, block.window)
            inferred = stack.enter_context(classifying(predictor, reader, list(block.cores),
                                                       grid.height, grid.width))
            for done, (core, probs, valid) in enumerate(inferred, start=1):
                window = Window(core.col_off - block.window.col_off,
                                core.row_off - block.window.row_off, core.width, core.height)
                for band, values in zip(opened, map_values(probs, valid, classes),
                                        strict=False):
                    band.write(values, 1, window=window)
                on_tile(done)
        for partial, final in reversed(list(zip(partials, finals, strict=True))):
            os.replace(partial, final)
    finally:
        for partial in partials:
            partial.unlink(missing_ok=True)


def tiles_done(blocks: list[MapBlock], folder: Path) -> int:
    """The tiles of the finished blocks, and those the ranks have finished of the blocks they
    are writing (`TILES_FILE`; a block finished meanwhile is counted once)."""
    noted = []
    for path in folder.glob(TILES_FILE.format("*")):
        try:
            index, tiles = (int(word) for word in path.read_text(encoding="ascii").split())
        except (OSError, ValueError):  # removed while read
            continue
        if 0 <= index < len(blocks):
            noted.append((index, min(tiles, len(blocks[index].cores))))
    # After the notes: a block finished since is counted whole, not in neither.
    finished = {block.index for block in blocks if block.path(folder).exists()}
    return (sum(len(blocks[index].cores) for index in finished)
            + sum(tiles for index, tiles in noted if index not in finished))


def write_blocks(predictor: TilePredictor, reader: Any, grid: Grid, classes: ClassTable,
                 folder: Path, confidence: bool, tags: dict[str, str], ranks: Ranks,
                 reporter: Reporter, max_pixels: int = BLOCK_PIXELS) -> int:
    """This rank's share of the blocks missing from `folder`: rank 0 lists the missing blocks
    and each rank takes every size-th of them from its rank on. Each rank notes the tiles it
    has finished of its current block (`TILES_FILE`), and rank 0 reports the progress of all
    ranks by tiles, after each of its own tiles and while it waits for the others, until every
    rank is done. Returns the block count."""
    folder.mkdir(parents=True, exist_ok=True)
    blocks = map_blocks(list(predictor.cores(grid.height, grid.width)), max_pixels)
    total = sum(len(block.cores) for block in blocks)
    mine_file = folder / TILES_FILE.format(ranks.rank)
    missing = None
    if ranks.leader:
        for pattern in (TILES_FILE, TILES_PARTIAL):  # a killed run's
            for stale in folder.glob(pattern.format("*")):
                stale.unlink(missing_ok=True)
        write_layout(folder, grid, classes, blocks, tags)
        missing = [block.index for block in blocks if not block.path(folder).exists()]
        done = len(blocks) - len(missing)
        reporter.info(f"{counted(len(blocks), 'block')} of at most "
                      f"{counted(max_pixels, 'pixel', thousands=True)}; "
                      + (f"{done} already written by an earlier run, " if done else "")
                      + f"{len(missing)} to classify on {counted(ranks.size, 'rank')}")
    mine = ranks.broadcast(missing)[ranks.rank::ranks.size]

    def report() -> None:
        if ranks.leader:
            reporter.progress(tiles_done(blocks, folder) / total, "classifying blocks")

    for index in mine:
        def note(done: int, index: int = index) -> None:
            partial = folder / TILES_PARTIAL.format(ranks.rank)
            partial.write_text(f"{index} {done}", encoding="ascii")
            os.replace(partial, mine_file)
            report()

        write_block(predictor, reader, grid, classes, blocks[index], folder, confidence, tags,
                    note)
    mine_file.unlink(missing_ok=True)
    report()
    if ranks.comm is not None:
        waiting = ranks.comm.Ibarrier()
        while not waiting.Test():
            report()
            time.sleep(WAIT_SECONDS)
    return len(blocks)


def read_layout(folder: Path) -> dict:
    try:
        return json.loads((folder / LAYOUT_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise LcfusionError(f"the classification's blocks in {folder} have no readable "
                            f"layout: {exc}", "COMPUTE") from None


def merge_blocks(folder: Path, class_map: Path, confidence: Path | None, cog: bool,
                 reporter: Reporter) -> tuple[Grid, ClassTable, float]:
    """The blocks of `folder` written into the class map (+ confidence) through the same
    checked, atomic path as a local classification (colour table, class tags, overviews,
    COG). Returns the grid, the classes and the seconds the overviews took."""
    layout = read_layout(folder)
    grid = Grid(**{**layout["grid"], "transform": tuple(layout["grid"]["transform"])})
    classes = ClassTable.from_json(layout["classes"])
    blocks = [MapBlock(index, Window(*window), ()) for index, window in
              enumerate(layout["blocks"])]
    absent = [block.index for block in blocks if not block.path(folder).exists()]
    if absent:
        raise LcfusionError(f"{counted(len(absent), 'block')} of the classification are "
                            f"missing from {folder}; run the algorithm again to classify them",
                            "COMPUTE")

    def fill(outputs: list[RasterOutput], values: RasterOutput | None,
             span: Reporter) -> BandStatistics:
        with contextlib.ExitStack() as stack:
            opened = open_maps(stack, grid, classes, [each.temporary for each in outputs],
                               layout["tags"])
            for block in blocks:
                for which, band in enumerate(opened):
                    with rasterio.open(block.path(folder, which == 1)) as source:
                        band.write(source.read(1), 1, window=block.window)
                span.progress((block.index + 1) / len(blocks), "merging blocks")
        return BandStatistics()

    written = write_maps(grid, class_map, confidence, fill, reporter, cog)
    return grid, classes, written.finish_seconds
