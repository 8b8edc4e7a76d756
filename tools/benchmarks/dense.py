"""Figure 4: MRFusion's dense pass and TWINNS's batched tiles against the per-pixel patch loop
of the papers' code (each pixel's patches cut and run through the network, one at a time or
in batches of 64), on the same pixels, with the largest difference of their outputs. The loops
get every advantage the engine has: patches cut from memory, the same channels-last model."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from rasterio.windows import Window

from benchmarks.config import BenchConfig
from benchmarks.scenes import SceneFiles
from lcfusion.engine.families.mrfusion import commands as mrfusion
from lcfusion.engine.families.mrfusion.patches import DensePanMsPredictor, PatchPairs
from lcfusion.engine.families.twinns import commands as twinns
from lcfusion.engine.families.twinns.patches import BatchedPatchPredictor, GridPatches
from lcfusion.engine.progress import NullReporter
from lcfusion.engine.training.loop import logits_of

CPU = torch.device("cpu")
#: Patches held in memory by the loops, so that they are timed on their computation only.
IN_MEMORY = 1 << 34


def best_time(function: Callable[[], object], repeats: int) -> tuple[float, object]:
    """The shortest of `repeats` timings, and the function's value."""
    best, value = float("inf"), None
    for _ in range(max(repeats, 1)):
        started = time.perf_counter()
        value = function()
        best = min(best, time.perf_counter() - started)
    return best, value


def _loop(model: Callable, read: Callable, rows: np.ndarray, cols: np.ndarray,
          batch_size: int) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for start in range(0, rows.size, batch_size):
            inputs = read(rows[start: start + batch_size], cols[start: start + batch_size])
            out.append(logits_of(model(*(torch.from_numpy(x) for x in inputs))))
    return torch.cat(out).numpy()


def _figures(dense_seconds: float, dense_pixels: int, dense: np.ndarray,
             loops: dict[int, tuple[float, np.ndarray]], pixels: int, what: str) -> dict:
    per_pixel = dense_seconds / dense_pixels
    result = {"dense_pixels": dense_pixels, "dense_seconds": dense_seconds,
              "loop_pixels": pixels, "compared": what}
    for batch, (seconds, logits) in loops.items():
        result[f"loop_batch_{batch}"] = {
            "seconds": seconds, "speedup": seconds / pixels / per_pixel,
            "max_abs_difference": float(np.abs(logits - dense).max()),
            "same_class": float((logits.argmax(axis=1) == dense.argmax(axis=1)).mean())}
    return result


def mrfusion_dense(model_path: Path, scene: SceneFiles, config: BenchConfig) -> dict:
    _, model, _, normalizer = mrfusion.load_mrfusion(model_path, CPU)
    pair = mrfusion.read_pair(scene.inputs("mrfusion"))
    side = min(config.dense_tile, pair.pan.height, pair.pan.width)
    predictor = DensePanMsPredictor(model, normalizer, CPU, side)
    rng = np.random.default_rng(0)
    pick = rng.choice(side * side, size=min(config.loop_pixels, side * side), replace=False)
    rows, cols = np.divmod(pick, side)
    with pair.open() as reader:
        seconds, logits = best_time(lambda: predictor.tile_logits(
            predictor.load(reader, Window(0, 0, side, side))), config.repeats)
        dense = logits.numpy()[:, rows, cols].T
        pairs = PatchPairs.of(reader, normalizer, model.config.patch_size, IN_MEMORY)
        loops = {batch: best_time(lambda b=batch: _loop(predictor.model, pairs.read, rows, cols,
                                                         b), 1)
                 for batch in (1, 64)}
    return _figures(seconds, side * side, dense, loops, rows.size, "class scores")


def twinns_batched(model_path: Path, scene: SceneFiles, config: BenchConfig) -> dict:
    metadata, model, _, normalizers = twinns.load_twinns(model_path, CPU)
    inputs = twinns.inputs_for_model(scene.inputs("twinns"), metadata, NullReporter())
    side = min(config.dense_tile, inputs.s2.height, inputs.s2.width)
    predictor = BatchedPatchPredictor(model, normalizers, CPU, model.config.patch_size, side)
    rng = np.random.default_rng(0)
    pick = rng.choice(side * side, size=min(config.loop_pixels, side * side), replace=False)
    rows, cols = np.divmod(pick, side)
    with inputs.s1.open() as s1, inputs.s2.open() as s2:
        readers = [s1, s2]
        core = Window(0, 0, side, side)
        seconds, (probs, _) = best_time(lambda: predictor.infer(predictor.load(readers, core)),
                                        config.repeats)
        dense = probs[:, rows, cols].T
        patches = GridPatches(readers, normalizers, model.config.patch_size, IN_MEMORY)
        loops = {}
        for batch in (1, 64):
            loop_seconds, logits = best_time(lambda b=batch: _loop(
                predictor.model, patches.read, rows, cols, b), 1)
            loops[batch] = (loop_seconds, torch.softmax(torch.from_numpy(logits), 1).numpy())
    return _figures(seconds, side * side, dense, loops, rows.size, "class probabilities")
