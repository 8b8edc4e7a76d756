"""Steps every classify command shares, without torch (the ONNX classifications run them in
an environment without it): the model and maps of a job, writing the maps and what goes back
to the plugin."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LcfusionError
from ..inference.blocks import BLOCK_PIXELS, write_blocks
from ..inference.classifying import ValueMap, write_class_map
from ..inference.tiles import TilePredictor
from ..io.outputs import check_writable
from ..io.overviews import overview_factors
from ..io.rasters import Grid
from ..jobs import Job
from ..progress import Reporter
from ..reference.classes import ClassTable
from ..wording import counted


@dataclass(frozen=True)
class MapOutputs:
    """The class map and optional confidence map to write; `cog`: as Cloud Optimized
    GeoTIFFs (``outputs.cog``) rather than plain tiled ones (both with overviews). A rank of
    a classification on a compute target writes its share of the `blocks` into that folder
    instead (``outputs.blocks``; ``outputs.confidence`` true for the confidence too)."""

    class_map: Path
    confidence: Path | None = None
    cog: bool = False
    blocks: Path | None = None
    block_pixels: int = BLOCK_PIXELS


def written_wording(maps: MapOutputs, grid: Grid, finishing: float) -> tuple[str, str]:
    """How the log names the maps written ("X" or "X, confidence Y") and what finishing them
    took: their overviews (and COG copies), or none for a map that small."""
    paths = str(maps.class_map) + (f", confidence {maps.confidence}" if maps.confidence else "")
    copies = f"Cloud Optimized GeoTIFF {finishing:.1f} s" if maps.cog else ""
    if not overview_factors(grid.width, grid.height):
        too_small = f"no overviews at {grid.width} x {grid.height} pixels"
        return paths, f"{copies}, {too_small}" if copies else too_small
    overviews = "overviews and Cloud Optimized GeoTIFF" if maps.cog else "overviews"
    return paths, f"{overviews} {finishing:.1f} s"


def map_outputs(job: Job) -> MapOutputs:
    """The maps to write, checked before any work starts."""
    outputs = job.section("outputs")
    blocks = job.resolve(outputs.get("blocks"))
    if blocks is not None:
        return MapOutputs(blocks / "map.tif", blocks / "confidence.tif"
                          if outputs.get("confidence") else None, blocks=blocks,
                          block_pixels=int(outputs.get("block_pixels") or BLOCK_PIXELS))
    class_map = job.resolve(outputs.get("class_map"))
    confidence = job.resolve(outputs.get("confidence"))
    if class_map is None:
        raise LcfusionError("no output class map given", "OUTPUT")
    check_writable(class_map, "OUTPUT")
    if confidence:
        check_writable(confidence, "OUTPUT_CONFIDENCE")
        if confidence.resolve() == class_map.resolve():
            raise LcfusionError("the confidence map and the class map must be different files",
                                "OUTPUT_CONFIDENCE")
    cog = outputs.get("cog", False)
    if not isinstance(cog, bool):
        raise LcfusionError(f"must be true or false, got {cog!r}", "COG")
    return MapOutputs(class_map, confidence, cog)


def model_input(job: Job) -> Path:
    path = job.resolve(job.section("inputs").get("model"))
    if path is None:
        raise LcfusionError("no model file given", "MODEL")
    return path


def report_precision(predictor: TilePredictor, reporter: Reporter) -> None:
    """Say what the check of bfloat16 against float32 on a GPU's first tile found (a
    `CheckedPrecision` predictor that ran it)."""
    check = getattr(predictor, "precision_check", None)
    if check is not None:
        reporter.info(check.describe())


def classify_to_files(predictor: TilePredictor, reader: Any, grid: Grid, classes: ClassTable,
                      maps: MapOutputs, model_path: Path, family: str,
                      reporter: Reporter, value_map: ValueMap | None = None) -> dict:
    """Write the class map (+ confidence, + `value_map`), log the speed, return the outputs for
    the plugin (``SECONDS`` in all, ``OVERVIEW_SECONDS`` of them for the overviews and COG
    copies; for a value map, under its parameter + ``_BANDS``, each band's description, tags,
    mean, minimum and maximum). A rank on a compute target writes its blocks instead."""
    started = time.monotonic()
    tags = {"LCFUSION_MODEL": model_path.name, "LCFUSION_FAMILY": family}
    if maps.blocks is not None:
        from ..compute.distributed import mpi_ranks  # torch: only a rank on a target gets here

        ranks, _ = mpi_ranks()
        count = write_blocks(predictor, reader, grid, classes, maps.blocks,
                             maps.confidence is not None, tags, ranks, reporter,
                             maps.block_pixels)
        report_precision(predictor, reporter)
        return {"BLOCKS": count, "SECONDS": time.monotonic() - started}
    written = write_class_map(
        predictor, reader, grid, classes, maps.class_map, maps.confidence, reporter,
        tags=tags, cog=maps.cog, value_map=value_map)
    report_precision(predictor, reporter)
    seconds = time.monotonic() - started
    pixels = grid.width * grid.height
    speed = round(pixels / max(seconds, 1e-9))
    paths, finish_note = written_wording(maps, grid, written.finish_seconds)
    reporter.info(f"class map written to {paths} "
                  f"({counted(pixels, 'pixel', thousands=True)} in {seconds:.1f} s, "
                  f"{counted(speed, 'pixel', thousands=True)} per second; {finish_note})")
    result = {"OUTPUT": str(maps.class_map), "CLASSES": classes.to_json(), "SECONDS": seconds,
              "OVERVIEW_SECONDS": written.finish_seconds}
    if maps.confidence:
        result["OUTPUT_CONFIDENCE"] = str(maps.confidence)
    if value_map is not None:
        result[value_map.parameter] = str(value_map.target)
        result[value_map.parameter + "_BANDS"] = [
            {"description": description, "tags": tags, "mean": mean, "min": minimum,
             "max": maximum}
            for description, tags, mean, minimum, maximum in zip(
                value_map.descriptions, value_map.band_tags, *written.value_statistics,
                strict=True)]
    return result
