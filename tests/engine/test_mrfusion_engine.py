"""MRFusion in the engine: it learns PAN texture, maps at PAN resolution, dense = per patch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from helpers import cropped_pair, mrfusion_classify_job, mrfusion_train_job, write_raster
from rasterio.windows import Window

from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.families.jobsteps import balanced_pixels
from lcfusion.engine.families.mrfusion.commands import (
    classify_mrfusion,
    load_mrfusion,
    train_mrfusion,
)
from lcfusion.engine.families.mrfusion.patches import DensePanMsPredictor, PatchPairs, augment_pairs
from lcfusion.engine.io.panms import PanMsPair
from lcfusion.engine.io.series import SeriesSpec
from lcfusion.engine.jobs import Job
from lcfusion.engine.modelfile.header import read_metadata
from lcfusion.engine.progress import NullReporter

TEXTURE_CLASSES = ("built-up", "bare soil")


def pair_of(scene) -> PanMsPair:
    return PanMsPair(SeriesSpec((str(scene.pan_path),)), SeriesSpec((str(scene.ms_path),)))


def test_training_learns_the_classes_only_pan_texture_separates(trained_mrfusion):
    path, outputs = trained_mrfusion
    meta = read_metadata(path)
    f1 = {row["name"]: row["f1"] for row in meta["metrics"]["per_class"]}
    # Built-up and bare soil have the same spectra everywhere; only the 2.5 m PAN texture
    # tells them apart. 8 classes: chance is 0.125.
    assert all(f1[name] > 0.8 for name in TEXTURE_CLASSES), f1
    assert outputs["OA"] > 0.45
    assert meta["family"] == "mrfusion"
    assert meta["architecture"] == {**meta["architecture"], "ratio": 4, "patch_size": 32,
                                    "ms_channels": 4, "branches": "both", "n_classes": 8}
    assert meta["inputs"]["ms"]["band_names"] == ["Blue", "Green", "Red", "NIR"]
    assert meta["inputs"]["alignment"]["ratio"] == 4
    assert meta["training"]["settings"]["patch_size"] == 32  # the default at ratio 4, recorded
    assert set(meta["normalization"]) == {"pan", "ms"}
    assert len(meta["training"]["history"]) == 3


@pytest.mark.parametrize("memory_limit", [2**31, 0], ids=["in-memory", "by-windows"])
def test_dense_tiles_equal_per_patch_evaluation(trained_mrfusion, scene, memory_limit):
    _, model, _, normalizer = load_mrfusion(trained_mrfusion[0], torch.device("cpu"))
    pair = pair_of(scene)
    rng = np.random.default_rng(5)
    size = pair.pan.height
    rows = np.concatenate([[0, size - 1, 1, 200], rng.integers(0, size, 12)])
    cols = np.concatenate([[0, size - 1, size - 2, 3], rng.integers(0, size, 12)])
    tile = 32
    predictor = DensePanMsPredictor(model, normalizer, torch.device("cpu"), tile_size=tile)
    with pair.open() as reader:
        pairs = PatchPairs.of(reader, normalizer, 32, memory_limit)
        assert pairs.in_memory == bool(memory_limit)
        per_patch = predictor.patch_logits(pairs, rows, cols, batch_size=7)
        for k, (row, col) in enumerate(zip(rows, cols, strict=True)):
            core = Window(col // tile * tile, row // tile * tile, tile, tile)
            logits = predictor.tile_logits(predictor.load(reader, core))
            dense = logits[:, row - int(core.row_off), col - int(core.col_off)].numpy()
            np.testing.assert_allclose(dense, per_patch[k], atol=1e-4)
            assert dense.argmax() == per_patch[k].argmax()


def test_test_time_augmentation_averages_the_8_symmetries_of_each_patch_pair(
        trained_mrfusion, scene):
    _, model, _, normalizer = load_mrfusion(trained_mrfusion[0], torch.device("cpu"))
    pair = pair_of(scene)
    rows, cols = np.array([0, 40, 383, 17]), np.array([5, 383, 200, 31])
    predictor = DensePanMsPredictor(model, normalizer, torch.device("cpu"), tile_size=48,
                                    tta=True)
    plain = DensePanMsPredictor(model, normalizer, torch.device("cpu"), tile_size=48)
    with pair.open() as reader:
        pairs = PatchPairs.of(reader, normalizer, 32, 2**31)
        pan, ms = (torch.from_numpy(a) for a in pairs.read(rows, cols))
        expected = torch.zeros(rows.size, 8)
        for turns in range(4):
            for transpose in (False, True):
                p, m = (torch.rot90(a, turns, dims=(2, 3)) for a in (pan, ms))
                if transpose:
                    p, m = p.transpose(2, 3), m.transpose(2, 3)
                with torch.inference_mode():
                    expected += torch.softmax(model(p.contiguous(), m.contiguous()), dim=1) / 8
        plain_gap = 0.0
        for k, (row, col) in enumerate(zip(rows, cols, strict=True)):
            core = Window(col // 48 * 48, row // 48 * 48, 48, 48)
            tile = predictor.load(reader, core)
            probs, _ = predictor.infer(tile)
            at = (slice(None), row - int(core.row_off), col - int(core.col_off))
            np.testing.assert_allclose(probs[at], expected[k].numpy(), atol=1e-5)
            plain_gap = max(plain_gap, np.abs(plain.infer(tile)[0][at] - probs[at]).max())
    # the plain answer is farther off than the tolerance, so the test tells the two apart
    assert plain_gap > 1e-4


def test_classify_writes_the_map_on_the_pan_grid(tmp_path, trained_mrfusion, scene):
    job = Job.load(mrfusion_classify_job(tmp_path, trained_mrfusion[0], scene.pan_path,
                                         scene.ms_path, tile_size=100))
    outputs = classify_mrfusion(job, NullReporter())
    with rasterio.open(scene.pan_path) as pan, rasterio.open(outputs["OUTPUT"]) as out:
        assert (out.width, out.height) == (pan.width, pan.height) == (384, 384)
        assert out.transform == pan.transform and out.crs == pan.crs
        labels = out.read(1)
        assert out.colormap(1)[7][:3] != (0, 0, 0)
    with rasterio.open(outputs["OUTPUT_CONFIDENCE"]) as conf:
        confidence = conf.read(1)
    assert np.isin(labels, np.arange(1, 9)).all()
    assert ((confidence > 0.1) & (confidence <= 1.0)).all()
    with rasterio.open(scene.truth_path) as truth:
        truth_pan = np.kron(truth.read(1), np.ones((4, 4), dtype=np.uint8))
    for code in (7, 8):  # built-up and bare soil, wherever they are in the scene
        assert (labels[truth_pan == code] == code).mean() > 0.7


def test_map_does_not_depend_on_the_tile_size(tmp_path, trained_mrfusion, scene):
    pan, ms = cropped_pair(tmp_path / "crop", scene)
    maps = []
    for tile in (40, 96):
        folder = tmp_path / str(tile)
        job = Job.load(mrfusion_classify_job(folder, trained_mrfusion[0], pan, ms,
                                             confidence=False, tile_size=tile))
        with rasterio.open(classify_mrfusion(job, NullReporter())["OUTPUT"]) as src:
            maps.append(src.read(1))
            assert src.transform == rasterio.open(pan).transform
    assert (maps[0] == maps[1]).mean() > 0.9999


def test_ablation_is_recorded_and_classifies(tmp_path, scene):
    model = tmp_path / "pan-only.lcfusion"
    job = Job.load(mrfusion_train_job(
        tmp_path / "train", scene.pan_path, scene.ms_path, scene.reference_path, model,
        split={"train": 1.0, "validation": 0.0, "test": 0.0}, branches="pan", epochs=1,
        samples_per_epoch=64, validation_samples=0))
    train_mrfusion(job, NullReporter())
    meta = read_metadata(model)
    assert meta["architecture"]["branches"] == "pan"
    assert meta["training"]["settings"]["branches"] == "pan"
    assert meta["metrics"] is None
    pan, ms = cropped_pair(tmp_path / "crop", scene, 64)
    job = Job.load(mrfusion_classify_job(tmp_path / "classify", model, pan, ms,
                                         confidence=False))
    with rasterio.open(classify_mrfusion(job, NullReporter())["OUTPUT"]) as src:
        assert src.width == 64


def test_paper_preset_sets_the_paper_split(tmp_path, scene):
    from lcfusion.engine.families.mrfusion.commands import PRESETS, MRFusionTrainConfig
    from lcfusion.engine.jobs import settings_from
    from lcfusion.engine.reference.splits import preset_split

    settings = {"preset": "paper", "epochs": 3}
    config = settings_from(MRFusionTrainConfig, settings, PRESETS)
    assert (config.epochs, config.batch_size, config.learning_rate) == (250, 64, 2e-4)
    split = preset_split({"train": 0.6, "validation": 0.2, "test": 0.2, "seed": 4}, settings,
                         PRESETS)
    assert (split.train, split.validation, split.test, split.seed) == (0.3, 0.0, 0.7, 4)


def test_augmentation_turns_pan_and_ms_together():
    rng = np.random.default_rng(0)
    ms = rng.random((16, 2, 4, 4)).astype(np.float32)
    pan = np.kron(ms[:, :1], np.ones((1, 1, 4, 4), dtype=np.float32))
    pan, ms = augment_pairs(pan, ms, rng)
    assert np.array_equal(pan, np.kron(ms[:, :1], np.ones((1, 1, 4, 4), dtype=np.float32)))


def test_training_pixels_are_balanced_across_classes():
    classes = np.array([0] * 1000 + [1] * 10 + [2] * 100)
    picks = balanced_pixels(classes, 3000, np.random.default_rng(1))
    counts = np.bincount(classes[picks])
    assert counts.min() > 900 and counts.max() < 1100


# Bad input ---------------------------------------------------------------------------------

def derived_ms(tmp_path: Path, scene, name: str, **changes) -> Path:
    """A copy of the scene's MS with some properties changed."""
    with rasterio.open(scene.ms_path) as src:
        data, profile = src.read(), src.profile
    data = changes.pop("data", data)
    profile.update(count=data.shape[0], **changes)
    path = tmp_path / name
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def classify_error(tmp_path, model, pan, ms) -> LcfusionError:
    job = Job.load(mrfusion_classify_job(tmp_path, model, pan, ms))
    with pytest.raises(LcfusionError) as error:
        classify_mrfusion(job, NullReporter())
    assert not list(tmp_path.glob("map*.tif")) and not list(tmp_path.glob("*.partial*"))
    return error.value


def test_crs_mismatch_names_ms(tmp_path, scene, trained_mrfusion):
    ms = derived_ms(tmp_path, scene, "ms_utm32.tif", crs="EPSG:32632")
    error = classify_error(tmp_path, trained_mrfusion[0], scene.pan_path, ms)
    assert error.parameter == "MS" and "CRS mismatch" in error.message


def test_non_integer_ratio_names_ms(tmp_path, scene, trained_mrfusion):
    with rasterio.open(scene.ms_path) as src:
        transform = src.transform
    ms = derived_ms(tmp_path, scene, "ms_ratio.tif", transform=rasterio.Affine(
        transform.a * 0.875, 0, transform.c, 0, transform.e * 0.875, transform.f))
    error = classify_error(tmp_path, trained_mrfusion[0], scene.pan_path, ms)
    assert error.parameter == "MS" and "not a whole number" in error.message


def test_band_mismatch_names_ms(tmp_path, scene, trained_mrfusion):
    with rasterio.open(scene.ms_path) as src:
        three = src.read()[:3]
    ms = derived_ms(tmp_path, scene, "ms3.tif", data=three)
    error = classify_error(tmp_path, trained_mrfusion[0], scene.pan_path, ms)
    assert error.parameter == "MS" and "4 bands" in error.message


def test_other_ratio_than_training_names_ms(tmp_path, scene, trained_mrfusion):
    with rasterio.open(scene.pan_path) as src:
        pan = src.read(1).astype(np.float32)
        transform = src.transform
    coarse = pan.reshape(192, 2, 192, 2).mean(axis=(1, 3)).astype(np.uint16)
    pan2 = write_raster(tmp_path / "pan5m.tif", coarse, origin=(transform.c, transform.f),
                        pixel=transform.a * 2, crs="EPSG:32631")
    error = classify_error(tmp_path, trained_mrfusion[0], pan2, scene.ms_path)
    assert error.parameter == "MS" and "ratio of 4" in error.message


def test_fgunet_model_is_refused(tmp_path, scene, trained):
    error = classify_error(tmp_path, trained[0], scene.pan_path, scene.ms_path)
    assert error.parameter == "MODEL" and "of the FG-UNET family, not MRFusion" in error.message


@pytest.mark.parametrize("settings, parameter, words", [
    ({"patch_size": 30}, "PATCH_SIZE", "not divisible by the PAN/MS ratio 4"),
    ({"patch_size": 24}, "PATCH_SIZE", "at least 28"),
    ({"patch_size": 512}, "PATCH_SIZE", "larger than the PAN raster"),
    ({"branches": "radar"}, "BRANCHES", "unknown branches"),
])
def test_bad_settings_fail_before_training(tmp_path, scene, settings, parameter, words):
    model = tmp_path / "model.lcfusion"
    job = Job.load(mrfusion_train_job(tmp_path, scene.pan_path, scene.ms_path,
                                      scene.reference_path, model, **settings))
    with pytest.raises(LcfusionError) as error:
        train_mrfusion(job, NullReporter())
    assert error.value.parameter == parameter and words in error.value.message
    assert not model.exists()


def test_multiband_pan_names_pan(tmp_path, scene):
    pan = derived_ms(tmp_path, scene, "not_pan.tif")
    with pytest.raises(LcfusionError) as error:
        PanMsPair(SeriesSpec((str(pan),)), SeriesSpec((str(scene.ms_path),)))
    assert error.value.parameter == "PAN" and "single-band" in error.value.message
