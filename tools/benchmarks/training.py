"""Figure 5: training throughput (samples per second) of each deep family in this process
(local), there also in float32 where the engine trains in bfloat16 autocast (a GPU, a CPU with
AVX-512 BF16 or AMX), and through mpirun with 1 and 2 ranks on this machine (Gloo; the cores
shared out between the ranks)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from benchmarks.config import BenchConfig
from benchmarks.engine_runs import run_engine, samples_per_second, train_job
from benchmarks.scenes import SceneFiles
from lcfusion.engine.compute.devices import autocast_dtype, resolve_device

DEEP = ("fgunet", "mrfusion", "twinns")
#: mpirun lets each rank use its share of the cores instead of binding it to one core.
MPIRUN_ARGS = ("--oversubscribe", "--bind-to", "none")


def mpi_compute(ranks: int, work: Path) -> dict:
    """The job's compute section (as the plugin writes it) for `ranks` ranks here."""
    arguments = list(MPIRUN_ARGS)
    if os.geteuid() == 0:
        arguments.insert(0, "--allow-run-as-root")
    return {"name": f"mpi{ranks}", "kind": "mpi", "ranks": ranks, "python": sys.executable,
            "mpirun_args": arguments, "work_dir": str(work)}


def training_figures(family: str, scene: SceneFiles, work: Path,
                     config: BenchConfig) -> tuple[dict, Path]:
    """Samples per second locally (in float32 too where the engine trains in bfloat16
    autocast on the training's device) and, for the configuration's MPI families, with 1 and 2
    MPI ranks; the local run's model."""
    settings = config.training[family]
    figures: dict = {}
    local_model = None
    runs = [("local", None, settings)]
    if autocast_dtype(resolve_device(settings.get("device", "auto"))) is not None:
        runs.append(("local_float32", None, {**settings, "mixed_precision": False}))
    else:
        figures["float32_not_timed"] = ("the training device has no native bfloat16 (a CPU "
                                        "without AVX-512 BF16 or AMX), so the engine trains "
                                        "in float32 already")
    if family in config.mpi_families:
        runs += [("mpi_1", mpi_compute(1, work / "stage"), settings),
                 ("mpi_2", mpi_compute(2, work / "stage"), settings)]
    for label, compute, run_settings in runs:
        folder = work / f"train-{family}-{label}"
        job = train_job(folder, family, scene, run_settings, compute)
        run = run_engine(f"train-{family}", job)
        model = Path(run.outputs["OUTPUT_MODEL"])
        figures[label] = {"samples_per_s": samples_per_second(model),
                          "process_seconds": run.seconds}
        local_model = local_model or model
    if "local_float32" in figures:
        figures["bfloat16_vs_float32"] = (figures["local"]["samples_per_s"]
                                          / figures["local_float32"]["samples_per_s"])
    if family not in config.mpi_families:
        return figures, local_model
    local = figures["local"]["samples_per_s"]
    for label in ("mpi_1", "mpi_2"):
        figures[label]["vs_local"] = figures[label]["samples_per_s"] / local
    figures["mpi_2_vs_mpi_1"] = (figures["mpi_2"]["samples_per_s"]
                                 / figures["mpi_1"]["samples_per_s"])
    return figures, local_model


def train_forest(scene: SceneFiles, work: Path, config: BenchConfig) -> Path:
    folder = work / "train-randomforest"
    run = run_engine("train-randomforest", train_job(folder, "randomforest", scene,
                                                      config.training["randomforest"]))
    return Path(run.outputs["OUTPUT_MODEL"])
