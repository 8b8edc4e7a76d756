"""Training over k seeded object-level splits, and the training report.

Every train command runs through `run_training`: with ``split.repeats`` = k > 1 the family's
training runs k times, on the splits of seeds seed, seed + 1, ... (the papers use 10). The model
kept is the one of the first split; the accuracy outputs become the mean over the k splits, with
their standard deviations, and the model records every run under ``repeats``. The HTML training
report is written from the final model's metadata. Only the kept model is named in the log: the
other splits' models are temporary.

With ``split.ensemble`` the model file holds the k models instead (an ensemble, entry
``ensemble``; see `inference.ensemble`), whose classification averages their class
probabilities. The later members train with the first member's normalisation (the job's
``normalization``), so the file's one normalisation is every member's own; an ordinary run
fits its own, as before. No split's test polygons can score an ensemble, so its ``metrics`` are
the means of the members' own accuracies.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import LcfusionError
from ..inference.ensemble import ensemble_state
from ..inference.priors import mean_priors
from ..io.outputs import check_writable
from ..jobs import Job
from ..modelfile.header import read_metadata
from ..modelfile.schema import MAX_REPEATS
from ..modelfile.storage import load_model, save_model
from ..progress import Reporter
from ..reports.html import ensemble_accuracy_note, write_training_report
from ..wording import counted

METRICS = ("overall_accuracy", "kappa", "mean_f1")
#: The train command's numeric outputs for each metric.
OUTPUT_NAMES = {"overall_accuracy": "OA", "kappa": "KAPPA", "mean_f1": "MEAN_F1"}
#: The train commands whose repeated splits can make an ensemble: the deep families.
ENSEMBLE_COMMANDS = ("train-fgunet", "train-mrfusion", "train-twinns")


def split_repeats(job: Job) -> int:
    value = job.section("split").get("repeats")
    repeats = 1 if value is None else int(value)
    if not 1 <= repeats <= MAX_REPEATS:
        raise LcfusionError(f"must lie between 1 and {MAX_REPEATS}, got {repeats}", "REPEATS")
    return repeats


def split_ensemble(job: Job, repeats: int) -> bool:
    """Whether the models of the `repeats` splits make one ensemble model file
    (``split.ensemble``); clear errors where that cannot be."""
    value = job.section("split").get("ensemble", False)
    if not isinstance(value, bool):
        raise LcfusionError(f"must be true or false, got {value!r}", "ENSEMBLE")
    if value and repeats == 1:
        raise LcfusionError(
            "an ensemble averages the models of repeated splits, but the training runs on one "
            "split; set REPEATS (Repeat over k seeded splits) to 2 or more, or turn the "
            "ensemble off", "ENSEMBLE")
    if value and job.command not in ENSEMBLE_COMMANDS:
        raise LcfusionError(
            "a Random Forest makes no ensemble of its repeated splits (its trees already "
            "average); raise the number of trees instead, or turn the ensemble off", "ENSEMBLE")
    return value


def variant(job: Job, seed: int, model: Path, kept: bool = True,
            normalization: dict | None = None) -> Job:
    """The job with another split seed and model output (and with `normalization`, the
    normalisation to train with instead of fitting one); a split whose model is not `kept`
    writes no held-out pixel files (they hold the kept model's pixels)."""
    data = copy.deepcopy(job.data)
    data.setdefault("split", {})["seed"] = seed
    data.setdefault("outputs", {})["model"] = str(model)
    if normalization is not None:
        data["normalization"] = normalization
    if not kept:
        data["outputs"].pop("test_pixels", None)
        data["outputs"].pop("validation_pixels", None)
    return Job(job.command, data, job.folder)


def summarize(runs: list[dict]) -> dict:
    """Mean and (sample) standard deviation of each metric over the runs that have it."""
    summary: dict[str, dict] = {"mean": {}, "std": {}}
    for metric in METRICS:
        values = [run[metric] for run in runs if run.get(metric) is not None]
        summary["mean"][metric] = float(np.mean(values)) if values else None
        summary["std"][metric] = float(np.std(values, ddof=1)) if len(values) > 1 else (
            0.0 if values else None)
    return summary


def _metrics(outputs: dict) -> dict:
    return {metric: outputs.get(name) for metric, name in OUTPUT_NAMES.items()}


def run_training(job: Job, reporter: Reporter, train: Callable[[Job, Reporter], dict]) -> dict:
    """Run `train` once per split (see the module), then write the training report."""
    repeats = split_repeats(job)
    ensemble = split_ensemble(job, repeats)
    report = job.resolve(job.section("outputs").get("report"))
    if report is not None:
        check_writable(report, "OUTPUT_REPORT")
    if repeats == 1:
        outputs = train(job, reporter)
    else:
        outputs = _train_repeatedly(job, reporter, train, repeats, ensemble)
    if outputs.get("OUTPUT_MODEL"):
        reporter.info(f"model written to {outputs['OUTPUT_MODEL']}")
    if report is not None and outputs.get("OUTPUT_MODEL"):
        write_training_report(report, read_metadata(outputs["OUTPUT_MODEL"], "OUTPUT_MODEL"),
                              parameter="OUTPUT_REPORT")
        reporter.info(f"training report written to {report}")
        outputs["OUTPUT_REPORT"] = str(report)
    return outputs


def _train_repeatedly(job: Job, reporter: Reporter, train: Callable[[Job, Reporter], dict],
                      repeats: int, ensemble: bool) -> dict:
    split = job.section("split")
    seed = int(split.get("seed", 0))
    if split.get("method") == "area":
        reporter.warning("the area split method gives the same split for every seed: the "
                         "repeats differ only in the training's own randomness")
    model = job.resolve(job.section("outputs").get("model"))
    if model is None:
        raise LcfusionError("no output model file given", "OUTPUT_MODEL")
    runs, first, members, normalization, member_priors = [], None, [], None, []
    with job.workdir() as scratch:
        for index in range(repeats):
            reporter.info(f"split {index + 1} of {repeats} (seed {seed + index})")
            target = model if index == 0 else Path(scratch) / f"split-{index}.lcfusion"
            outputs = train(variant(job, seed + index, target, index == 0, normalization),
                            reporter.span(index / repeats, (index + 1) / repeats))
            runs.append({"seed": seed + index, **_metrics(outputs)})
            first = first or outputs
            if ensemble:
                metadata, state = load_model(target, parameter="OUTPUT_MODEL")
                members.append(state)
                member_priors.append(metadata.get("class_priors"))
                normalization = normalization or metadata["normalization"]
            if index:
                with contextlib.suppress(FileNotFoundError):
                    target.unlink()
    summary = summarize(runs)
    for metric in METRICS:
        mean, std = summary["mean"][metric], summary["std"][metric]
        if mean is not None:
            reporter.info(f"{metric.replace('_', ' ')} over {counted(repeats, 'split')}: "
                          f"{mean:.4f} ± {std:.4f}")
    metadata, state = load_model(model, parameter="OUTPUT_MODEL")
    metadata["repeats"] = {"runs": runs, **summary}
    if ensemble:
        metadata["ensemble"] = {"members": repeats, "seeds": [run["seed"] for run in runs]}
        means = {metric: summary["mean"][metric] for metric in METRICS}
        metadata["metrics"] = means if any(v is not None for v in means.values()) else None
        state = ensemble_state(members)
        priors = mean_priors(member_priors, len(metadata["classes"]))
        metadata["class_priors"] = priors.to_json()
        if priors.shifts:
            reporter.info("class priors of the ensemble: the mean of its members' shifts")
        reporter.info(f"the model file is an ensemble of {counted(repeats, 'model')}; "
                      + ensemble_accuracy_note(repeats))
    save_model(model, metadata, state)
    outputs = dict(first)
    for metric, name in OUTPUT_NAMES.items():
        outputs[name] = summary["mean"][metric]
        outputs[f"{name}_STD"] = summary["std"][metric]
    outputs["REPEATS"] = repeats
    return outputs


def format_mean_std(mean: float | None, std: float | None) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    return f"{mean:.3f} ± {std or 0.0:.3f}"
