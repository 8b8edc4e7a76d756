"""ONNX export and classification: the ONNX map is the PyTorch map, the classification runs
with torch unimportable, and foreign, malformed or altered .onnx files are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import rasterio
from helpers import (
    exported_onnx,
    fgunet_classify_job,
    mrfusion_classify_job,
    randomforest_classify_job,
    twinns_inputs,
)
from onnx import TensorProto, helper
from rasterio.windows import Window

from lcfusion.engine.cli import job_command
from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.families.fgunet.classify_onnx import SIZE_MULTIPLE
from lcfusion.engine.families.fgunet.network import FGUNet
from lcfusion.engine.families.onnxexport import with_metadata
from lcfusion.engine.jobs import Job, write_job
from lcfusion.engine.modelfile.header import read_metadata
from lcfusion.engine.progress import NullReporter

BUILD = Path(__file__).resolve().parents[2] / "build"


def classified(folder: Path, job_of, model: Path, command: str) -> tuple[np.ndarray, np.ndarray]:
    """The class map and confidence of `command` run on `model` (the ONNX version for an
    .onnx file, as the engine's command line picks it)."""
    folder.mkdir()
    job = Job.load(job_of(folder, model))
    job_command(command, onnx=model.suffix == ".onnx")(job, NullReporter())
    with rasterio.open(folder / "map.tif") as classes, \
            rasterio.open(folder / "confidence.tif") as confidence:
        return classes.read(1), confidence.read(1)


def test_the_fgunet_onnx_map_equals_the_pytorch_map(tmp_path, scene, trained, fgunet_onnx):
    def job_of(folder, model):
        return fgunet_classify_job(folder, scene, model)

    torch_map, torch_conf = classified(tmp_path / "torch", job_of, trained[0], "classify-fgunet")
    onnx_map, onnx_conf = classified(tmp_path / "onnx", job_of, fgunet_onnx, "classify-fgunet")
    np.testing.assert_array_equal(onnx_map, torch_map)
    np.testing.assert_allclose(onnx_conf, torch_conf, atol=1e-4)
    assert len(np.unique(torch_map)) > 1


def corner(source: Path, target: Path, side: int) -> Path:
    """The top-left `side` x `side` pixels of a raster (the grids of a PAN / MS pair cut at
    one corner still fit)."""
    with rasterio.open(source) as src:
        window = Window(0, 0, side, side)
        profile = {**src.profile, "width": side, "height": side,
                   "transform": src.window_transform(window)}
        with rasterio.open(target, "w", **profile) as dst:
            dst.write(src.read(window=window))
    return target


def test_the_mrfusion_onnx_map_equals_the_pytorch_map(tmp_path, scene, trained_mrfusion):
    """MRFusion's dense network with its four inputs (PAN, MS, the MS patch starts), on
    tiles of every size the raster's edges leave (a 160-pixel corner of the PAN, for speed)."""
    model = exported_onnx(tmp_path, trained_mrfusion[0])
    pan = corner(scene.pan_path, tmp_path / "pan.tif", 160)
    ms = corner(scene.ms_path, tmp_path / "ms.tif", 40)

    def job_of(folder, path):
        return mrfusion_classify_job(folder, path, pan, ms, tile_size=100)

    torch_map, torch_conf = classified(tmp_path / "torch", job_of, trained_mrfusion[0],
                                       "classify-mrfusion")
    onnx_map, onnx_conf = classified(tmp_path / "onnx", job_of, model, "classify-mrfusion")
    np.testing.assert_array_equal(onnx_map, torch_map)
    np.testing.assert_allclose(onnx_conf, torch_conf, atol=1e-4)
    assert read_metadata(model)["onnx"]["inputs"] == ["pan", "ms", "ms_rows", "ms_cols"]


@pytest.mark.slow  # the export traces TWINNS's unrolled ConvGRU: the slowest of the families
def test_the_twinns_onnx_map_equals_the_pytorch_map(tmp_path, scene, trained_twinns):
    """TWINNS's CNN and ConvGRU-with-attention branches of both sources, traced over the
    model's dates, on a 32-pixel corner of the scene (for speed); with test-time augmentation
    (the 8 symmetries of a tile) on one tile."""
    import torch

    from lcfusion.engine.families.twinns.classify_onnx import OnnxPatchPredictor
    from lcfusion.engine.families.twinns.commands import load_twinns
    from lcfusion.engine.families.twinns.inputs import inputs_for_model
    from lcfusion.engine.families.twinns.patches import BatchedPatchPredictor
    from lcfusion.engine.inference.onnxsession import OnnxModel

    model = exported_onnx(tmp_path, trained_twinns[0])
    cut = tmp_path / "corner"
    cut.mkdir()
    inputs = {source: {key: ([str(corner(Path(path), cut / Path(path).name, 32))
                              for path in value] if key in ("paths", "masks") else value)
                       for key, value in entries.items()}
              for source, entries in twinns_inputs(scene).items()}

    def job_of(folder, path):
        return write_job(folder, "classify-twinns", inputs={"model": str(path), **inputs},
                         settings={"tile_size": 48},
                         outputs={"class_map": str(folder / "map.tif"),
                                  "confidence": str(folder / "confidence.tif")})

    torch_map, torch_conf = classified(tmp_path / "torch", job_of, trained_twinns[0],
                                       "classify-twinns")
    onnx_map, onnx_conf = classified(tmp_path / "onnx", job_of, model, "classify-twinns")
    np.testing.assert_array_equal(onnx_map, torch_map)
    np.testing.assert_allclose(onnx_conf, torch_conf, atol=1e-4)

    metadata, network, _, normalizers = load_twinns(trained_twinns[0], torch.device("cpu"))
    layers = inputs_for_model(inputs, metadata, NullReporter())
    patch = network.config.patch_size
    predictors = [BatchedPatchPredictor(network, normalizers, torch.device("cpu"), patch,
                                        tta=True),
                  OnnxPatchPredictor(OnnxModel(model, "twinns", "cpu"), normalizers, patch,
                                     tta=True)]
    with layers.s1.open() as s1, layers.s2.open() as s2:
        (expected, _), (got, _) = (p.predict([s1, s2], Window(10, 12, 12, 10))
                                   for p in predictors)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_the_random_forest_onnx_map_equals_its_own_map(tmp_path, scene, trained_randomforest,
                                                       randomforest_onnx):
    """The forest's arrays as one TreeEnsembleClassifier: the same classes at every pixel."""
    model = randomforest_onnx

    def job_of(folder, path):
        return randomforest_classify_job(folder, scene, path)

    forest_map, forest_conf = classified(tmp_path / "forest", job_of, trained_randomforest[0],
                                         "classify-randomforest")
    onnx_map, onnx_conf = classified(tmp_path / "onnx", job_of, model, "classify-randomforest")
    np.testing.assert_array_equal(onnx_map, forest_map)
    np.testing.assert_allclose(onnx_conf, forest_conf, atol=1e-4)
    assert "model_type" not in {p.key for p in onnx.load(str(model)).metadata_props}


def test_the_export_carries_the_model_metadata_and_deepness_keys(trained, fgunet_onnx):
    metadata = read_metadata(fgunet_onnx)
    original = read_metadata(trained[0])
    assert metadata["onnx"] == {"inputs": ["series"], "output": "probabilities"}
    for entry in ("family", "classes", "inputs", "normalization", "architecture"):
        assert metadata[entry] == original[entry]
    props = {p.key: p.value for p in onnx.load(str(fgunet_onnx)).metadata_props}
    assert json.loads(props["model_type"]) == "Segmentor"
    assert json.loads(props["class_names"]) == {
        str(i): c["name"] for i, c in enumerate(original["classes"])}
    assert json.loads(props["resolution"]) == 1000
    assert json.loads(props["tile_size"]) == 512
    assert FGUNet.size_multiple == SIZE_MULTIPLE  # what the ONNX tiling pools on, without torch


def test_classifying_with_onnx_imports_no_torch(tmp_path, scene, fgunet_onnx):
    """The engine's command line classifies with an .onnx model while torch, safetensors and
    scikit-learn cannot be imported (the light engine environment)."""
    job = fgunet_classify_job(tmp_path, scene, fgunet_onnx)
    code = textwrap.dedent(f"""
        import sys
        for name in ("torch", "safetensors", "sklearn"):
            sys.modules[name] = None
        from lcfusion.engine.cli import main
        status = main(["--events", "json", "classify-fgunet", {str(job)!r}])
        assert not [m for m in sys.modules if m.split(".")[0] == "torch" and sys.modules[m]]
        sys.exit(status)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(BUILD)}, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "map.tif").is_file()


def classify_error(folder: Path, scene, model: Path) -> LcfusionError:
    job = Job.load(fgunet_classify_job(folder, scene, model))
    with pytest.raises(LcfusionError) as caught:
        job_command("classify-fgunet", onnx=True)(job, NullReporter())
    assert caught.value.parameter == "MODEL"
    assert not (folder / "map.tif").exists()
    return caught.value


def identity_graph(domain: str = "") -> onnx.ModelProto:
    """A one-node graph; an operator of another `domain` is a custom operator."""
    node = helper.make_node("Relu" if not domain else "Evil", ["series"], ["probabilities"],
                            domain=domain)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("series", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, None)])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets)


def test_foreign_malformed_and_altered_onnx_files_are_refused(tmp_path, scene, fgunet_onnx):
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(identity_graph().SerializeToString())
    assert "carries no lcfusion metadata" in classify_error(tmp_path, scene, foreign).message
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff" * 64)
    assert "not a well-formed ONNX file" in classify_error(tmp_path, scene, garbage).message
    altered = tmp_path / "altered.onnx"
    data = bytearray(fgunet_onnx.read_bytes())
    data[len(data) // 2] ^= 1  # a weight's bit
    altered.write_bytes(bytes(data))
    assert "checksum does not match" in classify_error(tmp_path, scene, altered).message


def test_a_custom_operator_is_refused_not_run(tmp_path, scene, fgunet_onnx):
    """A graph with an operator outside ONNX's domains, under valid lcfusion metadata: no
    custom-operator library is registered, so onnxruntime refuses to build it."""
    metadata = read_metadata(fgunet_onnx)
    custom = tmp_path / "custom.onnx"
    custom.write_bytes(with_metadata(identity_graph("ai.evil"), metadata, {}))
    message = classify_error(tmp_path, scene, custom).message
    assert message.startswith("onnxruntime cannot load custom.onnx")
