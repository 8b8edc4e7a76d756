"""Figures 1-3: inference throughput, compute efficiency against a large matmul, and peak
memory on a scene and on one with `scale` ** 2 times its pixels."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from rasterio.windows import Window
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.config import BenchConfig
from benchmarks.engine_runs import classify_job, run_engine
from benchmarks.scenes import SceneFiles
from lcfusion.engine.compute.devices import configure_threads
from lcfusion.engine.families.fgunet import commands as fgunet
from lcfusion.engine.families.mrfusion import commands as mrfusion
from lcfusion.engine.families.mrfusion.patches import DensePanMsPredictor
from lcfusion.engine.families.twinns import commands as twinns
from lcfusion.engine.inference.tiling import TiledPredictor
from lcfusion.engine.io.series import SeriesSpec, TimeSeries


def matmul_gflops(device: torch.device, size: int, repeats: int = 3) -> float:
    """GFLOP/s of a `size` x `size` float32 matrix product (2 n^3 FLOPs), the best of
    `repeats` after a warm-up: the machine's practical limit."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    best = float("inf")
    for attempt in range(repeats + 1):
        _synchronize(device)
        started = time.perf_counter()
        torch.matmul(a, b)
        _synchronize(device)
        if attempt:
            best = min(best, time.perf_counter() - started)
    return 2 * size ** 3 / best / 1e9


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def counted_flops(function, *args) -> int:
    """FLOPs of one call, counted by torch's FlopCounterMode (2 per multiply-add of the
    convolutions and matrix products; element-wise operations are not counted)."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        function(*args)
    return counter.get_total_flops()


def executed_flops(family: str, model_path: Path, scene: SceneFiles) -> dict:
    """FLOPs per map pixel with the default settings: of the network (`network`) and as
    executed by the engine's tiling (`executed`, with the overlap of the tiles' margins or
    halos); RF: None."""
    cpu = torch.device("cpu")
    if family == "fgunet":
        _, model, _, normalizer = fgunet.load_fgunet(model_path, cpu)
        config = fgunet.FGUNetClassifyConfig()
        predictor = TiledPredictor(model, normalizer, cpu, config.tile_size, config.margin)
        series = TimeSeries(SeriesSpec.from_json(scene.inputs(family)["series"]))
        height, width = series.height, series.width
        step_h, step_w = predictor.steps(height, width)
        side_h, side_w = step_h + 2 * config.margin, step_w + 2 * config.margin
        tile = torch.zeros(1, model.config.in_channels, side_h, side_w)
        per_tile = counted_flops(model, tile)
        tiles = len(list(predictor.cores(height, width)))
        network = per_tile / (side_h * side_w)
        return {"network": network, "executed": per_tile * tiles / (height * width),
                "how": f"FlopCounterMode over one {side_h}x{side_w} tile"}
    if family == "mrfusion":
        _, model, _, normalizer = mrfusion.load_mrfusion(model_path, cpu)
        tile_size = mrfusion.MRFusionClassifyConfig.tile_size
        predictor = DensePanMsPredictor(model, normalizer, cpu, tile_size)
        pair = mrfusion.read_pair(scene.inputs(family))
        with pair.open() as reader:
            side = min(tile_size, pair.pan.height, pair.pan.width)
            loaded = predictor.load(reader, Window(0, 0, side, side))
        executed = counted_flops(predictor.tile_logits, loaded) / side ** 2
        config = model.config
        pan = torch.zeros(1, 1, config.patch_size, config.patch_size)
        ms = torch.zeros(1, config.ms_channels, config.ms_patch_size, config.ms_patch_size)
        return {"network": executed, "executed": executed,
                "per_patch_network": counted_flops(model, pan, ms),
                "how": f"FlopCounterMode over the dense pass of one {side}x{side} PAN tile"}
    if family == "twinns":
        _, model, _, _ = twinns.load_twinns(model_path, cpu)
        c, batch = model.config, 64
        s1 = torch.zeros(batch, c.s1_dates * c.s1_channels, c.patch_size, c.patch_size)
        s2 = torch.zeros(batch, c.s2_dates * c.s2_channels, c.patch_size, c.patch_size)
        per_pixel = counted_flops(model, s1, s2) / batch
        return {"network": per_pixel, "executed": per_pixel,
                "how": f"FlopCounterMode over a batch of {batch} {c.patch_size}x"
                       f"{c.patch_size} patch pairs"}
    return {"network": None, "executed": None,
            "how": "not applicable: a forest makes comparisons, not floating-point "
                   "multiply-adds"}


def devices() -> list[torch.device]:
    return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available()
                                    else [])


def memory_settings(family: str, small: SceneFiles) -> dict:
    """Classification settings giving the small and the large scene tiles of one shape (the
    small scene's whole grid), so that their peak memory differs by what grows with the
    raster only."""
    if family == "fgunet":
        margin = fgunet.FGUNetClassifyConfig.margin
        return {"device": "cpu", "tile_size": -(-(small.side + 2 * margin) // 4) * 4}
    if family == "mrfusion":
        return {"device": "cpu", "tile_size": round(small.pixels(family) ** 0.5)}
    if family == "twinns":
        return {"device": "cpu", "tile_size": small.side}
    return {"tile_size": min(128, small.side)}


def inference_figures(family: str, model: Path, small: SceneFiles, large: SceneFiles,
                      tall: SceneFiles, wide: SceneFiles, work: Path, config: BenchConfig
                      ) -> dict:
    """Throughput on the large scene with the default settings (per device), efficiency
    against the matmul timed just before and just after (this machine's speed drifts), and
    the peak memory of the small scene and of the large, tall and wide ones (as many pixels
    each: added in rows and columns, in rows only, in columns only; the last two for the
    configuration's `shape_families`) classified with tiles of one shape."""
    flops = executed_flops(family, model, large)
    pixels = large.pixels(family)
    runs = {}
    for device in devices():
        settings = {} if family == "randomforest" else {"device": device.type}
        before = matmul_gflops(device, config.matmul_size)
        run = run_engine(f"classify-{family}", classify_job(
            work / f"{family}-large-{device.type}", family, model, large, settings))
        limit = (before + matmul_gflops(device, config.matmul_size)) / 2
        seconds = float(run.outputs["SECONDS"])
        entry = {"pixels": pixels, "seconds": seconds, "mpx_per_s": pixels / seconds / 1e6,
                 "overview_seconds": float(run.outputs["OVERVIEW_SECONDS"]),
                 "process_seconds": run.seconds, "peak_rss_mb": run.peak_rss_mb,
                 "matmul_gflops": limit}
        if flops["network"] is not None:
            useful = flops["network"] * pixels / seconds / 1e9
            executed = flops["executed"] * pixels / seconds / 1e9
            entry.update(useful_gflops=useful, executed_gflops=executed,
                         efficiency=useful / limit, executed_efficiency=executed / limit)
        runs[device.type] = entry
        if family == "randomforest":
            break
    settings = memory_settings(family, small)
    memory = {}
    shapes = ("tall", "wide") if family in config.shape_families else ()
    scenes = {"small": small, "large": large, "tall": tall, "wide": wide}
    for label in ("small", "large", *shapes):
        scene = scenes[label]
        run = run_engine(f"classify-{family}", classify_job(
            work / f"{family}-memory-{label}", family, model, scene, settings))
        memory[label] = {"side": scene.side, "rows": scene.rows, "pixels": scene.pixels(family),
                         "input_mb": scene.input_bytes(family) / 2 ** 20,
                         "peak_rss_mb": run.peak_rss_mb}
    return {"flops_per_pixel": flops, "devices": runs,
            "memory": {**memory, "tile_size": settings["tile_size"],
                       "pixel_ratio": memory["large"]["pixels"] / memory["small"]["pixels"],
                       "ratio": memory["large"]["peak_rss_mb"] / memory["small"]["peak_rss_mb"],
                       **{f"{label}_ratio": (memory[label]["peak_rss_mb"]
                                             / memory["small"]["peak_rss_mb"])
                          for label in shapes}}}


def machine_limits(config: BenchConfig) -> dict[str, float]:
    configure_threads(0)
    return {device.type: matmul_gflops(device, config.matmul_size) for device in devices()}

