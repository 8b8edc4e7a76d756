"""Ensembles of repeated splits: one model file holding the k models, classifying with the mean
of their class probabilities, checked by its schema, refused where it cannot be."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from helpers import (
    RecordingReporter,
    fgunet_train_job,
    randomforest_train_job,
    twinns_inputs,
    twinns_train_job,
)
from rasterio.windows import Window

from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.families.fgunet.commands import classify_fgunet, load_fgunet, train_fgunet
from lcfusion.engine.families.fgunet.network import FGUNet, FGUNetConfig
from lcfusion.engine.families.mrfusion.network import MRFusion, MRFusionConfig
from lcfusion.engine.families.repeats import run_training
from lcfusion.engine.families.twinns.commands import (
    attention_twinns,
    classify_twinns,
    inputs_for_model,
    load_twinns,
    train_twinns,
)
from lcfusion.engine.families.twinns.network import TWINNS, TWINNSConfig
from lcfusion.engine.families.twinns.patches import BatchedPatchPredictor
from lcfusion.engine.inference.ensemble import Ensemble
from lcfusion.engine.inference.priors import ClassPriors
from lcfusion.engine.inference.tiling import TiledPredictor
from lcfusion.engine.io.normalization import PercentileNormalizer
from lcfusion.engine.io.series import SeriesSpec, TimeSeries
from lcfusion.engine.jobs import Job, write_job
from lcfusion.engine.modelfile.header import read_metadata
from lcfusion.engine.modelfile.schema import check_metadata
from lcfusion.engine.modelfile.storage import load_model, save_model
from lcfusion.engine.progress import NullReporter
from lcfusion.engine.reports.html import training_report_html

CPU = torch.device("cpu")


def train_ensemble(job: Job, train: Callable[[Job, object], dict], members: int = 2
                   ) -> tuple[dict, RecordingReporter, list[dict]]:
    """Train `members` splits as an ensemble; also the normalisation each member was given."""
    job.data["split"].update(repeats=members, ensemble=True)
    given = []

    def recorded(member: Job, reporter) -> dict:
        given.append(member.section("normalization"))
        return train(member, reporter)

    log = RecordingReporter()
    return run_training(job, log, recorded), log, given


def members_of(path: Path, build: Callable[[dict], torch.nn.Module]) -> list[torch.nn.Module]:
    """The members of an ensemble file, each loaded by hand from its ``members.<i>.`` tensors."""
    metadata, state = load_model(path)
    members = []
    for index in range(metadata["ensemble"]["members"]):
        prefix = f"members.{index}."
        member = build(metadata)
        member.load_state_dict({name[len(prefix):]: tensor for name, tensor in state.items()
                                if name.startswith(prefix)})
        members.append(member.eval())
    return members


def assert_maps_are_the_mean(folder: Path, codes: list[int], mean: np.ndarray,
                             window: Window | None = None) -> None:
    """In `window` (default: everywhere), the class map is the class of highest mean
    probability (where the first two differ clearly) and the confidence map that mean
    probability."""
    with rasterio.open(folder / "map.tif") as src:
        labels = src.read(1, window=window)
    with rasterio.open(folder / "confidence.tif") as src:
        confidence = src.read(1, window=window)
    np.testing.assert_allclose(confidence, mean.max(axis=0), atol=1e-5)
    ranked = np.sort(mean, axis=0)
    clear = ranked[-1] - ranked[-2] > 1e-4
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(labels[clear], np.asarray(codes)[mean.argmax(axis=0)][clear])


@pytest.fixture(scope="module")
def fgunet_ensemble(tmp_path_factory, scene) -> tuple[Path, dict, RecordingReporter, list]:
    folder = tmp_path_factory.mktemp("fgunet-ensemble")
    model = folder / "model.lcfusion"
    job = Job.load(fgunet_train_job(folder, scene, model, epochs=1, patches_per_epoch=16,
                                    validation_patches=8, class_priors="training"))
    return (model, *train_ensemble(job, train_fgunet))


def fgunet_of(metadata: dict) -> FGUNet:
    return FGUNet(FGUNetConfig.from_json(metadata["architecture"]))


def test_an_fgunet_ensemble_of_two_is_one_file_holding_both(fgunet_ensemble):
    model, outputs, log, given = fgunet_ensemble
    metadata, state = load_model(model, "fgunet")
    assert metadata["ensemble"] == {"members": 2, "seeds": [3, 4]}
    names = len(fgunet_of(metadata).state_dict())
    assert len(state) == 2 * names
    assert sum(name.startswith("members.1.") for name in state) == names
    first, second = members_of(model, fgunet_of)
    assert not torch.equal(first.state_dict()["head.weight"], second.state_dict()["head.weight"])
    assert sorted(p.name for p in model.parent.iterdir() if p.suffix == ".lcfusion") == [
        "model.lcfusion"]
    # The second member trained with the first's normalisation, the one the file holds.
    assert given == [{}, metadata["normalization"]]
    # Its accuracy is the mean of the members' on their own splits, and the log says why.
    runs = metadata["repeats"]["runs"]
    mean = (runs[0]["overall_accuracy"] + runs[1]["overall_accuracy"]) / 2
    assert metadata["metrics"]["overall_accuracy"] == pytest.approx(mean) == outputs["OA"]
    assert "confusion" not in metadata["metrics"]
    assert ("the model file is an ensemble of 2 models; no split's test polygons can score an "
            "ensemble") in log.text()
    report = training_report_html(metadata)
    assert "mean of the ensemble&#x27;s members" in report
    assert "This file holds the models of all the runs, an ensemble." in report


def test_the_ensemble_file_passes_the_schema_check(fgunet_ensemble):
    metadata = read_metadata(fgunet_ensemble[0])
    check_metadata(metadata, complete=True)
    loaded, model, _, _ = load_fgunet(fgunet_ensemble[0], CPU)
    assert loaded == metadata and isinstance(model, Ensemble) and len(model.members) == 2


def test_classifying_with_an_fgunet_ensemble_gives_the_mean_of_its_members(
        tmp_path, scene, fgunet_ensemble):
    model = fgunet_ensemble[0]
    metadata = read_metadata(model)
    paths = [str(p) for p in scene.s2_paths]
    job = write_job(tmp_path, "classify-fgunet",
                    inputs={"model": str(model), "series": {"paths": paths}},
                    outputs={"class_map": str(tmp_path / "map.tif"),
                             "confidence": str(tmp_path / "confidence.tif")})
    log = RecordingReporter()
    classify_fgunet(Job.load(job), log)
    assert "the model is an ensemble of 2 models (one per repeated split)" in log.text()
    normalizer = PercentileNormalizer.from_json(metadata["normalization"])
    series = TimeSeries(SeriesSpec(tuple(paths)))
    whole = Window(0, 0, series.width, series.height)
    with series.open() as reader:
        probabilities = [TiledPredictor(member, normalizer, CPU).predict(reader, whole)[0]
                         for member in members_of(model, fgunet_of)]
    assert np.abs(probabilities[0] - probabilities[1]).max() > 0.01  # the members differ
    # Each member weighs its classes at strength 1; the file, the mean of their shifts.
    priors = ClassPriors.from_json(metadata["class_priors"], len(metadata["classes"]))
    assert priors.shifts and priors.strength == 1.0
    assert "class priors of the ensemble: the mean of its members' shifts" in \
        fgunet_ensemble[2].text()
    assert "the mean of the ensemble members' class priors, as recorded in the model file" in \
        log.text()
    assert_maps_are_the_mean(tmp_path, [c["code"] for c in metadata["classes"]],
                             priors.apply(np.mean(probabilities, axis=0)))


def corrupt_members(metadata: dict, state: dict) -> tuple[dict, dict]:
    return {**metadata, "ensemble": {"members": 3, "seeds": [3, 4, 5]}}, state


def corrupt_seeds(metadata: dict, state: dict) -> tuple[dict, dict]:
    return {**metadata, "ensemble": {"members": 2, "seeds": [3, 4, 5]}}, state


def stray_tensor(metadata: dict, state: dict) -> tuple[dict, dict]:
    return metadata, {**state, "head.weight": state["members.0.head.weight"].clone()}


def member_without_a_tensor(metadata: dict, state: dict) -> tuple[dict, dict]:
    return metadata, {k: v for k, v in state.items() if k != "members.1.head.weight"}


def no_ensemble_entry(metadata: dict, state: dict) -> tuple[dict, dict]:
    return {k: v for k, v in metadata.items() if k != "ensemble"}, state


@pytest.mark.parametrize("corrupt, message", [
    (corrupt_members, "holds the tensors of 2 members but the metadata entry ensemble.members "
                      "says 3"),
    (corrupt_seeds, "ensemble.seeds must hold one seed per member (2), not 3"),
    (stray_tensor, "the tensor \"head.weight\" belongs to no member of the ensemble"),
    (member_without_a_tensor, "holds members with different tensors"),
    (no_ensemble_entry, "inconsistent metadata or weights"),
])
def test_a_corrupted_ensemble_is_refused(tmp_path, fgunet_ensemble, corrupt, message):
    path = tmp_path / "corrupt.lcfusion"
    save_model(path, *corrupt(*load_model(fgunet_ensemble[0])))
    with pytest.raises(LcfusionError) as error:
        load_fgunet(path, CPU)
    assert error.value.parameter == "MODEL"
    assert message in error.value.message


def must_not_train(job: Job, reporter) -> dict:
    raise AssertionError("the job trained")


@pytest.mark.parametrize("make_job, repeats, ensemble, message", [
    (fgunet_train_job, 1, True, "an ensemble averages the models of repeated splits, but the "
                                "training runs on one split; set REPEATS"),
    (fgunet_train_job, 2, "yes", "must be true or false, got 'yes'"),
    (randomforest_train_job, 2, True, "a Random Forest makes no ensemble"),
])
def test_an_ensemble_that_cannot_be_is_refused_before_training(tmp_path, scene, make_job,
                                                               repeats, ensemble, message):
    job = Job.load(make_job(tmp_path, scene, tmp_path / "m.lcfusion"))
    job.data["split"].update(repeats=repeats, ensemble=ensemble)
    with pytest.raises(LcfusionError) as error:
        run_training(job, RecordingReporter(), must_not_train)
    assert error.value.parameter == "ENSEMBLE"
    assert message in error.value.message


def test_an_ensemble_of_mrfusion_models_averages_dense_and_patch_probabilities():
    config = MRFusionConfig(ms_channels=3, ratio=4, patch_size=32, n_classes=5,
                            pan_widths=(8, 8, 8), ms_widths=(8, 8, 8))
    members = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        members.append(MRFusion(config).eval())
    ensemble = Ensemble(members).eval()
    assert ensemble.config == config
    generator = torch.Generator().manual_seed(1)
    pan = torch.rand(2, 1, 40, 41, generator=generator)
    ms = torch.rand(2, 3, 12, 12, generator=generator)
    rows, cols = torch.arange(9) // 4, torch.arange(10) // 4
    with torch.inference_mode():
        for method, inputs in (("forward", (pan[:, :, :32, :32], ms[:, :, :8, :8])),
                               ("dense_logits", (pan, ms, rows, cols, 9, 10))):
            mean = torch.stack([torch.softmax(getattr(m, method)(*inputs), dim=1)
                                for m in members]).mean(dim=0)
            combined = torch.softmax(getattr(ensemble, method)(*inputs), dim=1)
            torch.testing.assert_close(combined, mean, atol=1e-6, rtol=1e-5)


def twinns_of(metadata: dict) -> TWINNS:
    return TWINNS(TWINNSConfig.from_json(metadata["architecture"]))


def test_a_twinns_ensemble_classifies_with_the_mean_of_its_members(tmp_path, scene):
    model = tmp_path / "model.lcfusion"
    inputs = twinns_inputs(scene, gapfill=False)
    job = Job.load(twinns_train_job(tmp_path, scene, model, inputs, epochs=1,
                                    samples_per_epoch=128, validation_samples=32,
                                    branches="cnn"))
    outputs, _, given = train_ensemble(job, train_twinns)
    metadata = read_metadata(model)
    assert metadata["ensemble"] == {"members": 2, "seeds": [3, 4]}
    assert given == [{}, metadata["normalization"]]
    assert outputs["OA"] == pytest.approx(metadata["metrics"]["overall_accuracy"])
    classify = write_job(tmp_path / "classify", "classify-twinns",
                         inputs={"model": str(model), **inputs}, settings={"tile_size": 40},
                         outputs={"class_map": str(tmp_path / "classify" / "map.tif"),
                                  "confidence": str(tmp_path / "classify" / "confidence.tif")})
    classify_twinns(Job.load(classify), NullReporter())
    _, _, _, normalizers = load_twinns(model, CPU)
    sources = inputs_for_model(inputs, metadata, NullReporter())
    corner = Window(0, 0, 48, 48)  # each pixel's probabilities are its patch's alone
    with sources.s1.open() as s1, sources.s2.open() as s2:
        probabilities = [BatchedPatchPredictor(member, normalizers, CPU,
                                               metadata["architecture"]["patch_size"])
                         .predict([s1, s2], corner)[0] for member in members_of(model, twinns_of)]
    assert_maps_are_the_mean(tmp_path / "classify", [c["code"] for c in metadata["classes"]],
                             np.mean(probabilities, axis=0), corner)
    attention = write_job(tmp_path / "attention", "attention-twinns",
                          inputs={"model": str(model), **inputs},
                          reference={"path": str(scene.reference_path), "layer": "reference",
                                     "class_field": "class_id"},
                          outputs={"table": str(tmp_path / "attention" / "table.csv")})
    with pytest.raises(LcfusionError) as error:
        attention_twinns(Job.load(attention), NullReporter())
    assert error.value.parameter == "MODEL" and "is an ensemble of 2 models" in error.value.message
