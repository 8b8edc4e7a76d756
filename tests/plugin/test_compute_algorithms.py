"""Training and classify algorithms on compute profiles: the COMPUTE parameter in the dialog
check, real two-rank mpirun runs through Processing, and cancel stopping the ranks."""

from __future__ import annotations

import numpy as np
import processing
import pytest
import rasterio
from helpers import fit_processes, two_rank_profiles
from processing_helpers import STOP_WITHIN, CancelAtStage, run_and_cancel
from processing_helpers import mrfusion_train_parameters as train_parameters

from lcfusion.engine.families.randomforest.commands import classify_randomforest
from lcfusion.engine.jobs import Job, write_job
from lcfusion.engine.modelfile.header import read_header
from lcfusion.engine.progress import NullReporter

pytestmark = pytest.mark.slow

TRAIN_ALGORITHMS = ("lcfusion:trainfgunet", "lcfusion:trainmrfusion", "lcfusion:traintwinns")
CLASSIFY_ALGORITHMS = ("lcfusion:classifyfgunet", "lcfusion:classifymrfusion",
                       "lcfusion:classifytwinns", "lcfusion:classifyrandomforest")


@pytest.fixture
def profiles(tmp_path, monkeypatch):
    """A profiles file with a two-rank mpirun profile; its work folder."""
    work = tmp_path / "work"
    path = two_rank_profiles(tmp_path / "profiles.toml", work)
    monkeypatch.setenv("LCFUSION_PROFILES", str(path))
    return work


@pytest.mark.parametrize("algorithm", TRAIN_ALGORITHMS)
def test_every_train_algorithm_takes_a_compute_profile(lcfusion_provider, algorithm, profiles):
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById(algorithm)
    parameter = alg.parameterDefinition("COMPUTE")
    assert parameter is not None and parameter.defaultValue() == "local"
    assert "Where the training runs" in alg.shortHelpString()


def test_an_unknown_profile_is_refused_before_the_run(lcfusion_provider, scene, profiles,
                                                      check):
    ok, message = check("lcfusion:trainmrfusion", train_parameters(scene, COMPUTE="gpu"))
    assert not ok
    assert message.startswith("Compute profile (local, or a profile of the settings) "
                              "[COMPUTE]: unknown compute profile 'gpu'")
    assert "known: local, two" in message
    assert check("lcfusion:trainmrfusion", train_parameters(scene, COMPUTE="two"))[0]


def test_training_on_two_mpi_ranks_through_processing(lcfusion_provider, scene, tmp_path,
                                                      profiles, recording_feedback):
    feedback = recording_feedback()
    model = tmp_path / "model.lcfusion"
    results = processing.run("lcfusion:trainmrfusion", train_parameters(
        scene, COMPUTE="two", EPOCHS=2, SAMPLES_PER_EPOCH=128, OUTPUT_MODEL=str(model)),
        feedback=feedback)
    log = feedback.text("info")
    assert "compute profile two: mpi: mpirun with 2 ranks on this machine" in log
    assert log.count("mpirun with 2 ranks") == 1  # described once, by the plugin
    assert "the weights are identical on the 2 ranks" in log
    assert "passed their checksum" in log
    assert results["OUTPUT_MODEL"] == str(model) and 0 <= results["OA"] <= 1
    assert len(read_header(model).metadata["training"]["history"]) == 2
    assert not list(profiles.iterdir())


def test_cancel_stops_the_ranks_of_a_remote_training(lcfusion_provider, scene, tmp_path,
                                                     profiles):
    model = tmp_path / "model.lcfusion"
    feedback = CancelAtStage("epoch ")
    message, stop_seconds = run_and_cancel("lcfusion:trainmrfusion", train_parameters(
        scene, COMPUTE="two", EPOCHS=30, SAMPLES_PER_EPOCH=512, OUTPUT_MODEL=str(model)),
        feedback)
    assert "Cancelled" in message
    assert stop_seconds < STOP_WITHIN, f"took {stop_seconds:.1f} s to stop"
    assert not fit_processes(tmp_path), "ranks left running"
    assert not model.exists() and not list(profiles.iterdir())


@pytest.mark.parametrize("algorithm", CLASSIFY_ALGORITHMS)
def test_every_classify_algorithm_takes_a_compute_profile(lcfusion_provider, algorithm,
                                                         profiles):
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById(algorithm)
    parameter = alg.parameterDefinition("COMPUTE")
    assert parameter is not None and parameter.defaultValue() == "local"
    assert "Where the classification runs" in alg.shortHelpString()
    assert "Where the training runs" not in alg.shortHelpString()


def test_classification_on_two_mpi_ranks_through_processing(lcfusion_provider, scene, tmp_path,
                                                            profiles, trained_randomforest,
                                                            recording_feedback):
    model = trained_randomforest[0]
    s2 = [str(p) for p in scene.s2_paths]
    local = write_job(tmp_path / "local", "classify-randomforest",
                      inputs={"model": str(model), "s2": {"paths": s2}},
                      settings={"tile_size": 48},
                      outputs={"class_map": str(tmp_path / "local" / "map.tif")})
    classify_randomforest(Job.load(local), NullReporter())
    feedback = recording_feedback()
    class_map = tmp_path / "map.tif"
    results = processing.run("lcfusion:classifyrandomforest", {
        "MODEL": str(model), "S2": s2, "TILE_SIZE": 48, "COMPUTE": "two",
        "OUTPUT": str(class_map)}, feedback=feedback)
    log = feedback.text("info")
    assert "compute profile two: mpi: mpirun with 2 ranks on this machine" in log
    assert log.count("mpirun with 2 ranks") == 1  # described once, by the plugin
    assert "to classify on 2 ranks" in log
    assert results["OUTPUT"] == str(class_map)
    with rasterio.open(class_map) as got, rasterio.open(tmp_path / "local" / "map.tif") as want:
        np.testing.assert_array_equal(got.read(1), want.read(1))
        assert got.transform == want.transform and got.crs == want.crs
        assert got.colormap(1) == want.colormap(1)
        assert got.tags()["LCFUSION_CLASSES"] == want.tags()["LCFUSION_CLASSES"]
    assert class_map.with_suffix(".qml").is_file(), "styled as a local class map"
    assert not list(profiles.iterdir())
