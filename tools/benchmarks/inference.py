"""Figures 1-3: inference throughput, compute efficiency against the machine's float32 peak
(`limits`), and peak memory on a scene and on one with `scale` ** 2 times its pixels."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from rasterio.windows import Window
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.config import BenchConfig
from benchmarks.engine_runs import classify_job, run_engine
from benchmarks.limits import best_of, measure_peak
from benchmarks.scenes import SceneFiles
from lcfusion.engine.compute.devices import configure_threads
from lcfusion.engine.families.fgunet import commands as fgunet
from lcfusion.engine.families.mrfusion import commands as mrfusion
from lcfusion.engine.families.mrfusion.patches import DensePanMsPredictor
from lcfusion.engine.families.twinns import commands as twinns
from lcfusion.engine.families.twinns.patches import BatchedPatchPredictor
from lcfusion.engine.inference.tiling import TiledPredictor
from lcfusion.engine.io.series import SeriesSpec, TimeSeries
from lcfusion.engine.progress import NullReporter


def counted_flops(function, *args) -> int:
    """FLOPs of one call, counted by torch's FlopCounterMode (2 per multiply-add of the
    convolutions and matrix products; element-wise operations are not counted)."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        function(*args)
    return counter.get_total_flops()


#: Side of the core whose TWINNS FLOPs are counted: every pixel runs the same patch network.
TWINNS_COUNTED_SIDE = 16


def executed_flops(family: str, model_path: Path, scene: SceneFiles) -> dict:
    """FLOPs per map pixel with the default settings, counted around the predictor's own call
    on a tile it loaded from the scene (the shapes it executes): of the network (`network`)
    and as executed by the engine's tiling (`executed`, with the overlap of the tiles' margins
    or halos); RF: None."""
    cpu = torch.device("cpu")
    if family == "fgunet":
        _, model, _, normalizer = fgunet.load_fgunet(model_path, cpu)
        config = fgunet.FGUNetClassifyConfig()
        predictor = TiledPredictor(model, normalizer, cpu, config.tile_size, config.margin,
                                   config.tta)
        series = TimeSeries(SeriesSpec.from_json(scene.inputs(family)["series"]))
        height, width = series.height, series.width
        cores = list(predictor.cores(height, width))
        with series.open() as reader:
            tile = predictor.load(reader, cores[0])
        per_tile = counted_flops(predictor.infer, tile)
        side_h, side_w = tile[0].shape[-2:]
        return {"network": per_tile / (side_h * side_w),
                "executed": per_tile * len(cores) / (height * width),
                "how": f"FlopCounterMode around the predictor on one {side_h}x{side_w} tile"}
    if family == "mrfusion":
        _, model, _, normalizer = mrfusion.load_mrfusion(model_path, cpu)
        config = mrfusion.MRFusionClassifyConfig()
        predictor = DensePanMsPredictor(model, normalizer, cpu, config.tile_size, config.tta)
        pair = mrfusion.read_pair(scene.inputs(family))
        with pair.open() as reader:
            side = min(config.tile_size, pair.pan.height, pair.pan.width)
            loaded = predictor.load(reader, Window(0, 0, side, side))
        executed = counted_flops(predictor.infer, loaded) / side ** 2
        c = model.config
        pan = torch.zeros(1, 1, c.patch_size, c.patch_size)
        ms = torch.zeros(1, c.ms_channels, c.ms_patch_size, c.ms_patch_size)
        return {"network": executed, "executed": executed,
                "per_patch_network": counted_flops(model, pan, ms),
                "how": f"FlopCounterMode around the predictor's dense pass of one {side}x{side} "
                       "PAN tile"}
    if family == "twinns":
        metadata, model, _, normalizers = twinns.load_twinns(model_path, cpu)
        config = twinns.TWINNSClassifyConfig()
        predictor = BatchedPatchPredictor(model, normalizers, cpu, model.config.patch_size,
                                          config.tile_size, tta=config.tta)
        inputs = twinns.inputs_for_model(scene.inputs(family), metadata, NullReporter())
        side = min(TWINNS_COUNTED_SIDE, scene.side, scene.rows)
        with inputs.s1.open() as s1, inputs.s2.open() as s2:
            loaded = predictor.load([s1, s2], Window(0, 0, side, side))
        per_pixel = counted_flops(predictor.infer, loaded) / side ** 2
        return {"network": per_pixel, "executed": per_pixel,
                "how": f"FlopCounterMode around the predictor on a {side}x{side} core (one "
                       f"{model.config.patch_size}x{model.config.patch_size} patch network per "
                       "pixel)"}
    return {"network": None, "executed": None,
            "how": "not applicable: a forest makes comparisons, not floating-point "
                   "multiply-adds"}


def devices() -> list[torch.device]:
    return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available()
                                    else [])


def memory_settings(family: str, small: SceneFiles) -> dict:
    """Classification settings giving every scene tiles of one shape, a quarter of the small
    scene each (its 2 x 2 tiles), so that their peak memory differs by what grows with the
    raster only: with one tile, the small scene would be read without the next tile loading
    while one computes, as every larger scene is (`prefetched`)."""
    if family == "fgunet":
        margin = fgunet.FGUNetClassifyConfig.margin
        return {"device": "cpu", "tile_size": -(-(small.side // 2 + 2 * margin) // 4) * 4}
    if family == "mrfusion":
        return {"device": "cpu", "tile_size": round(small.pixels(family) ** 0.5) // 2}
    if family == "twinns":
        return {"device": "cpu", "tile_size": small.side // 2}
    return {"tile_size": small.side // 2}


def inference_figures(family: str, model: Path, small: SceneFiles, large: SceneFiles,
                      tall: SceneFiles, wide: SceneFiles, work: Path, config: BenchConfig
                      ) -> dict:
    """Throughput on the large scene with the default settings (per device) with its useful
    and executed GFLOP/s, the machine's peak measured just before and just after (the
    efficiencies are taken against the run's best, `add_efficiencies`) and the load, and
    the peak memory of the small scene and of the large, tall and wide ones (as many pixels
    each: added in rows and columns, in rows only, in columns only; the last two for the
    configuration's `shape_families`) classified with tiles of one shape."""
    flops = executed_flops(family, model, large)
    pixels = large.pixels(family)
    runs = {}
    for device in devices():
        settings = {} if family == "randomforest" else {"device": device.type}
        before, load_before = measure_peak(device, config), os.getloadavg()[0]
        run = run_engine(f"classify-{family}", classify_job(
            work / f"{family}-large-{device.type}", family, model, large, settings))
        after, load_after = measure_peak(device, config), os.getloadavg()[0]
        seconds = float(run.outputs["SECONDS"])
        entry = {"pixels": pixels, "seconds": seconds, "mpx_per_s": pixels / seconds / 1e6,
                 "overview_seconds": float(run.outputs["OVERVIEW_SECONDS"]),
                 "process_seconds": run.seconds, "peak_rss_mb": run.peak_rss_mb,
                 "peak_before": before, "peak_after": after,
                 "load_average": (load_before + load_after) / 2}
        if flops["network"] is not None:
            entry.update(useful_gflops=flops["network"] * pixels / seconds / 1e9,
                         executed_gflops=flops["executed"] * pixels / seconds / 1e9)
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


def machine_peaks(config: BenchConfig) -> dict[str, dict[str, float]]:
    """`measure_peak` on each device, with as many threads as the engine takes."""
    configure_threads(0)
    return {device.type: measure_peak(device, config) for device in devices()}


#: How many more times the machine's limit is measured, at most, while a family's executed
#: GFLOP/s exceed the best measurement so far (other work slowed the measurements).
LIMIT_RETRIES = 3


def run_peaks(start: dict[str, dict[str, float]], inference: dict, config: BenchConfig
              ) -> dict[str, dict[str, float]]:
    """Per device, the best of the peaks measured at the start and around every throughput
    run, measured again while a family executed more than it (`LIMIT_RETRIES`): the run's
    limit."""
    peaks = {device: best_of([first] + [m for figures in inference.values()
                                        for run in [figures["devices"].get(device)] if run
                                        for m in (run["peak_before"], run["peak_after"])])
             for device, first in start.items()}
    for _ in range(LIMIT_RETRIES):
        exceeded = {device for figures in inference.values()
                    for device, run in figures["devices"].items()
                    if run.get("executed_gflops", 0.0) > peaks[device]["peak"]}
        if not exceeded:
            break
        for device in exceeded:
            peaks[device] = best_of([peaks[device], measure_peak(torch.device(device), config)])
    return peaks


def add_efficiencies(inference: dict, peaks: dict[str, dict[str, float]]) -> None:
    """Each deep family's useful and executed GFLOP/s as fractions of the run's peak, and
    whether the run executed more than that limit (`limit_disturbed`: every measurement of
    the limit was slowed by other work, so the fractions are not the machine's)."""
    for figures in inference.values():
        for device, run in figures["devices"].items():
            if "useful_gflops" in run:
                limit = peaks[device]["peak"]
                run.update(efficiency=run["useful_gflops"] / limit,
                           executed_efficiency=run["executed_gflops"] / limit,
                           limit_disturbed=run["executed_gflops"] > limit)
