"""Shared fixtures: a small sample scene and one model of each family trained on it."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import (
    SMALL_SCENE,
    fgunet_train_job,
    mrfusion_train_job,
    randomforest_train_job,
    twinns_train_job,
)
from model_mutants import FAMILY_FIXTURES, ModelBytes

from lcfusion.engine.jobs import Job
from lcfusion.engine.progress import NullReporter
from lcfusion.engine.sample_scene import SampleScene, generate_sample_scene


@pytest.fixture(scope="session")
def scene(tmp_path_factory) -> SampleScene:
    return generate_sample_scene(tmp_path_factory.mktemp("scene"), SMALL_SCENE)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, scene) -> tuple[Path, dict]:
    """(model path, training outputs) of FG-UNET trained on the small scene."""
    from lcfusion.engine.families.fgunet.commands import train_fgunet

    folder = tmp_path_factory.mktemp("trained")
    model = folder / "model.lcfusion"
    job = Job.load(fgunet_train_job(folder, scene, model))
    return model, train_fgunet(job, NullReporter())


@pytest.fixture(scope="session")
def trained_mrfusion(tmp_path_factory, scene) -> tuple[Path, dict]:
    """(model path, training outputs) of MRFusion trained on the small scene's PAN + MS."""
    from lcfusion.engine.families.mrfusion.commands import train_mrfusion

    folder = tmp_path_factory.mktemp("trained-mrfusion")
    model = folder / "model.lcfusion"
    job = Job.load(mrfusion_train_job(folder, scene.pan_path, scene.ms_path,
                                      scene.reference_path, model))
    return model, train_mrfusion(job, NullReporter())


@pytest.fixture(scope="session")
def trained_twinns(tmp_path_factory, scene) -> tuple[Path, dict]:
    """(model path, training outputs) of TWINNS trained on the small scene's S1 + S2, with the
    cloud mask and gap-filling."""
    from lcfusion.engine.families.twinns.commands import train_twinns

    folder = tmp_path_factory.mktemp("trained-twinns")
    model = folder / "model.lcfusion"
    return model, train_twinns(Job.load(twinns_train_job(folder, scene, model)), NullReporter())


@pytest.fixture(scope="session")
def trained_randomforest(tmp_path_factory, scene) -> tuple[Path, dict]:
    """(model path, training outputs) of a Random Forest trained on the small scene's S2."""
    from lcfusion.engine.families.randomforest.commands import train_randomforest

    folder = tmp_path_factory.mktemp("trained-randomforest")
    model = folder / "model.lcfusion"
    job = Job.load(randomforest_train_job(folder, scene, model))
    return model, train_randomforest(job, NullReporter())


@pytest.fixture(params=list(FAMILY_FIXTURES))
def family(request) -> str:
    """Each model family in turn (the fuzz tests)."""
    return request.param


@pytest.fixture
def model(request, family) -> ModelBytes:
    """The bytes of the session's trained model of `family`."""
    path, _ = request.getfixturevalue(FAMILY_FIXTURES[family])
    return ModelBytes(path.read_bytes())
