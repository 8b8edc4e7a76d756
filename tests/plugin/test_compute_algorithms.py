"""Training algorithms on compute profiles: the COMPUTE parameter in the dialog check, a real
two-rank mpirun run through Processing, and cancel stopping the ranks."""

from __future__ import annotations

import processing
import pytest
from helpers import fit_processes, two_rank_profiles
from processing_helpers import STOP_WITHIN, CancelAtStage, run_and_cancel
from processing_helpers import mrfusion_train_parameters as train_parameters

from lcfusion.engine.modelfile.header import read_header

pytestmark = pytest.mark.slow

TRAIN_ALGORITHMS = ("lcfusion:trainfgunet", "lcfusion:trainmrfusion", "lcfusion:traintwinns")


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
    assert "Compute profile two: mpi: mpirun with 2 ranks on this machine" in log
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
