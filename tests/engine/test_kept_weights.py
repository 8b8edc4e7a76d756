"""Keep "best-or-last": of the best epoch's weights and the last epoch's, those right on more
of the validation polygons' pixels, scored with the family's own predictor; the model file
records both accuracies, and the validation pixels it writes are those of the kept weights."""

import numpy as np
import pytest
import torch
from helpers import NO_TEST_SPLIT, RecordingReporter, fgunet_train_job

from lcfusion.engine.families.fgunet.commands import load_fgunet, train_fgunet
from lcfusion.engine.families.jobsteps import (
    choose_kept_weights,
    predict_held_out_parts,
    split_reference,
)
from lcfusion.engine.inference.classifying import labels_of, pixel_probabilities, predict_pixels
from lcfusion.engine.inference.priors import STRENGTHS, ClassPriors, with_priors
from lcfusion.engine.inference.tiling import TiledPredictor
from lcfusion.engine.io.series import SeriesSpec, TimeSeries
from lcfusion.engine.jobs import Job
from lcfusion.engine.modelfile.header import read_metadata
from lcfusion.engine.progress import NullReporter
from lcfusion.engine.reference.splits import preset_split
from lcfusion.engine.training.loop import FitResult

CPU = torch.device("cpu")
NO_PRIORS = np.zeros(8)


def held_out_probabilities(predictor, reader, grid, split, part: int) -> np.ndarray:
    """A pass over one split part's pixels alone: their class probabilities."""
    pixels = split.reference.pixels
    held_out = split.mask(part)
    return pixel_probabilities(predictor, reader, grid, pixels.rows[held_out],
                               pixels.cols[held_out], NullReporter())


def predict_held_out(predictor, reader, grid, split, part: int) -> np.ndarray:
    """A pass over one split part's pixels alone: their predicted classes."""
    pixels = split.reference.pixels
    held_out = split.mask(part)
    return predict_pixels(predictor, reader, grid, pixels.rows[held_out],
                          pixels.cols[held_out], NullReporter())


def split_of(folder, scene, split=None):
    job = Job.load(fgunet_train_job(folder, scene, folder / "unused.lcfusion", split))
    series = TimeSeries(SeriesSpec(tuple(str(p) for p in scene.s2_paths)))
    return series, split_reference(job, series.grid, preset_split(job.section("split"), {}),
                                    folder, NullReporter())


@pytest.fixture(scope="module")
def setting(tmp_path_factory, scene, trained):
    """The scene's series and split, and the session's trained FG-UNET."""
    series, split = split_of(tmp_path_factory.mktemp("kept"), scene)
    _, model, _, normalizer = load_fgunet(trained[0], CPU)
    return series, split, model, normalizer


def one_class_state(model: torch.nn.Module, index: int) -> dict[str, torch.Tensor]:
    """Weights whose head answers class `index` at every pixel."""
    state = {name: value.clone() for name, value in model.state_dict().items()}
    state["head.weight"].zero_()
    state["head.bias"].zero_()
    state["head.bias"][index] = 1.0
    return state


def choose(setting, best: dict, last: dict, reporter=None
           ) -> tuple[FitResult, np.ndarray, torch.nn.Module]:
    series, split, model, normalizer = setting
    result = FitResult(best, 7, last_state=last, last_epoch=12)
    with series.open() as reader:
        chosen, predictions = choose_kept_weights(
            model, result, lambda: TiledPredictor(model, normalizer, CPU, 128, 20), reader,
            series.grid, split, NO_PRIORS, reporter or NullReporter())
    return chosen, labels_of(predictions.validation), model


@pytest.mark.parametrize("trained_is", ["best", "last"])
def test_the_weights_right_on_more_validation_pixels_are_kept(setting, trained_is):
    """One candidate is the trained network, the other answers the validation polygons' rarest
    class everywhere: its OA is that class's share of their pixels, counted by hand."""
    _, split, model, _ = setting
    trained = {name: value.clone() for name, value in model.state_dict().items()}
    truth = split.pixel_class[split.mask(1)]
    counts = np.bincount(truth)
    present = np.flatnonzero(counts)
    rarest = int(present[np.argmin(counts[present])])
    constant = one_class_state(model, rarest)
    best, last = (trained, constant) if trained_is == "best" else (constant, trained)
    reporter = RecordingReporter()
    try:
        chosen, predicted, model = choose(setting, best, last, reporter)
        assert chosen.best_epoch == (7 if trained_is == "best" else 12)
        assert chosen.last_state is None
        for name, value in trained.items():
            torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)
            torch.testing.assert_close(chosen.best_state[name], value, rtol=0, atol=0)
        scores = {c["epoch"]: c["validation_oa"] for c in chosen.kept["candidates"]}
        constant_epoch = 12 if trained_is == "best" else 7
        assert scores[constant_epoch] == pytest.approx(np.mean(truth == rarest), abs=1e-6)
        assert scores[19 - constant_epoch] > 0.6  # the trained network, about 7/8 here
        # The validation predictions returned, for the test evaluation to reuse, are the kept
        # (trained) network's: their OA, counted by hand, is its score.
        assert predicted.shape == truth.shape and (predicted >= 0).all()
        assert np.mean(predicted == truth) == pytest.approx(scores[19 - constant_epoch],
                                                            abs=1e-6)
        assert chosen.kept["epoch"] == chosen.best_epoch
        assert (f"OA on the {truth.size:,} validation pixels: "
                f"{scores[7]:.3f} with the best epoch's weights (7), "
                f"{scores[12]:.3f} with the last epoch's (12); kept the {trained_is} "
                "epoch's") in reporter.lines
    finally:
        model.load_state_dict(trained)


def test_a_tie_keeps_the_best_epochs_weights(setting):
    _, _, model, _ = setting
    state = {name: value.clone() for name, value in model.state_dict().items()}
    chosen, _, _ = choose(setting, state, {k: v.clone() for k, v in state.items()})
    first, second = chosen.kept["candidates"]
    assert first["validation_oa"] == second["validation_oa"]
    assert chosen.best_epoch == chosen.kept["epoch"] == 7


def test_without_validation_polygons_the_best_epochs_weights_are_kept(tmp_path, scene,
                                                                      setting):
    series, split = split_of(tmp_path, scene, {"train": 0.8, "validation": 0.0, "test": 0.2,
                                               "seed": 3})
    assert not split.mask(1).any()
    _, _, model, normalizer = setting
    state = model.state_dict()
    reporter = RecordingReporter()
    with series.open() as reader:
        chosen, predictions = choose_kept_weights(
            model, FitResult(state, 7, last_state=state, last_epoch=12),
            lambda: TiledPredictor(model, normalizer, CPU, 128, 20), reader, series.grid,
            split, NO_PRIORS, reporter)
        test = predict_held_out(TiledPredictor(model, normalizer, CPU, 128, 20), reader,
                                series.grid, split, 2)
    assert chosen.best_epoch == 7 and chosen.last_state is None and chosen.kept is None
    assert predictions.validation.shape == (8, 0)
    # Without priors every strength ranks alike: the test labels of a pass over the test part.
    assert predictions.test_labels.shape == (len(STRENGTHS), test.size) and test.size > 0
    for labels in predictions.test_labels:
        np.testing.assert_array_equal(labels, test)
    assert ("no validation polygons to choose between the best epoch's and the last epoch's "
            "weights: kept the best epoch's, 7") in reporter.lines


def test_the_model_file_records_the_choice_and_the_validation_pixels_are_the_kept_weights(
        tmp_path, scene):
    """FG-UNET keeps "best-or-last" by default. The validation pixels file is written with
    the kept weights: its OA, counted by hand, is the kept candidate's."""
    model = tmp_path / "model.lcfusion"
    job = Job.load(fgunet_train_job(tmp_path, scene, model, NO_TEST_SPLIT, epochs=8,
                                    class_priors="balanced"))
    job.data["outputs"]["validation_pixels"] = str(tmp_path / "validation.npz")
    train_fgunet(job, NullReporter())
    training = read_metadata(model)["training"]
    assert training["settings"]["keep"] == "best-or-last"
    kept = training["kept"]
    assert kept is not None, "these settings end with a last epoch other than the best"
    assert kept["epoch"] == training["best_epoch"]
    assert kept["candidates"][1]["epoch"] == len(training["history"]) == 8
    pixels = np.load(tmp_path / "validation.npz")
    by_hand = float(np.mean(pixels["predicted"] == pixels["reference"]))
    scores = {c["epoch"]: c["validation_oa"] for c in kept["candidates"]}
    assert scores[kept["epoch"]] == pytest.approx(by_hand, abs=1e-6)
    assert scores[kept["epoch"]] == max(scores.values())


def test_one_pass_over_the_held_out_polygons_gives_what_a_pass_per_part_gives(setting):
    """`predict_held_out_parts` computes the validation and test polygons in one pass: its
    validation probabilities are those of a pass over the validation polygons, its test labels
    at each strength those of a pass over the test polygons with those priors."""
    series, split, model, normalizer = setting
    counts = split.class_counts(0).astype(float)
    ratio = np.log(counts / counts.sum() * counts.size) * 4  # strong priors: labels change
    predictor = TiledPredictor(model, normalizer, CPU, 48, 20)
    with series.open() as reader:
        one_pass = predict_held_out_parts(predictor, reader, series.grid, split, ratio,
                                          NullReporter())
        validation = held_out_probabilities(predictor, reader, series.grid, split, 1)
        per_strength = [predict_held_out(with_priors(predictor, ClassPriors(s, tuple(ratio))),
                                         reader, series.grid, split, 2)
                        for s in STRENGTHS]
    np.testing.assert_allclose(one_pass.validation, validation, rtol=0, atol=1e-6)
    assert one_pass.validation.shape == (8, split.mask(1).sum())
    for strength, expected in zip(STRENGTHS, per_strength, strict=True):
        got = one_pass.test_predicted(ClassPriors(strength, tuple(ratio)))
        np.testing.assert_array_equal(got, expected)
    assert (per_strength[0] != per_strength[-1]).any(), "the priors must change some labels"
    assert (per_strength[0] >= 0).all()
