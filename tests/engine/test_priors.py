"""Class priors: the shift of a balanced model's probabilities towards the training polygons'
class shares, its strength chosen on validation pixels, recorded in the model file and applied
by the classification."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from helpers import (
    RecordingReporter,
    exported_onnx,
    randomforest_classify_job,
    randomforest_train_job,
)

from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.families.randomforest.classify_onnx import classify_randomforest_onnx
from lcfusion.engine.families.randomforest.commands import (
    classify_randomforest,
    train_randomforest,
)
from lcfusion.engine.inference.priors import (
    STRENGTHS,
    ClassPriors,
    ShiftedPredictor,
    choose_strength,
    log_share_ratio,
    mean_priors,
    with_priors,
)
from lcfusion.engine.inference.tiles import TilePredictor
from lcfusion.engine.jobs import Job
from lcfusion.engine.modelfile.header import read_metadata
from lcfusion.engine.modelfile.storage import load_model, save_model


def test_the_log_ratio_compares_the_training_polygons_with_the_fitted_sample():
    """Training polygons 300 / 100 / 0 pixels, sample 100 / 100 / 50: shares 3/4 and 1/4 of
    the two classes both hold, against 1/2 and 1/2; the third class is left alone."""
    ratio = log_share_ratio(np.array([300, 100, 0]), np.array([100, 100, 50]))
    assert ratio == pytest.approx([math.log(1.5), math.log(0.5), 0.0])


def test_a_shift_reweights_the_probabilities_and_renormalises_them():
    """At strength 0.5, factors sqrt(4) = 2 and sqrt(1/4) = 1/2: (0.2 * 2, 0.8 / 2) sums to
    0.8, so 0.5 / 0.5; a pixel without data stays NaN."""
    priors = ClassPriors(0.5, (math.log(4), math.log(0.25)))
    probabilities = np.array([[0.2, np.nan], [0.8, np.nan]], dtype=np.float32)
    shifted = priors.apply(probabilities)
    assert shifted[:, 0] == pytest.approx([0.5, 0.5])
    assert np.isnan(shifted[:, 1]).all()
    assert ClassPriors(0.0, (1.0, -1.0)).apply(probabilities) is probabilities
    assert not ClassPriors(1.0, (0.0, 0.0)).shifts


def test_the_strength_is_the_weakest_of_those_right_on_most_validation_pixels():
    """Eight of ten validation pixels are of the common class, but the balanced model ranks
    the rare one first everywhere (0.55): OA 0.2 unshifted. From strength 0.25 on (class 0:
    0.45 * (0.8/0.5)^0.25 = 0.506 against 0.55 * (0.2/0.5)^0.25 = 0.437) it is 0.8."""
    probabilities = np.tile(np.array([[0.45], [0.55]], dtype=np.float32), (1, 10))
    reference = np.array([0] * 8 + [1] * 2)
    ratio = log_share_ratio(np.array([800, 200]), np.array([1, 1]))
    priors, accuracies = choose_strength(probabilities, reference, ratio)
    assert accuracies == pytest.approx([0.2, 0.8, 0.8, 0.8, 0.8])
    assert priors.strength == 0.25
    # A tie everywhere keeps the balanced ranking.
    even = choose_strength(probabilities, np.zeros(10, dtype=int), np.zeros(2))[0]
    assert even.strength == 0.0


def test_an_ensembles_priors_are_the_mean_of_its_members_shifts():
    members = [{"strength": 1.0, "log_ratio": [0.4, -0.2]},
               {"strength": 0.5, "log_ratio": [0.4, -0.2]}, None]
    priors = mean_priors(members, 2)
    assert priors.strength == 1.0
    assert priors.log_ratio == pytest.approx([0.2, -0.1])
    assert not mean_priors([None, None], 2).shifts


class Constant(TilePredictor):
    """Every pixel of a core gets the same two probabilities."""

    tile_size = 4
    halo = 1

    def load(self, reader, core):
        return core

    def infer(self, tile):
        shape = (int(tile.height), int(tile.width))
        return (np.stack([np.full(shape, 0.4, np.float32), np.full(shape, 0.6, np.float32)]),
                np.ones(shape, bool))


class ConstantAtPixels(Constant):
    """Computes only the pixels asked for (as TWINNS's patch classifier), and says what its
    check of bfloat16 found (as a GPU predictor)."""

    precision_check = "bfloat16 keeps the classes"

    def infer_pixels(self, tile, rows, cols):
        return (np.stack([np.full(rows.size, 0.4, np.float32),
                          np.full(rows.size, 0.6, np.float32)]), np.ones(rows.size, bool))


def test_a_shifted_predictor_reads_as_the_one_it_wraps():
    """Doubling class 0's weight: 0.4 * 2 against 0.6, renormalised over 1.4."""
    inner = Constant()
    priors = ClassPriors(1.0, (math.log(2), 0.0))
    shifted = with_priors(inner, priors)
    assert isinstance(shifted, ShiftedPredictor) and with_priors(inner, ClassPriors(
        0.0, (1.0, 0.0))) is inner
    assert (shifted.tile_size, shifted.halo) == (4, 1)
    core = next(iter(shifted.cores(8, 8)))
    assert shifted.window(core) == inner.window(core)
    probabilities, valid = shifted.predict(None, core)
    assert probabilities[:, 0, 0] == pytest.approx([0.8 / 1.4, 0.6 / 1.4])
    assert valid.all() and not hasattr(shifted, "infer_pixels")
    assert shifted.precision_check is None
    at_pixels = with_priors(ConstantAtPixels(), priors)
    probabilities, valid = at_pixels.infer_pixels(core, np.arange(3), np.arange(3))
    assert probabilities.shape == (2, 3)
    assert probabilities[:, 2] == pytest.approx([0.8 / 1.4, 0.6 / 1.4])
    assert at_pixels.precision_check == "bfloat16 keeps the classes"


@pytest.fixture(scope="module")
def shifted_forest(tmp_path_factory, scene):
    """A forest of the sample scene trained with the training polygons' priors (strength 1),
    its model file, training outputs and log."""
    folder = tmp_path_factory.mktemp("forest-priors")
    reporter = RecordingReporter()
    job = Job.load(randomforest_train_job(folder, scene, folder / "model.lcfusion",
                                          class_priors="training"))
    job.data["outputs"]["test_pixels"] = str(folder / "test.npz")
    outputs = train_randomforest(job, reporter)
    return folder / "model.lcfusion", outputs, reporter


def test_the_model_file_records_the_priors_of_its_training_polygons(shifted_forest):
    """The log ratio is recomputed from what the model file itself says of the training
    polygons' pixels and the forest's sample."""
    model, _, reporter = shifted_forest
    metadata = read_metadata(model)
    train = np.array([row["train_pixels"] for row in metadata["training"]["split_summary"]])
    sample = np.array([metadata["sampling"]["pixels"][c["name"]]
                       for c in metadata["classes"]])
    assert metadata["class_priors"]["strength"] == 1.0
    assert metadata["class_priors"]["log_ratio"] == pytest.approx(
        log_share_ratio(train, sample), abs=1e-6)
    assert any("class priors: the classes' probabilities are weighted by" in line
               for line in reporter.lines)


def test_the_map_applies_the_priors_the_model_file_records(tmp_path, scene, shifted_forest):
    """Against the same forest with its priors removed from the file (strength 0), the map
    differs, and wherever it does, the shift moved the pixel to a class of a larger log ratio:
    a class ranked second can only overtake the first with a larger factor."""
    model, _, _ = shifted_forest
    metadata = read_metadata(model)
    ratio_of = {c["code"]: r for c, r in zip(metadata["classes"],
                                             metadata["class_priors"]["log_ratio"],
                                             strict=True)}
    reporter = RecordingReporter()
    classify_randomforest(Job.load(randomforest_classify_job(tmp_path, scene, model)), reporter)
    with rasterio.open(tmp_path / "map.tif") as src:
        with_priors_map = src.read(1)
    assert any("class priors of the training polygons at strength 1" in line
               for line in reporter.lines)
    balanced = tmp_path / "balanced"
    balanced.mkdir()
    metadata, state = load_model(model, "randomforest")
    metadata["class_priors"]["strength"] = 0.0
    save_model(balanced / "model.lcfusion", metadata, state)
    classify_randomforest(Job.load(randomforest_classify_job(
        balanced, scene, balanced / "model.lcfusion")), RecordingReporter())
    with rasterio.open(balanced / "map.tif") as src:
        balanced_map = src.read(1)
    changed = with_priors_map != balanced_map
    assert changed.sum() > 0
    for shifted, plain in zip(with_priors_map[changed], balanced_map[changed], strict=True):
        assert ratio_of[int(shifted)] > ratio_of[int(plain)]
    # The test accuracy was computed with the priors: the test pixels' predictions are the
    # map's there.
    test = np.load(model.parent / "test.npz")
    np.testing.assert_array_equal(test["predicted"], with_priors_map[test["rows"], test["cols"]])
    # The ONNX export of the forest, classified, applies the same priors.
    onnx_folder = tmp_path / "onnx"
    onnx_folder.mkdir()
    exported = exported_onnx(onnx_folder, model)
    classify_randomforest_onnx(Job.load(randomforest_classify_job(onnx_folder, scene, exported)),
                               RecordingReporter())
    with rasterio.open(onnx_folder / "map.tif") as src:
        np.testing.assert_array_equal(src.read(1), with_priors_map)


def test_by_default_the_strength_is_chosen_on_the_validation_pixels(tmp_path, scene):
    reporter = RecordingReporter()
    folder = tmp_path / "default"
    folder.mkdir()
    job = Job.load(randomforest_train_job(folder, scene, folder / "model.lcfusion"))
    job.data["outputs"]["validation_pixels"] = str(folder / "validation.npz")
    train_randomforest(job, reporter)
    strength = read_metadata(folder / "model.lcfusion")["class_priors"]["strength"]
    assert strength in STRENGTHS
    chosen = [line for line in reporter.lines if line.startswith(
        "class priors: OA on the validation pixels ")]
    assert len(chosen) == 1 and chosen[0].endswith(f"; kept strength {strength:g}")
    # The validation pixels file holds the predictions with the kept strength: its OA is the
    # best of those logged.
    saved = np.load(folder / "validation.npz")
    classified = saved["predicted"] >= 0
    logged = [float(part.split(" at ")[0].split()[-1]) for part in chosen[0].split(", ")]
    assert np.mean(saved["predicted"][classified] == saved["reference"][classified]) == \
        pytest.approx(max(logged), abs=5e-4)


def test_priors_for_another_number_of_classes_are_refused(shifted_forest, tmp_path):
    model, _, _ = shifted_forest
    metadata, state = load_model(model, "randomforest")
    metadata["class_priors"]["log_ratio"].append(0.0)
    save_model(tmp_path / "bad.lcfusion", metadata, state)
    with pytest.raises(LcfusionError, match="the number of class_priors.log_ratio is"):
        load_model(tmp_path / "bad.lcfusion", "randomforest")


def test_validation_polygons_the_forest_trained_on_choose_no_strength(tmp_path, scene):
    """With the validation polygons in its sample, a forest would choose its strength on
    pixels it learnt: it takes strength 1, the shares of every polygon it trained on."""
    reporter = RecordingReporter()
    model = tmp_path / "model.lcfusion"
    train_randomforest(Job.load(randomforest_train_job(tmp_path, scene, model,
                                                       train_on_validation=True)), reporter)
    metadata = read_metadata(model)
    summary = metadata["training"]["split_summary"]
    trained_on = np.array([row["train_pixels"] + row["validation_pixels"] for row in summary])
    sample = np.array([metadata["sampling"]["pixels"][c["name"]] for c in metadata["classes"]])
    assert metadata["class_priors"]["strength"] == 1.0
    assert metadata["class_priors"]["log_ratio"] == pytest.approx(
        log_share_ratio(trained_on, sample), abs=1e-6)
    assert ("class priors: the validation polygons were trained on, so they choose no "
            "strength; strength 1 (the training polygons' shares)") in reporter.lines
    assert not any(line.startswith("class priors: OA on the validation pixels")
                   for line in reporter.lines)
