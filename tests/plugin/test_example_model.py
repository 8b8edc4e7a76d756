"""The example modeler chain opens as a model: its steps are lcfusion algorithms, wired in order."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingModelAlgorithm

import lcfusion

EXAMPLE_MODEL = Path(lcfusion.__file__).parent / "resources" / "models" / "fgunet_chain.model3"


def test_the_example_chain_opens_in_the_modeler(lcfusion_provider):
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(EXAMPLE_MODEL))
    assert model.name() == "Train FG-UNET, classify and evaluate"
    steps = model.childAlgorithms()
    assert {key: step.algorithmId() for key, step in steps.items()} == {
        "train": "lcfusion:trainfgunet", "classify": "lcfusion:classifyfgunet",
        "evaluate": "lcfusion:evaluate"}
    registry = QgsApplication.processingRegistry()
    for step in steps.values():
        assert registry.algorithmById(step.algorithmId()) is not None
        assert step.algorithm() is not None, f"{step.algorithmId()} does not resolve"
    assert model.dependsOnChildAlgorithms("evaluate") == {"train", "classify"}
    valid, problems = model.validate()
    assert valid, problems
    assert {p.name() for p in model.parameterDefinitions()} >= {
        "series", "training", "evaluation", "class_field", "name_field", "color_field",
        "epochs", "patches_per_epoch"}
    optional = {p.name() for p in model.parameterDefinitions()
                if p.flags() & p.Flag.FlagOptional}
    assert {"name_field", "color_field"} <= optional
    ok, message = model.checkParameterValues({}, QgsProcessingContext())
    assert not ok and "Incorrect parameter value" in message


def test_the_example_chain_opens_in_the_model_designer(lcfusion_provider, tmp_path,
                                                        monkeypatch):
    from processing.modeler import ModelerDialog as designer
    from processing.modeler.ModelerDialog import ModelerDialog

    # The test interface stub lacks iconSize()'s default argument; the designer runs without it.
    monkeypatch.setattr(designer, "iface", None)

    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(EXAMPLE_MODEL))
    dialog = ModelerDialog.create(model)
    try:
        shown = dialog.model()
        assert shown.name() == model.name()
        assert sorted(shown.childAlgorithms()) == ["classify", "evaluate", "train"]
        assert dialog.grab().save(str(tmp_path / "modeler.png"))
    finally:
        dialog.close()
        ModelerDialog.dlgs.remove(dialog)
