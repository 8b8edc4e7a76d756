"""FG-UNET in the engine: it learns, classifies on the input grid, tiles exactly, cancels."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from helpers import fgunet_train_job, write_raster
from rasterio.windows import Window

from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.families.fgunet.commands import (
    FGUNetTrainConfig,
    chunking,
    class_weights,
    load_fgunet,
    train_fgunet,
)
from lcfusion.engine.inference.classifying import pixel_probabilities, predict_pixels
from lcfusion.engine.inference.tiling import TiledPredictor
from lcfusion.engine.io.normalization import PercentileNormalizer
from lcfusion.engine.io.series import SeriesSpec, TimeSeries
from lcfusion.engine.jobs import Job, settings_from, write_job
from lcfusion.engine.modelfile.header import read_metadata
from lcfusion.engine.progress import NullReporter
from lcfusion.engine.training.sampling import BandReader, PatchSource

BUILD = Path(__file__).resolve().parents[2] / "build"


def engine(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(BUILD)}
    return subprocess.run([sys.executable, "-m", "lcfusion.engine", *args], env=env,
                          capture_output=True, text=True, timeout=600, **kwargs)


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def classify_job(folder: Path, scene, model: Path, paths=None, confidence=True) -> Path:
    return write_job(folder, "classify-fgunet",
                     inputs={"model": str(model),
                             "series": {"paths": [str(p) for p in paths or scene.s2_paths]}},
                     settings={"tile_size": 64, "margin": 12},
                     outputs={"class_map": str(folder / "map.tif"),
                              "confidence": str(folder / "confidence.tif") if confidence
                              else None})


def test_training_learns_the_sample_scene(trained):
    path, outputs = trained
    # 8 classes: chance is 0.125; built-up and bare soil differ only in PAN texture, which
    # Sentinel-2 cannot see, so about 7/8 is the ceiling of an S2-only model.
    assert outputs["OA"] > 0.6
    assert outputs["KAPPA"] > 0.5
    meta = read_metadata(path)
    assert meta["family"] == "fgunet"
    assert meta["architecture"]["chunk_channels"] == 30 and meta["architecture"]["n_chunks"] == 2
    series = meta["inputs"]["series"]
    assert (series["n_dates"], series["bands_per_date"], series["dates_per_chunk"]) == (6, 10, 3)
    assert series["band_names"][0] == "B02" and series["dates"][0] == "2021-01-15"
    assert len(meta["normalization"]["low"]) == 60
    assert [c["name"] for c in meta["classes"]][:2] == ["water", "forest"]
    assert len(meta["training"]["history"]) == meta["training"]["settings"]["epochs"]
    assert meta["metrics"]["overall_accuracy"] == pytest.approx(outputs["OA"])
    summary = {row["name"]: row for row in meta["training"]["split_summary"]}
    assert all(row["test_objects"] >= 1 for row in summary.values())


def test_classify_cli_streams_json_and_writes_the_map_on_the_input_grid(tmp_path, scene,
                                                                        trained):
    result = engine("--events", "json", "classify-fgunet",
                    str(classify_job(tmp_path, scene, trained[0])))
    assert result.returncode == 0, result.stderr
    stream = events(result.stdout)
    percents = [e["percent"] for e in stream if e["event"] == "progress"]
    assert percents == sorted(percents) and percents[-1] == 100.0
    outputs = next(e["outputs"] for e in stream if e["event"] == "result")
    assert outputs["OUTPUT"] == str(tmp_path / "map.tif")
    codes = [c["code"] for c in outputs["CLASSES"]]

    with rasterio.open(scene.s2_paths[0]) as src, rasterio.open(tmp_path / "map.tif") as out:
        assert out.crs == src.crs and out.transform == src.transform
        assert (out.width, out.height) == (src.width, src.height)
        assert out.dtypes[0] == "uint8" and out.nodata == 255
        labels = out.read(1)
        colormap = out.colormap(1)
    assert set(np.unique(labels)) <= set(codes)
    assert colormap[1][:3] == (0x21, 0x66, 0xac)  # class 1, "water": its conventional blue
    with rasterio.open(scene.truth_path) as truth:
        agreement = (labels == truth.read(1)).mean()
    assert agreement > 0.6
    with rasterio.open(tmp_path / "confidence.tif") as conf:
        values = conf.read(1)
    assert 0.0 <= values.min() and values.max() <= 1.0 and values.mean() > 0.4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confidence.tif", "job.json",
                                                          "map.tif"]


def test_tiled_inference_equals_one_pass_over_the_image(scene, trained):
    _, model, _, normalizer = load_fgunet(trained[0], torch.device("cpu"))
    series = TimeSeries(SeriesSpec(tuple(str(p) for p in scene.s2_paths)))
    whole = TiledPredictor(model, normalizer, torch.device("cpu"), tile_size=512, margin=28)
    tiled = TiledPredictor(model, normalizer, torch.device("cpu"), tile_size=72, margin=28)
    assert len(list(tiled.cores(series.height, series.width))) == 36
    full = Window(0, 0, series.width, series.height)
    with series.open() as reader:
        expected, _ = whole.predict(reader, full)
        got = np.zeros_like(expected)
        for core in tiled.cores(series.height, series.width):
            probs, _ = tiled.predict(reader, core)
            r, c = int(core.row_off), int(core.col_off)
            got[:, r: r + probs.shape[1], c: c + probs.shape[2]] = probs
    assert np.abs(got - expected).max() < 1e-4


def test_held_out_labels_are_the_first_class_of_the_probabilities_and_minus_one_without_data(
        tmp_path, scene, trained):
    """The test polygons' labels (`predict_pixels`, tile by tile) are those of the whole
    probabilities (`pixel_probabilities`, kept for the validation part), -1 where a date has
    no data."""
    _, model, _, normalizer = load_fgunet(trained[0], torch.device("cpu"))
    paths = []
    for path in scene.s2_paths:
        with rasterio.open(path) as src:
            values = src.read().astype(np.float32)
        values[:, 10:20, 30:50] = np.nan
        paths.append(str(write_raster(tmp_path / path.name, values)))
    series = TimeSeries(SeriesSpec(tuple(paths)))
    rng = np.random.default_rng(5)
    rows = np.concatenate([rng.integers(0, series.height, 300), [10, 19, 15]])
    cols = np.concatenate([rng.integers(0, series.width, 300), [30, 49, 40]])
    without_data = (rows >= 10) & (rows < 20) & (cols >= 30) & (cols < 50)
    predictor = TiledPredictor(model, normalizer, torch.device("cpu"), tile_size=40, margin=12)
    with series.open() as reader:
        probabilities = pixel_probabilities(predictor, reader, series.grid, rows, cols,
                                            NullReporter())
        labels = predict_pixels(predictor, reader, series.grid, rows, cols, NullReporter())
    assert probabilities.shape == (8, rows.size)
    np.testing.assert_array_equal(np.isnan(probabilities).all(axis=0), without_data)
    np.testing.assert_array_equal(labels == -1, without_data)
    np.testing.assert_array_equal(labels[~without_data],
                                  probabilities[:, ~without_data].argmax(axis=0))
    assert np.unique(labels[~without_data]).size > 1


def test_test_time_augmentation_makes_the_map_of_a_transposed_image_the_transposed_map(
        tmp_path, scene, trained):
    _, model, _, normalizer = load_fgunet(trained[0], torch.device("cpu"))
    transposed = []
    for path in scene.s2_paths:
        with rasterio.open(path) as src:
            transposed.append(str(write_raster(tmp_path / path.name,
                                               src.read().transpose(0, 2, 1).copy())))
    probabilities = {}
    for tta in (False, True):
        predictor = TiledPredictor(model, normalizer, torch.device("cpu"), tile_size=512,
                                   margin=28, tta=tta)
        for name, paths in (("image", [str(p) for p in scene.s2_paths]),
                            ("transposed", transposed)):
            series = TimeSeries(SeriesSpec(tuple(paths)))
            with series.open() as reader:
                probs, _ = predictor.predict(reader, Window(0, 0, series.width, series.height))
            probabilities[name, tta] = probs
    # The network alone is not symmetric; the mean over the 8 symmetries is.
    plain = probabilities["transposed", False] - probabilities["image", False].transpose(0, 2, 1)
    assert np.abs(plain).max() > 1e-3
    augmented = (probabilities["transposed", True]
                 - probabilities["image", True].transpose(0, 2, 1))
    assert np.abs(augmented).max() < 1e-4
    assert np.allclose(probabilities["image", True].sum(axis=0), 1, atol=1e-4)


def test_patches_from_files_equal_patches_from_memory(scene, trained):
    meta = read_metadata(trained[0])
    normalizer = PercentileNormalizer.from_json(meta["normalization"])
    series = TimeSeries(SeriesSpec(tuple(str(p) for p in scene.s2_paths)))
    objects = BandReader(str(scene.truth_path))
    with series.open() as reader:
        memory = PatchSource(reader, normalizer, objects, 1 << 30)
        files = PatchSource(reader, normalizer, objects, 0)
        assert memory.in_memory and not files.in_memory
        for row, col in [(0, 0), (40, 7), (64, 64)]:
            a, b = memory.read(row, col, 32), files.read(row, col, 32)
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
    objects.close()


def test_model_and_input_band_mismatch(tmp_path, scene, trained):
    result = engine("--events", "json", "classify-fgunet",
                    str(classify_job(tmp_path, scene, trained[0], scene.s2_paths[:5])))
    assert result.returncode == 2
    error = next(e for e in events(result.stdout) if e["event"] == "error")
    assert error["parameter"] == "INPUT"
    assert "expects 6 dates x 10 bands (60 channels)" in error["message"]
    assert "5 dates x 10 bands" in error["message"]
    assert not (tmp_path / "map.tif").exists()


def test_cancel_stops_training_and_leaves_no_model(tmp_path, scene):
    model = tmp_path / "model.lcfusion"
    job = fgunet_train_job(tmp_path, scene, model, epochs=50)
    env = {**os.environ, "PYTHONPATH": str(BUILD)}
    process = subprocess.Popen([sys.executable, "-m", "lcfusion.engine", "--events", "json",
                                "train-fgunet", str(job)], stdout=subprocess.PIPE, text=True,
                               env=env)
    for line in process.stdout:
        if '"stage": "epoch 1/50"' in line:
            break
    process.send_signal(signal.SIGTERM)
    rest = process.stdout.read()
    assert process.wait(timeout=60) == 3
    assert any(e["event"] == "error" and "cancelled" in e["message"] for e in events(rest))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.json"]


def test_cli_text_mode_is_readable(tmp_path, trained):
    result = engine("model-info", str(trained[0]))
    assert result.returncode == 0
    info = json.loads(result.stdout)
    assert info["family"] == "fgunet" and info["classes"][0] == "1 water"


def test_job_errors_exit_with_status_2_and_name_the_parameter(tmp_path, scene):
    job = fgunet_train_job(tmp_path, scene, tmp_path / "m.lcfusion", patch_size=30)
    result = engine("train-fgunet", str(job))
    assert result.returncode == 2
    assert "ERROR: PATCH_SIZE: must be a multiple of 4" in result.stderr


def test_rasters_smaller_than_a_patch_name_the_input(tmp_path, scene):
    paths = [str(write_raster(tmp_path / f"s2_{i}.tif", np.ones((10, 3, 3), np.uint16),
                              origin=(600000.0, 5600000.0), crs="EPSG:32631"))
             for i in range(2)]
    job = write_job(tmp_path, "train-fgunet", inputs={"series": {"paths": paths}},
                    reference={"path": str(scene.reference_path), "class_field": "class_id"},
                    settings={"patch_size": 8}, outputs={"model": str(tmp_path / "m.lcfusion")})
    with pytest.raises(LcfusionError) as error:
        train_fgunet(Job.load(job), NullReporter())
    assert error.value.parameter == "INPUT"
    assert "only 3 x 3 pixels; FG-UNET needs at least 4 x 4" in error.value.message


def test_same_seed_same_model(tmp_path, scene):
    tiny = {"epochs": 1, "patches_per_epoch": 16, "validation_patches": 4, "threads": 1}
    weights = []
    for name in ("a", "b"):
        folder = tmp_path / name
        train_fgunet(Job.load(fgunet_train_job(folder, scene, folder / "m.lcfusion", **tiny)),
                     NullReporter())
        weights.append(load_fgunet(folder / "m.lcfusion", torch.device("cpu"))[1].state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_settings_presets_and_checks():
    paper = settings_from(FGUNetTrainConfig, {"preset": "paper", "epochs": 3},
                          {"paper": {"epochs": 50, "learning_rate": 1e-4}})
    assert (paper.epochs, paper.learning_rate) == (50, 1e-4)
    with pytest.raises(LcfusionError, match="unknown setting"):
        settings_from(FGUNetTrainConfig, {"epocs": 3})
    with pytest.raises(LcfusionError, match="PATCH_SIZE"):
        settings_from(FGUNetTrainConfig, {"patch_size": "big"})


def test_chunking_and_class_weights():
    assert [chunking(n, 0) for n in (5, 8, 9, 33)] == [1, 2, 3, 3]
    with pytest.raises(LcfusionError, match="use one of 1, 2, 4, 8"):
        chunking(8, 3)
    weights = class_weights(np.array([100, 300, 0]))
    assert weights[2] == 0 and weights[:2].sum() == pytest.approx(2.0)
    assert weights[0] / weights[1] == pytest.approx(3.0)
    root = class_weights(np.array([100, 400]), "sqrt")
    assert root.sum() == pytest.approx(2.0) and root[0] / root[1] == pytest.approx(2.0)
    assert class_weights(np.array([5, 50]), "none").tolist() == [1.0, 1.0]


def test_tiling_settings_are_checked_before_training():
    with pytest.raises(LcfusionError, match="multiple of 4") as info:
        settings_from(FGUNetTrainConfig, {"margin": 10})
    assert info.value.parameter == "MARGIN"
    with pytest.raises(LcfusionError, match="must exceed twice the margin"):
        settings_from(FGUNetTrainConfig, {"tile_size": 40, "margin": 20})


def test_class_map_and_confidence_must_differ(tmp_path, scene, trained):
    job = write_job(tmp_path, "classify-fgunet",
                    inputs={"model": str(trained[0]),
                            "series": {"paths": [str(p) for p in scene.s2_paths]}},
                    outputs={"class_map": str(tmp_path / "map.tif"),
                             "confidence": str(tmp_path / "map.tif")})
    result = engine("--events", "json", "classify-fgunet", str(job))
    error = next(e for e in events(result.stdout) if e["event"] == "error")
    assert result.returncode == 2 and error["parameter"] == "OUTPUT_CONFIDENCE"
    assert not (tmp_path / "map.tif").exists()


def test_an_orphaned_engine_cancels_itself(tmp_path, scene):
    """Killing what started the engine (QGIS, qgis_process) stops the engine too."""
    model = tmp_path / "model.lcfusion"
    job = fgunet_train_job(tmp_path, scene, model, epochs=50)
    command = " ".join([sys.executable, "-m", "lcfusion.engine", "--events", "json",
                        "train-fgunet", str(job)])
    env = {**os.environ, "PYTHONPATH": str(BUILD)}
    starter = subprocess.run(["bash", "-c", f"{command} > {tmp_path / 'out.jsonl'} & "
                              "echo $!; sleep 4"], capture_output=True, text=True, env=env,
                             timeout=60)
    pid = int(starter.stdout.split()[0])
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            break
        time.sleep(0.2)
    assert time.monotonic() < deadline, "the orphaned engine kept running"
    stream = events((tmp_path / "out.jsonl").read_text())
    assert any(e["event"] == "error" and "cancelled" in e["message"] for e in stream)
    assert not model.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.json", "out.jsonl"]
