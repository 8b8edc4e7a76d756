"""Training over k seeded splits: the kept model, the mean ± std outputs, the runs recorded."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    RecordingReporter,
    fgunet_train_job,
    randomforest_train_job,
    twinns_train_job,
)

from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.families.fgunet.commands import train_fgunet
from lcfusion.engine.families.randomforest.commands import train_randomforest
from lcfusion.engine.families.repeats import run_training, summarize, variant
from lcfusion.engine.families.twinns.commands import train_twinns
from lcfusion.engine.jobs import Job
from lcfusion.engine.modelfile.header import read_metadata


def test_summary_is_the_mean_and_sample_standard_deviation():
    runs = [{"overall_accuracy": 0.8, "kappa": 0.5, "mean_f1": None},
            {"overall_accuracy": 0.9, "kappa": 0.7, "mean_f1": None},
            {"overall_accuracy": 0.7, "kappa": None, "mean_f1": None}]
    summary = summarize(runs)
    assert summary["mean"]["overall_accuracy"] == pytest.approx(0.8)
    assert summary["std"]["overall_accuracy"] == pytest.approx(0.1)  # sqrt(0.02 / 2)
    assert summary["mean"]["kappa"] == pytest.approx(0.6)
    assert summary["std"]["kappa"] == pytest.approx(0.1414213562)  # sqrt(0.02 / 1)
    assert summary["mean"]["mean_f1"] is None and summary["std"]["mean_f1"] is None


def test_a_variant_changes_only_the_seed_and_the_model(tmp_path, scene):
    job = Job.load(twinns_train_job(tmp_path, scene, tmp_path / "m.lcfusion"))
    other = variant(job, 9, tmp_path / "x.lcfusion")
    assert other.section("split")["seed"] == 9 and job.section("split")["seed"] == 3
    assert other.resolve(other.section("outputs")["model"]) == tmp_path / "x.lcfusion"
    assert other.section("settings") == job.section("settings")


def test_three_splits_give_mean_and_std_and_keep_the_first_model(tmp_path, scene):
    model = tmp_path / "model.lcfusion"
    path = fgunet_train_job(tmp_path, scene, model, epochs=1, patches_per_epoch=16,
                            validation_patches=8)
    job = Job.load(path)
    job.data["split"]["repeats"] = 3
    job.data["outputs"]["report"] = str(tmp_path / "report.html")
    log = RecordingReporter()
    outputs = run_training(job, log, train_fgunet)
    metadata = read_metadata(model)
    runs = metadata["repeats"]["runs"]
    assert [run["seed"] for run in runs] == [3, 4, 5]
    values = [run["overall_accuracy"] for run in runs]
    mean = sum(values) / 3
    std = (sum((v - mean) ** 2 for v in values) / 2) ** 0.5
    assert outputs["OA"] == pytest.approx(mean) and outputs["OA_STD"] == pytest.approx(std)
    assert outputs["REPEATS"] == 3
    # The kept model is the first split's: its own test metrics are run 1's.
    assert metadata["metrics"]["overall_accuracy"] == pytest.approx(values[0])
    assert metadata["training"]["split"]["seed"] == 3
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".lcfusion") == [
        "model.lcfusion"]
    assert "overall accuracy over 3 splits" in log.text()
    report = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert outputs["OUTPUT_REPORT"] == str(tmp_path / "report.html")
    assert "Repeated splits" in report and "Learning curves" in report
    assert f"{mean:.4f} ± {std:.4f}" in report


def test_repeats_are_bounded(tmp_path, scene):
    job = Job.load(twinns_train_job(tmp_path, scene, tmp_path / "m.lcfusion"))
    job.data["split"]["repeats"] = 0
    with pytest.raises(LcfusionError) as error:
        run_training(job, RecordingReporter(), train_twinns)
    assert error.value.parameter == "REPEATS"


def test_the_held_out_pixel_files_hold_the_kept_splits_predictions(tmp_path, scene):
    model, pixels_file = tmp_path / "model.lcfusion", tmp_path / "test.npz"
    job = Job.load(randomforest_train_job(tmp_path, scene, model))
    job.data["split"]["repeats"] = 2
    job.data["outputs"]["test_pixels"] = str(pixels_file)
    job.data["outputs"]["validation_pixels"] = str(tmp_path / "validation.npz")
    log = RecordingReporter()
    run_training(job, log, train_randomforest)
    metadata = read_metadata(model)
    saved = np.load(pixels_file)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".npz") == [
        "test.npz", "validation.npz"]
    # The validation file holds the validation polygons' pixels, none of the test's.
    validation = np.load(tmp_path / "validation.npz")
    summary = metadata["training"]["split_summary"]
    assert validation["reference"].size == sum(row["validation_pixels"] for row in summary) > 0
    assert not set(validation["feature"].tolist()) & set(saved["feature"].tolist())
    validation_oa = float(np.mean(validation["predicted"] == validation["reference"]))
    assert f"accuracy on the validation polygons: OA {validation_oa:.4f}" in log.text()
    # The first split's (the kept model's) test pixels: its accuracy, its test polygons.
    assert saved["rows"].size == metadata["metrics"]["n_pixels"] > 0
    correct = saved["predicted"] == saved["reference"]
    assert correct.mean() == pytest.approx(metadata["metrics"]["overall_accuracy"])
    codes = {entry["code"] for entry in metadata["classes"]}
    assert set(np.unique(saved["reference"])) <= codes
    assert set(np.unique(saved["predicted"])) <= codes
    test_rows = [row["test_pixels"] for row in metadata["training"]["split_summary"]]
    assert saved["reference"].size == sum(test_rows)
    assert np.unique(saved["feature"]).size == sum(
        row["test_objects"] for row in metadata["training"]["split_summary"])
