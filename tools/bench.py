"""``make bench``: how fast and how lean lcfusion is, against naive code and against the
machine's own limit, in one run on sample scenes (no QGIS GUI; QGIS's own timings run in
child processes: ``qgis_process`` and ``render_in_qgis.py``).

Writes ``<output>/results.json`` and ``<output>/summary.md``. Comparisons are ratios of
timings taken side by side in this run; absolute seconds are context only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from benchmarks.config import FAMILIES, PRESETS, BenchConfig  # noqa: E402
from benchmarks.dense import mrfusion_dense, twinns_batched  # noqa: E402
from benchmarks.forest import forest_figures  # noqa: E402
from benchmarks.inference import (  # noqa: E402
    add_efficiencies,
    inference_figures,
    machine_peaks,
    run_peaks,
)
from benchmarks.portable import onnx_figures  # noqa: E402
from benchmarks.profiles import hot_operations  # noqa: E402
from benchmarks.qgis import qgis_figures  # noqa: E402
from benchmarks.ranks import rank_figures  # noqa: E402
from benchmarks.reading import reading_figures  # noqa: E402
from benchmarks.rendering import overview_share, render_figures  # noqa: E402
from benchmarks.scenes import scene  # noqa: E402
from benchmarks.summary import DISTURBED, summary  # noqa: E402
from benchmarks.training import train_forest, training_figures  # noqa: E402


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version()}


def targets(results: dict) -> dict[str, str]:
    """Each target's measured figure, with whether it is met."""
    def verdict(value: float, met: bool, text: str) -> str:
        return f"{text.format(value)} ({'met' if met else 'missed'})"

    fgunet = results["inference"]["fgunet"]["devices"]["cpu"]
    dense = results["dense"]["mrfusion"]["loop_batch_64"]["speedup"]
    memory = max(f["memory"]["ratio"] for f in results["inference"].values())
    tall, wide = (max(f["memory"][f"{shape}_ratio"] for f in results["inference"].values()
                      if f"{shape}_ratio" in f["memory"]) for shape in ("tall", "wide"))
    reading = results["reading"]["ratio"]
    forest = results["forest"]
    out = {"efficiency": verdict(fgunet["efficiency"], fgunet["efficiency"] >= 0.6, "{:.2f}")
           + f"; executed {fgunet['executed_efficiency']:.2f}"
           + (f"; {DISTURBED}" if fgunet["limit_disturbed"] else ""),
           "dense": verdict(dense, dense >= 50, "{:.0f}x"),
           "memory": verdict(max(memory, tall, wide), max(memory, tall, wide) <= 1.1,
                             "{:.2f} (worst family and shape)")
           + f"; rows and columns {memory:.2f}, rows only {tall:.2f}, columns only {wide:.2f}",
           "reading": verdict(reading, reading <= 1.3, "{:.2f}x"),
           "forest": verdict(forest["vs_sklearn"], forest["vs_sklearn"] >= 1 / 1.5,
                             "{:.2f}x scikit-learn's speed")
           + "; " + verdict(forest["speedup_vs_numpy"], forest["speedup_vs_numpy"] >= 10,
                            "{:.1f}x the numpy path")}
    qgis = results["qgis"]
    out["qgis"] = (qgis["skipped"] if "skipped" in qgis else verdict(
        100 * qgis["overhead"], qgis["overhead"] < 0.05,
        "{:.1f} %" + f" on a {qgis['cli_seconds']:.0f} s run"))
    render = results["render"]
    out["render"] = (render["skipped"] if "skipped" in render else verdict(
        render["seconds"]["with"], render["seconds"]["with"] < 1.0,
        "{:.2f} s" + f" at {render['side']:,} px ({render['seconds']['without']:.2f} s "
        f"without overviews, {render['ratio']:.1f}x)"))
    out.update(rank_targets(results["ranks"], verdict))
    return out


def rank_targets(ranks: dict, verdict: Callable[[float, bool, str], str]) -> dict[str, str]:
    """The scaling ratio (mpirun, then Slurm) and the resume's time saved."""
    parts = [verdict(ranks[f"{kind}_ratio"], ranks[f"{kind}_ratio"] >= 1.8,
                     "{:.2f}x " + label)
             for kind, label in (("mpi", "mpirun"), ("slurm", "Slurm"))
             if f"{kind}_ratio" in ranks]
    if "slurm_skipped" in ranks:
        parts.append(f"Slurm {ranks['slurm_skipped']}")
    resume = ranks["resume"]
    return {"ranks": "; ".join(parts) if "mpi_ratio" in ranks
            else "not timed (1 rank only); " + "; ".join(parts),
            "resume": verdict(resume["saved_seconds"], resume["saved_seconds"] > 0,
                              "{:.1f} s" + f" ({100 * resume['saved_share']:.0f} %; "
                              f"{resume['kept']} of {resume['blocks']} blocks reused)")}


def run(config: BenchConfig, work: Path, log) -> dict:
    started = time.monotonic()
    results: dict = {"config": config.name, "machine": machine()}
    log("machine limit: a large float32 sgemm and convolution")
    start_peaks = machine_peaks(config)
    training_scene = scene(work / "scenes", config.train_side, seed=11)
    results["training"], models = {}, {}
    for family in FAMILIES[:3]:
        log(f"training throughput: {family}, local"
            f"{' and mpirun 1 and 2 ranks' if family in config.mpi_families else ''}")
        results["training"][family], models[family] = training_figures(
            family, training_scene, work / "training", config)
    models["randomforest"] = train_forest(training_scene, work / "training", config)
    results["inference"], results["dense"], results["profiles"] = {}, {}, {}
    for family in FAMILIES:
        small = scene(work / "scenes", config.sides[family])
        large = scene(work / "scenes", config.sides[family] * config.scale)
        tall = scene(work / "scenes", small.side, rows=small.side * config.scale ** 2)
        wide = scene(work / "scenes", small.side * config.scale ** 2, rows=small.side)
        log(f"inference: {family} on scenes of {small.side}, {large.side}, {tall.side} x "
            f"{tall.rows} and {wide.side} x {wide.rows} pixels")
        results["inference"][family] = inference_figures(
            family, models[family], small, large, tall, wide, work / "inference", config)
        if family != "randomforest":
            results["profiles"][family] = hot_operations(family, models[family], large,
                                                         config.dense_tile)
    results["peak_gflops"] = run_peaks(start_peaks, results["inference"], config)
    add_efficiencies(results["inference"], results["peak_gflops"])
    log("Random Forest prediction: the engine, scikit-learn with n_jobs=-1, the numpy path")
    results["forest"] = forest_figures(
        training_scene, scene(work / "scenes", config.sides["randomforest"]), config)
    dense_scene = scene(work / "scenes", config.sides["mrfusion"] * config.scale)
    log("dense and batched inference vs the per-pixel patch loop")
    results["dense"] = {"mrfusion": mrfusion_dense(models["mrfusion"], dense_scene, config),
                        "twinns": twinns_batched(models["twinns"], dense_scene, config)}
    log("reading: tile reader vs plain rasterio read")
    results["reading"] = reading_figures(scene(work / "scenes", config.io_side), config)
    log("onnxruntime vs PyTorch on the CPU, per family")
    results["onnx"] = onnx_figures(
        models, {family: scene(work / "scenes", config.sides[family] * config.scale)
                 for family in config.onnx_families}, work / "onnx")
    log("qgis_process vs the engine CLI")
    results["qgis"] = qgis_figures(models["mrfusion"], scene(work / "scenes", config.qgis_side),
                                   work / "qgis", config)
    log(f"QGIS rendering a {config.render_side}-pixel class map zoomed out, with and without "
        "overviews")
    results["render"] = render_figures(config, work / "render")
    if "skipped" not in results["render"]:
        results["render"]["overview_share"] = overview_share(results["render"],
                                                             results["inference"])
    area = config.rank_scene * config.rank_copies
    log(f"classification on ranks: FG-UNET over {area} x {area} pixels, here and on "
        f"{' and '.join(map(str, config.rank_counts))} rank(s) (mpirun"
        f"{', Slurm' if config.rank_slurm else ''}); a killed rank and the rerun")
    results["ranks"] = rank_figures(models["fgunet"], scene(work / "scenes", config.rank_scene),
                                    work / "ranks", config)
    results["targets"] = targets(results)
    results["seconds"] = time.monotonic() - started
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("bench"))
    parser.add_argument("--config", choices=sorted(PRESETS), default="default")
    parser.add_argument("--keep", action="store_true", help="keep the scenes and runs")
    args = parser.parse_args()
    # Absolute: the engine resolves a job's relative paths against the job's own folder.
    args.output = args.output.resolve()
    args.output.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="work-", dir=args.output))

    def log(message: str) -> None:
        print(f"[bench] {message}", flush=True)

    try:
        results = run(PRESETS[args.config], work, log)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    (args.output / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    text = summary(results)
    (args.output / "summary.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
