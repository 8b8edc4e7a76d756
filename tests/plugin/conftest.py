"""Plugin-only fixtures: the lcfusion Processing provider registered for the whole session,
and a feedback that records what an algorithm told the user."""

from __future__ import annotations

import gc

import pytest
from qgis.core import (
    QgsApplication,
    QgsMapLayer,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
)

from lcfusion.plugin.provider import LcfusionProvider

#: Training settings small enough to run through Processing in a few seconds on 2 cores.
TINY_TRAINING = {"EPOCHS": 1, "PATCHES_PER_EPOCH": 16, "VALIDATION_PATCHES": 8,
                 "PATCH_SIZE": 32, "BATCH_SIZE": 8, "TILE_SIZE": 128, "MARGIN": 20}


@pytest.fixture(scope="session")
def lcfusion_provider(qgis_app, qgis_processing) -> LcfusionProvider:
    """The registered provider; holding it here keeps its algorithms alive."""
    registry = QgsApplication.processingRegistry()
    existing = registry.providerById("lcfusion")
    if existing is not None:  # registered by something else in this session
        yield existing
        return
    provider = LcfusionProvider()
    assert registry.addProvider(provider), "the lcfusion provider could not be registered"
    yield provider
    registry.removeProvider(provider)


@pytest.fixture(autouse=True)
def _collect_garbage():
    """Free each test's QGIS objects while QGIS is still up.

    `pytest.raises` keeps a reference cycle (frame -> exception info -> traceback -> frame)
    that holds Processing's context and algorithm objects; left to the interpreter's exit,
    they are destroyed after QGIS has shut down and the process segfaults.
    """
    yield
    gc.collect()


@pytest.fixture
def owned_layer():
    """Hands a layer made by a test to a project that deletes it when the test ends.

    QGIS 3.22 never frees the exception of a Python algorithm whose processAlgorithm()
    raised (the sip error handler keeps it), nor, through its traceback, the parameters the
    algorithm was given. A layer owned by Python and passed to a failing run would only be
    destroyed at interpreter exit, after QGIS has shut down, and crash the process.
    """
    project = QgsProject()

    def own(layer: QgsMapLayer) -> QgsMapLayer:
        assert layer.isValid()
        project.addMapLayer(layer, False)
        return layer

    yield own
    project.removeAllMapLayers()


@pytest.fixture
def check():
    """Runs an algorithm's checkParameterValues (the dialog's check) on parameter values."""

    def check(algorithm_id: str, parameters: dict) -> tuple[bool, str]:
        alg = QgsApplication.processingRegistry().createAlgorithmById(algorithm_id)
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        return alg.checkParameterValues(parameters, context)

    return check


@pytest.fixture
def tiny_training() -> dict:
    return dict(TINY_TRAINING)


class RecordingFeedback(QgsProcessingFeedback):
    """A feedback that keeps every message, as (kind, text) pairs."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[tuple[str, str]] = []

    def pushInfo(self, info):  # noqa: N802 - QGIS API
        self.messages.append(("info", info))
        super().pushInfo(info)

    def pushWarning(self, warning):  # noqa: N802 - QGIS API
        self.messages.append(("warning", warning))
        super().pushWarning(warning)

    def pushDebugInfo(self, info):  # noqa: N802 - QGIS API
        self.messages.append(("debug", info))
        super().pushDebugInfo(info)

    def reportError(self, error, fatalError=False):  # noqa: N802,N803 - QGIS API
        self.messages.append(("error", error))
        super().reportError(error, fatalError)

    def text(self, *kinds: str) -> str:
        return "\n".join(m for k, m in self.messages if not kinds or k in kinds)


@pytest.fixture
def recording_feedback():
    """A factory of `RecordingFeedback` objects."""
    return RecordingFeedback
