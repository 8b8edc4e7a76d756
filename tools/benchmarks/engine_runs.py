"""Engine jobs for the bench: training and classification jobs, and runs of the engine CLI in
a child process with its wall time and peak resident memory."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.scenes import SceneFiles
from lcfusion.engine.jobs import write_job
from lcfusion.engine.modelfile.header import read_metadata

PEAK = Path(__file__).with_name("peak.py")
REFERENCE_FIELDS = {"layer": "reference", "class_field": "class_id", "name_field": "class_name"}
#: No test polygons: the bench's trainings give throughput figures and the models that the
#: inference figures classify with, never an accuracy, so none spends time evaluating one.
SPLIT = {"train": 0.75, "validation": 0.25, "test": 0.0, "seed": 3}


@dataclass(frozen=True)
class EngineRun:
    """A finished engine process: wall seconds, peak resident memory and its result."""

    seconds: float
    peak_rss_mb: float
    outputs: dict


def engine_command(command: str, job: Path) -> list[str]:
    return [sys.executable, "-m", "lcfusion.engine", "--events", "json", command, str(job)]


def run_engine(command: str, job: Path) -> EngineRun:
    """Run a job through the engine CLI in a child process, with its own peak memory."""
    report = job.parent / f"{command}.peak"
    argv = engine_command(command, job)
    seconds, outputs = run_measured([argv[0], str(PEAK), str(report), *argv[1:]],
                                    job.parent / f"{command}.log")
    return EngineRun(seconds, int(report.read_text()) / 1024.0, outputs)


def run_measured(argv: list[str], log: Path, env: dict[str, str] | None = None
                 ) -> tuple[float, dict]:
    """Run `argv` with its output in `log`: wall seconds and the outputs of its JSON result
    event, if any."""
    with open(log, "w", encoding="utf-8") as out:
        started = time.perf_counter()
        process = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                 check=False)
        seconds = time.perf_counter() - started
    text = log.read_text(encoding="utf-8", errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} ... failed ({process.returncode}):\n"
                           + text[-3000:])
    outputs = {}
    for line in text.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == "result":
                outputs = event.get("outputs") or {}
    return seconds, outputs


def train_job(folder: Path, family: str, scene: SceneFiles, settings: dict,
              compute: dict | None = None) -> Path:
    """A training job on `scene`'s reference polygons (the model goes to folder/model)."""
    sections = {"inputs": scene.inputs(family),
                "reference": {"path": str(scene.reference), **REFERENCE_FIELDS},
                "split": SPLIT, "settings": dict(settings),
                "outputs": {"model": str(folder / "model.lcfusion")}}
    if family == "randomforest":
        sections["settings"]["source"] = "s2"
    if compute:
        sections["compute"] = compute
    return write_job(folder, f"train-{family}", **sections)


def classify_job(folder: Path, family: str, model: Path, scene: SceneFiles,
                 settings: dict | None = None) -> Path:
    return write_job(folder, f"classify-{family}",
                     inputs={"model": str(model), **scene.inputs(family)},
                     settings=settings or {},
                     outputs={"class_map": str(folder / "map.tif"),
                              "confidence": str(folder / "confidence.tif")})


def samples_per_second(model: Path) -> float:
    return float(read_metadata(model)["training"]["samples_per_second"])
