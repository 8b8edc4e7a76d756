"""The hot operations of each deep family's inference on one tile (torch.profiler)."""

from __future__ import annotations

from pathlib import Path

import torch
from rasterio.windows import Window

from benchmarks.scenes import SceneFiles
from lcfusion.engine.families.fgunet import commands as fgunet
from lcfusion.engine.families.mrfusion import commands as mrfusion
from lcfusion.engine.families.mrfusion.patches import DensePanMsPredictor
from lcfusion.engine.families.twinns import commands as twinns
from lcfusion.engine.families.twinns.patches import BatchedPatchPredictor
from lcfusion.engine.inference.tiling import TiledPredictor
from lcfusion.engine.io.series import SeriesSpec, TimeSeries
from lcfusion.engine.progress import NullReporter

CPU = torch.device("cpu")


def _tile_call(family: str, model_path: Path, scene: SceneFiles, side: int):
    """A function computing one loaded tile, and the tile: FG-UNET's first tile as it
    classifies the scene, the others' first `side` x `side` tile."""
    core = Window(0, 0, side, side)
    if family == "fgunet":
        _, model, _, normalizer = fgunet.load_fgunet(model_path, CPU)
        predictor = TiledPredictor(model, normalizer, CPU)
        series = TimeSeries(SeriesSpec.from_json(scene.inputs(family)["series"]))
        with series.open() as reader:
            return predictor.infer, predictor.load(reader, core)
    if family == "mrfusion":
        _, model, _, normalizer = mrfusion.load_mrfusion(model_path, CPU)
        predictor = DensePanMsPredictor(model, normalizer, CPU, side)
        with mrfusion.read_pair(scene.inputs(family)).open() as reader:
            return predictor.infer, predictor.load(reader, core)
    metadata, model, _, normalizers = twinns.load_twinns(model_path, CPU)
    inputs = twinns.inputs_for_model(scene.inputs(family), metadata, NullReporter())
    predictor = BatchedPatchPredictor(model, normalizers, CPU, model.config.patch_size, side)
    with inputs.s1.open() as s1, inputs.s2.open() as s2:
        return predictor.infer, predictor.load([s1, s2], core)


def hot_operations(family: str, model_path: Path, scene: SceneFiles, side: int,
                   top: int = 6) -> list[dict]:
    """The `top` operations by own CPU time over one tile, with their share."""
    call, tile = _tile_call(family, model_path, scene, side)
    call(tile)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        call(tile)
    events = sorted(profile.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [{"operation": e.key, "share": e.self_cpu_time_total / total,
             "calls": e.count} for e in events[:top]]
