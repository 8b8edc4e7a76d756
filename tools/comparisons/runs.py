"""Training one model on one seeded split of a set, as a user's train job, and pairing the
test pixels of a deep model and its Random Forest."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from lcfusion.engine.cli import job_command
from lcfusion.engine.families.repeats import run_training
from lcfusion.engine.jobs import Job, write_job
from lcfusion.engine.progress import JsonLinesReporter

from .datasets import LabelledSet

METRICS = ("OA", "KAPPA", "MEAN_F1", "VAL_OA", "VAL_MEAN_F1")


def train_split(labelled: LabelledSet, command: str, source: str, settings: dict, seed: int,
                folder: Path) -> dict:
    """Train on the split of `seed`; the test metrics, the validation polygons' OA and mean F1
    (what settings are chosen on), the seconds taken (and the CPU seconds of all threads,
    which a busy machine does not inflate), the part of each reference feature and the test
    pixels file (the engine's own evaluation). The model file is removed afterwards; the job,
    its log and the held-out pixels stay in `folder`."""
    model, pixels = folder / "model.lcfusion", folder / "test_pixels.npz"
    validation = folder / "validation_pixels.npz"
    path = write_job(folder, command, inputs=labelled.job_inputs(command, source),
                     reference=labelled.reference, split={**labelled.split, "seed": seed},
                     settings=settings,
                     outputs={"model": str(model), "test_pixels": str(pixels),
                              "validation_pixels": str(validation)})
    with (folder / "log.jsonl").open("w", encoding="utf-8") as stream:
        started, cpu_started = time.monotonic(), time.process_time()
        outputs = run_training(Job.load(path), JsonLinesReporter(stream, min_interval=5.0),
                               job_command(command))
        seconds, cpu_seconds = time.monotonic() - started, time.process_time() - cpu_started
    model.unlink(missing_ok=True)
    return {"seed": seed, **{name: outputs.get(name) for name in METRICS[:3]},
            **validation_metrics(validation), "seconds": round(seconds, 1),
            "cpu_seconds": round(cpu_seconds, 1),
            "parts": outputs["SPLIT_PARTS"], "test_pixels": str(pixels)}


def validation_metrics(path: Path) -> dict:
    """OA and mean F1 (over the classes the validation pixels hold, as the engine's mean F1)
    of the validation pixels' predictions (None without the file)."""
    if not path.is_file():
        return {"VAL_OA": None, "VAL_MEAN_F1": None}
    pixels = np.load(path)
    done = pixels["predicted"] >= 0
    if not done.any():
        return {"VAL_OA": None, "VAL_MEAN_F1": None}
    reference, predicted = pixels["reference"][done], pixels["predicted"][done]
    return {"VAL_OA": float(accuracy_score(reference, predicted)),
            "VAL_MEAN_F1": float(f1_score(reference, predicted, labels=np.unique(reference),
                                          average="macro", zero_division=0))}


def summary(runs: list[dict]) -> dict:
    """Mean and sample standard deviation of each metric and the mean seconds per split."""
    result: dict = {"mean": {}, "std": {}}
    for name in METRICS:
        values = [run[name] for run in runs if run[name] is not None]
        result["mean"][name] = float(np.mean(values)) if values else None
        result["std"][name] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    result["seconds_per_split"] = round(float(np.mean([run["seconds"] for run in runs])), 1)
    return result


@dataclass
class PairedPixels:
    """Per-pixel correctness of both models on the test pixels both classified, pooled over
    the splits, each pixel's split (its index) and reference polygon (its feature), and
    whether each split gave both the same test pixels."""

    deep_correct: np.ndarray
    forest_correct: np.ndarray
    split: np.ndarray
    polygon: np.ndarray
    same_pixels: list[bool]


def _joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def paired_pixels(deep_runs: list[dict], forest_runs: list[dict]) -> PairedPixels:
    deep_correct, forest_correct, split, polygon, same = [], [], [], [], []
    for index, (deep_run, forest_run) in enumerate(zip(deep_runs, forest_runs, strict=True)):
        deep, forest = np.load(deep_run["test_pixels"]), np.load(forest_run["test_pixels"])
        equal = all(np.array_equal(deep[key], forest[key])
                    for key in ("rows", "cols", "reference"))
        same.append(equal)
        if not equal:
            continue
        both = (deep["predicted"] >= 0) & (forest["predicted"] >= 0)
        deep_correct.append((deep["predicted"] == deep["reference"])[both])
        forest_correct.append((forest["predicted"] == forest["reference"])[both])
        polygon.append(deep["feature"][both].astype(np.int64))
        split.append(np.full(polygon[-1].size, index, dtype=np.int64))
    return PairedPixels(_joined(deep_correct, bool), _joined(forest_correct, bool),
                        _joined(split, np.int64), _joined(polygon, np.int64), same)


def settings_key(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True)
