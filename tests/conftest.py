"""Shared fixtures: a small sample scene and one model of each family trained on it."""

from __future__ import annotations

import fcntl
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from helpers import (
    SMALL_SCENE,
    exported_onnx,
    fgunet_train_job,
    mrfusion_train_job,
    randomforest_train_job,
    twinns_train_job,
)
from model_mutants import FAMILY_FIXTURES, ModelBytes

from lcfusion.engine.jobs import Job
from lcfusion.engine.progress import NullReporter
from lcfusion.engine.sample_scene import SampleScene, generate_sample_scene

Built = TypeVar("Built")


def built_once(tmp_path_factory, name: str, build: Callable[[Path], Built]) -> Built:
    """`build(folder)` once per test run. Under pytest-xdist (make test) the first worker to
    ask builds it in the run's shared temporary folder, holding a lock, and the other workers
    wait for it and load its pickled result; a single process builds it in a folder of its own."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return build(tmp_path_factory.mktemp(name))
    folder = tmp_path_factory.getbasetemp().parent / name
    result = folder.with_name(name + ".pickle")
    with open(folder.with_name(name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if result.exists():
            return pickle.loads(result.read_bytes())
        folder.mkdir(exist_ok=True)
        built = build(folder)
        result.write_bytes(pickle.dumps(built))
        return built


@pytest.fixture(scope="session")
def scene(tmp_path_factory) -> SampleScene:
    return built_once(tmp_path_factory, "scene",
                      lambda folder: generate_sample_scene(folder, SMALL_SCENE))


@pytest.fixture(scope="session")
def trained(tmp_path_factory, scene) -> tuple[Path, dict]:
    """(model path, training outputs) of FG-UNET trained on the small scene."""
    from lcfusion.engine.families.fgunet.commands import train_fgunet

    def build(folder: Path) -> tuple[Path, dict]:
        model = folder / "model.lcfusion"
        return model, train_fgunet(Job.load(fgunet_train_job(folder, scene, model)),
                                   NullReporter())

    return built_once(tmp_path_factory, "trained", build)


@pytest.fixture(scope="session")
def trained_mrfusion(tmp_path_factory, scene) -> tuple[Path, dict]:
    """(model path, training outputs) of MRFusion trained on the small scene's PAN + MS."""
    from lcfusion.engine.families.mrfusion.commands import train_mrfusion

    def build(folder: Path) -> tuple[Path, dict]:
        model = folder / "model.lcfusion"
        job = Job.load(mrfusion_train_job(folder, scene.pan_path, scene.ms_path,
                                          scene.reference_path, model))
        return model, train_mrfusion(job, NullReporter())

    return built_once(tmp_path_factory, "trained-mrfusion", build)


@pytest.fixture(scope="session")
def trained_twinns(tmp_path_factory, scene) -> tuple[Path, dict]:
    """(model path, training outputs) of TWINNS trained on the small scene's S1 + S2, with the
    cloud mask and gap-filling."""
    from lcfusion.engine.families.twinns.commands import train_twinns

    def build(folder: Path) -> tuple[Path, dict]:
        model = folder / "model.lcfusion"
        return model, train_twinns(Job.load(twinns_train_job(folder, scene, model)),
                                   NullReporter())

    return built_once(tmp_path_factory, "trained-twinns", build)


@pytest.fixture(scope="session")
def trained_randomforest(tmp_path_factory, scene) -> tuple[Path, dict]:
    """(model path, training outputs) of a Random Forest trained on the small scene's S2."""
    from lcfusion.engine.families.randomforest.commands import train_randomforest

    def build(folder: Path) -> tuple[Path, dict]:
        model = folder / "model.lcfusion"
        return model, train_randomforest(Job.load(randomforest_train_job(folder, scene, model)),
                                         NullReporter())

    return built_once(tmp_path_factory, "trained-randomforest", build)


@pytest.fixture(scope="session")
def fgunet_onnx(tmp_path_factory, trained) -> Path:
    """The session's FG-UNET exported to ONNX."""
    return built_once(tmp_path_factory, "fgunet-onnx",
                      lambda folder: exported_onnx(folder, trained[0]))


@pytest.fixture(scope="session")
def randomforest_onnx(tmp_path_factory, trained_randomforest) -> Path:
    """The session's Random Forest exported to ONNX."""
    return built_once(tmp_path_factory, "randomforest-onnx",
                      lambda folder: exported_onnx(folder, trained_randomforest[0]))


@pytest.fixture(params=list(FAMILY_FIXTURES))
def family(request) -> str:
    """Each model family in turn (the fuzz tests)."""
    return request.param


@pytest.fixture
def model(request, family) -> ModelBytes:
    """The bytes of the session's trained model of `family`."""
    path, _ = request.getfixturevalue(FAMILY_FIXTURES[family])
    return ModelBytes(path.read_bytes())


@pytest.fixture
def layer_tree_view(qgis_iface, monkeypatch):
    """A real layer tree view behind `iface.layerTreeView()`: Processing's post-processing
    hands it to `QgsProcessingGuiUtils.addResultLayers` since QGIS 3.40, which refuses the test
    interface's stand-in."""
    from qgis.core import QgsLayerTreeModel, QgsProject
    from qgis.gui import QgsLayerTreeView

    view = QgsLayerTreeView()
    view.setModel(QgsLayerTreeModel(QgsProject.instance().layerTreeRoot()))
    monkeypatch.setattr(qgis_iface, "layerTreeView", lambda: view)
    return view
