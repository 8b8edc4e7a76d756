"""Shared fixtures: a small sample scene and one FG-UNET model trained on it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lcfusion.engine.jobs import Job, write_job
from lcfusion.engine.progress import NullReporter
from lcfusion.engine.sample_scene import SampleScene, SampleSceneConfig, generate_sample_scene

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LCFUSION_SHARED_DATA", REPO.parent / "shared" / "data"))

#: A small but complete scene: every class has enough polygons for a 3-way split.
SMALL_SCENE = SampleSceneConfig(width=96, height=96, n_s2_dates=6, n_s1_dates=8, seed=11)

#: Training settings that learn the small scene in seconds on two CPU cores.
QUICK_TRAINING = {"epochs": 6, "batch_size": 8, "patch_size": 32, "patches_per_epoch": 96,
                  "validation_patches": 16, "learning_rate": 0.003, "max_shift": 8,
                  "tile_size": 128, "margin": 20}


def shared_data(*parts: str) -> Path:
    """A path in ../shared/data; skips the test with a reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path} (tests read it from ../shared/data)")
    return path


@pytest.fixture(scope="session")
def scene(tmp_path_factory) -> SampleScene:
    return generate_sample_scene(tmp_path_factory.mktemp("scene"), SMALL_SCENE)


def fgunet_train_job(folder: Path, scene: SampleScene, model: Path, **settings) -> Path:
    return write_job(
        folder, "train-fgunet",
        inputs={"series": {"paths": [str(p) for p in scene.s2_paths]}},
        reference={"path": str(scene.reference_path), "layer": scene.reference_layer,
                   "class_field": "class_id", "name_field": "class_name"},
        split={"train": 0.6, "validation": 0.2, "test": 0.2, "seed": 3},
        settings={**QUICK_TRAINING, **settings},
        outputs={"model": str(model)},
    )


@pytest.fixture(scope="session")
def trained(tmp_path_factory, scene) -> tuple[Path, dict]:
    """(model path, training outputs) of FG-UNET trained on the small scene."""
    from lcfusion.engine.fgunet import train_fgunet

    folder = tmp_path_factory.mktemp("trained")
    model = folder / "model.lcfusion"
    job = Job.load(fgunet_train_job(folder, scene, model))
    return model, train_fgunet(job, NullReporter())
