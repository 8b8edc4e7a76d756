"""The classify algorithms of the four families given damaged and forged model files (see
tests/model_mutants.py): the dialog's check refuses every one naming [MODEL] and never raises,
and a forged model that reaches the engine fails with a clean error naming the model."""

from __future__ import annotations

from pathlib import Path

import processing
import pytest
from model_mutants import (
    ModelBytes,
    damaged,
    edit,
    forged_metadata,
)
from qgis.core import QgsProcessingException, QgsRasterLayer

pytestmark = pytest.mark.timeout(600)  # the first test of a family trains its model

CLASSIFY = {"fgunet": "lcfusion:classifyfgunet", "mrfusion": "lcfusion:classifymrfusion",
            "twinns": "lcfusion:classifytwinns", "randomforest": "lcfusion:classifyrandomforest"}


def layer_parameters(scene, family: str, own) -> dict:
    """The layers each family's model was trained on (tests/conftest.py), loaded once."""
    def rasters(paths) -> list[QgsRasterLayer]:
        return [own(QgsRasterLayer(str(path), Path(path).stem, "gdal")) for path in paths]

    s2, s2_mask = rasters(scene.s2_paths), rasters([scene.s2_cloud_mask_path])
    return {"fgunet": lambda: {"INPUT": s2},
            "mrfusion": lambda: {"PAN": rasters([scene.pan_path])[0],
                                 "MS": rasters([scene.ms_path])[0]},
            "twinns": lambda: {"S1": rasters(scene.s1_paths), "S2": s2, "S2_MASK": s2_mask},
            "randomforest": lambda: {"S2": s2, "S2_MASK": s2_mask}}[family]()




def test_the_check_refuses_every_mutant_naming_the_model(lcfusion_provider, scene, tmp_path,
                                                        check, owned_layer, family, model):
    target = tmp_path / "forged.lcfusion"
    target.write_bytes(model.data)
    parameters = {**layer_parameters(scene, family, owned_layer), "MODEL": str(target),
                  "OUTPUT": str(tmp_path / "map.tif")}
    assert check(CLASSIFY[family], parameters) == (True, "")
    mutants = {**forged_metadata(model, family),
               **damaged(model, f"plugin-{family}", flips=2, truncations=3)}
    for name, data in mutants.items():
        target.write_bytes(data)
        ok, message = check(CLASSIFY[family], parameters)
        assert not ok, name
        assert message.startswith("Model file [MODEL]: forged.lcfusion "), (name, message)
    assert len(mutants) >= 30


def test_a_forged_model_that_reaches_the_engine_fails_cleanly(lcfusion_provider, scene, trained,
                                                              tmp_path, recording_feedback):
    """The model file is replaced by a forgery (wrong types, a checksum that matches) after the
    dialog's check: the engine refuses it, and Processing names the model."""
    model = ModelBytes(trained[0].read_bytes())
    forged = model.forge(edit(model.metadata, "classes.0.color", 255))
    target = tmp_path / "model.lcfusion"
    target.write_bytes(model.data)

    class SwapAfterTheCheck(recording_feedback):
        """Replaces the model file when the algorithm first reports (writing the job)."""

        def pushInfo(self, info):  # noqa: N802 - QGIS API
            if target.read_bytes() != forged:
                target.write_bytes(forged)
            super().pushInfo(info)

    out = tmp_path / "out"
    out.mkdir()
    parameters = {"INPUT": [str(p) for p in scene.s2_paths], "MODEL": str(target),
                  "OUTPUT": str(out / "map.tif")}
    with pytest.raises(QgsProcessingException) as caught:
        processing.run(CLASSIFY["fgunet"], parameters, feedback=SwapAfterTheCheck())
    message = str(caught.value)
    assert message.startswith("Model file [MODEL]: model.lcfusion is not a valid lcfusion "
                              "model file (its metadata entry classes[0].color must be a "
                              "colour #rrggbb, not 255)")
    assert "unexpectedly" not in message
    assert list(out.iterdir()) == []
    with pytest.raises(QgsProcessingException) as caught:
        processing.run(CLASSIFY["fgunet"], parameters)
    assert str(caught.value).startswith("Unable to execute algorithm\nModel file [MODEL]: "
                                        "model.lcfusion is not a valid lcfusion model file")
