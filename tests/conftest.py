"""Shared fixtures: a small sample scene and one FG-UNET model trained on it."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import SMALL_SCENE, fgunet_train_job

from lcfusion.engine.jobs import Job
from lcfusion.engine.progress import NullReporter
from lcfusion.engine.sample_scene import SampleScene, generate_sample_scene


@pytest.fixture(scope="session")
def scene(tmp_path_factory) -> SampleScene:
    return generate_sample_scene(tmp_path_factory.mktemp("scene"), SMALL_SCENE)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, scene) -> tuple[Path, dict]:
    """(model path, training outputs) of FG-UNET trained on the small scene."""
    from lcfusion.engine.fgunet import train_fgunet

    folder = tmp_path_factory.mktemp("trained")
    model = folder / "model.lcfusion"
    job = Job.load(fgunet_train_job(folder, scene, model))
    return model, train_fgunet(job, NullReporter())
