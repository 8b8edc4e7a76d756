"""TWINNS in the engine: S1 + S2 with a cloud mask and gap-filling, batched tiles equal to
per-patch evaluation, attention per date (by class, and as a map), the ablations and clear
errors."""

from __future__ import annotations

import copy
import csv
from collections.abc import Iterator

import numpy as np
import pytest
import rasterio
import torch
from helpers import RecordingReporter, twinns_inputs, twinns_train_job, write_raster
from rasterio.windows import Window

from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.families.mapsteps import map_outputs
from lcfusion.engine.families.twinns.commands import (
    SOURCE_NAMES,
    IndexConfig,
    TWINNSInputs,
    TWINNSTrainConfig,
    attention_map,
    attention_output,
    attention_twinns,
    classify_twinns,
    inputs_for_model,
    load_twinns,
    pixel_attention,
    train_twinns,
)
from lcfusion.engine.families.twinns.network import TWINNS, TWINNSConfig
from lcfusion.engine.families.twinns.patches import BatchedPatchPredictor, GridPatches
from lcfusion.engine.inference.classifying import pixel_probabilities, predict_pixels
from lcfusion.engine.inference.ensemble import Ensemble
from lcfusion.engine.io.indices import DEFAULT_INDICES, band_number, identify_roles
from lcfusion.engine.jobs import Job, write_job
from lcfusion.engine.modelfile.header import read_metadata
from lcfusion.engine.progress import NullReporter

#: Grassland and wet meadow differ only in winter / spring S1 backscatter (flooding).
RADAR_CLASSES = ("grassland", "wet meadow")


class Recorder(NullReporter):
    def __init__(self):
        self.lines: list[str] = []

    def log(self, message: str, level: str = "info") -> None:
        self.lines.append(message)


def f1_of(model_path) -> dict[str, float]:
    return {row["name"]: row["f1"] for row in read_metadata(model_path)["metrics"]["per_class"]}


def classify_job(folder, model, scene, mask=True, attention=False, **settings):
    return write_job(folder, "classify-twinns",
                     inputs={"model": str(model), **twinns_inputs(scene, mask=mask,
                                                                  gapfill=False)},
                     settings={"tile_size": 40, **settings},
                     outputs={"class_map": str(folder / "map.tif"),
                              "confidence": str(folder / "confidence.tif"),
                              "attention": str(folder / "attention.tif") if attention
                              else None})


@pytest.fixture(scope="module")
def classified(tmp_path_factory, trained_twinns, scene) -> tuple[Job, dict, list[str]]:
    """The scene classified in tiles of 40 with the confidence and attention maps: the job,
    its outputs and its log."""
    job = Job.load(classify_job(tmp_path_factory.mktemp("classified"), trained_twinns[0], scene,
                                attention=True))
    reporter = Recorder()
    return job, classify_twinns(job, reporter), reporter.lines


def test_training_learns_and_records_its_inputs(trained_twinns):
    path, outputs = trained_twinns
    assert outputs["OA"] > 0.6 and outputs["KAPPA"] > 0.5
    f1 = f1_of(path)
    assert all(f1[name] > 0.7 for name in RADAR_CLASSES), f1
    meta = read_metadata(path)
    s1, s2 = meta["inputs"]["s1"], meta["inputs"]["s2"]
    assert (s1["n_dates"], s1["bands_per_date"], s2["n_dates"], s2["bands_per_date"]) == (
        8, 2, 6, 10)
    assert s2["features"][-6:] == list(DEFAULT_INDICES)
    assert meta["inputs"]["indices"]["roles"]["nir"] == "7"
    assert s2["masked"] is True and s2["gapfill"] is True and s1["gapfill"] is False
    assert meta["architecture"]["s2_channels"] == 16
    assert (meta["architecture"]["sources"], meta["architecture"]["branches"]) == ("both",
                                                                                   "both")
    attention = meta["attention"]
    assert attention["s1"]["dates"][0] == "2021-01-07" and len(attention["s2"]["dates"]) == 6
    for weights in attention["s1"]["by_class"].values():
        assert sum(weights) == pytest.approx(1.0, abs=1e-3)


def patch_symmetries(patches: list[np.ndarray]) -> Iterator[list[torch.Tensor]]:
    """The 8 symmetries of each source's patches (N, C, p, p): 4 quarter turns, each also
    transposed, as tensors."""
    for turns in range(4):
        for transpose in (False, True):
            turned = [np.rot90(a, turns, axes=(2, 3)) for a in patches]
            if transpose:
                turned = [a.transpose(0, 1, 3, 2) for a in turned]
            yield [torch.from_numpy(a.copy()) for a in turned]


def test_batched_tiles_equal_per_patch_evaluation(trained_twinns, scene):
    _, model, _, normalizers = load_twinns(trained_twinns[0], torch.device("cpu"))
    meta = read_metadata(trained_twinns[0])
    inputs = TWINNSInputs.from_job(twinns_inputs(scene),
                                   IndexConfig.from_json(meta["inputs"]["indices"]), "db")
    rows = np.array([0, 95, 40, 17, 66, 3])
    cols = np.array([0, 95, 2, 88, 41, 70])
    # Tiles of 16 x 16 pixels: 3 batches each, the last one short.
    predictor = BatchedPatchPredictor(model, normalizers, torch.device("cpu"), 5,
                                      tile_size=16, batch_size=100)
    with inputs.s1.open() as s1, inputs.s2.open() as s2:
        patches = GridPatches([s1, s2], normalizers, 5, 0)
        with torch.inference_mode():
            single = torch.softmax(model(*(torch.from_numpy(a) for a in patches.read(
                rows, cols))).logits, dim=1).numpy()
        for k, (row, col) in enumerate(zip(rows, cols, strict=True)):
            core = Window(col // 16 * 16, row // 16 * 16, 16, 16)
            probs, valid = predictor.predict([s1, s2], core)
            tile_value = probs[:, row - int(core.row_off), col - int(core.col_off)]
            np.testing.assert_allclose(tile_value, single[k], atol=1e-5)
            assert valid.all()


def test_the_pixels_of_a_tile_alone_are_computed_as_in_the_whole_tile(trained_twinns, scene):
    """What the evaluation of test polygons computes (`pixel_probabilities`): only the
    labelled pixels of each tile, each equal to the tile's value there."""
    _, model, _, normalizers = load_twinns(trained_twinns[0], torch.device("cpu"))
    meta = read_metadata(trained_twinns[0])
    inputs = TWINNSInputs.from_job(twinns_inputs(scene),
                                   IndexConfig.from_json(meta["inputs"]["indices"]), "db")
    predictor = BatchedPatchPredictor(model, normalizers, torch.device("cpu"), 5,
                                      tile_size=16, batch_size=7)
    rng = np.random.default_rng(3)
    # Pixels of the north-west 48 x 48 (3 x 3 tiles; the scene's edges among them).
    rows, cols = rng.integers(0, 48, 50), rng.integers(0, 48, 50)
    with inputs.s1.open() as s1, inputs.s2.open() as s2:
        core = Window(16, 32, 16, 16)
        tile = predictor.load([s1, s2], core)
        whole, valid = predictor.infer(tile)
        inside = (rows >= 32) & (cols >= 16) & (cols < 32)
        assert inside.sum() >= 3
        local_r, local_c = rows[inside] - 32, cols[inside] - 16
        probs, at_valid = predictor.infer_pixels(tile, local_r, local_c)
        np.testing.assert_allclose(probs, whole[:, local_r, local_c], atol=1e-5)
        assert (at_valid == valid[local_r, local_c]).all()
        grid = inputs.s2.series.grid
        predicted = pixel_probabilities(predictor, [s1, s2], grid, rows, cols, NullReporter())
        labels = predict_pixels(predictor, [s1, s2], grid, rows, cols, NullReporter())
        full = np.concatenate([np.concatenate(
            [predictor.predict([s1, s2], Window(c, r, 16, 16))[0] for c in (0, 16, 32)],
            axis=2) for r in (0, 16, 32)], axis=1)
    np.testing.assert_allclose(predicted, full[:, rows, cols], atol=1e-5)
    np.testing.assert_array_equal(labels, predicted.argmax(axis=0))


def test_test_time_augmentation_is_the_mean_over_the_8_symmetries_of_each_patch(
        trained_twinns, scene):
    _, model, _, normalizers = load_twinns(trained_twinns[0], torch.device("cpu"))
    meta = read_metadata(trained_twinns[0])
    inputs = TWINNSInputs.from_job(twinns_inputs(scene),
                                   IndexConfig.from_json(meta["inputs"]["indices"]), "db")
    rows, cols = np.array([0, 40, 17]), np.array([0, 2, 88])
    predictor = BatchedPatchPredictor(model, normalizers, torch.device("cpu"), 5,
                                      tile_size=8, batch_size=100, tta=True)
    with inputs.s1.open() as s1, inputs.s2.open() as s2:
        patches = GridPatches([s1, s2], normalizers, 5, 0).read(rows, cols)
        expected = np.zeros((rows.size, len(meta["classes"])), dtype=np.float64)
        with torch.inference_mode():
            for turned in patch_symmetries(patches):
                expected += torch.softmax(model(*turned).logits, dim=1).numpy()
        expected /= 8
        for k, (row, col) in enumerate(zip(rows, cols, strict=True)):
            core = Window(col // 8 * 8, row // 8 * 8, 8, 8)
            probs, _ = predictor.predict([s1, s2], core)
            np.testing.assert_allclose(probs[:, row - int(core.row_off), col - int(core.col_off)],
                                       expected[k], atol=1e-5)


def test_classify_applies_the_models_gapfill_on_the_input_grid(classified, scene):
    _, outputs, lines = classified
    assert any("gaps filled by temporal interpolation" in line for line in lines)
    with rasterio.open(outputs["OUTPUT"]) as out, rasterio.open(scene.s2_paths[0]) as s2:
        assert out.transform == s2.transform and out.crs == s2.crs
        assert (out.width, out.height) == (96, 96)
        labels = out.read(1)
    with rasterio.open(scene.truth_path) as truth:
        expected = truth.read(1)
    for code in (5, 6):  # grassland and wet meadow
        assert (labels[expected == code] == code).mean() > 0.7


def test_attention_of_a_pixel_set_by_predicted_class(tmp_path, trained_twinns, scene):
    job = write_job(tmp_path, "attention-twinns",
                    inputs={"model": str(trained_twinns[0]), **twinns_inputs(scene)},
                    reference={"path": str(scene.reference_path), "layer": "reference",
                               "class_field": "class_id"},
                    settings={"max_pixels": 500},
                    outputs={"table": str(tmp_path / "attention.csv")})
    outputs = attention_twinns(Job.load(job), NullReporter())
    rows = list(csv.DictReader((tmp_path / "attention.csv").open(encoding="utf-8")))
    assert {row["source"] for row in rows} == {"Sentinel-1", "Sentinel-2"}
    report = outputs["ATTENTION"]
    assert sum(report["s1"]["pixels"].values()) == 500
    for source, dates in (("s1", 8), ("s2", 6)):
        for name, weights in report[source]["by_class"].items():
            assert len(weights) == dates and sum(weights) == pytest.approx(1.0, abs=1e-3)
            table = [float(r["mean_attention"]) for r in rows
                     if r["predicted_class"] == name and r["source"] == SOURCE_NAMES[source]]
            assert table == weights


def test_the_attention_map_holds_the_models_weights_of_every_date(classified, trained_twinns,
                                                                   scene):
    job, outputs, lines = classified
    model_path = trained_twinns[0]
    assert any(line.startswith("attention map written to") for line in lines)

    with rasterio.open(outputs["OUTPUT_ATTENTION"]) as out, rasterio.open(
            scene.s2_paths[0]) as s2, rasterio.open(outputs["OUTPUT"]) as class_map:
        assert (out.crs, out.transform, out.shape) == (s2.crs, s2.transform, s2.shape)
        assert out.count == 8 + 6 and set(out.dtypes) == {"float32"} and np.isnan(out.nodata)
        assert out.descriptions[0] == "S1 attention 2021-01-07"
        assert [d.split()[0] for d in out.descriptions] == ["S1"] * 8 + ["S2"] * 6
        assert out.tags(9)["LCFUSION_DATE"] == out.descriptions[8].split()[-1]
        assert "S1 bands 1-8, S2 bands 9-14" in out.tags()["LCFUSION_ATTENTION"]
        weights = out.read()
        no_data = class_map.read(1) == class_map.nodata
    assert (np.isnan(weights).all(axis=0) == no_data).all()
    assert not np.isnan(weights[:, ~no_data]).any()
    for per_source in (weights[:8], weights[8:]):
        np.testing.assert_allclose(per_source.sum(axis=0)[~no_data], 1.0, atol=1e-5)
    for band, entry in zip(weights, outputs["OUTPUT_ATTENTION_BANDS"], strict=True):
        assert entry["mean"] == pytest.approx(float(np.nanmean(band)), abs=1e-5)
        assert (entry["min"], entry["max"]) == (float(np.nanmin(band)), float(np.nanmax(band)))

    _, model, _, normalizers = load_twinns(model_path, torch.device("cpu"))
    rows, cols = np.nonzero(~no_data)
    chosen = np.random.default_rng(0).choice(rows.size, 40, replace=False)
    rows, cols = rows[chosen], cols[chosen]
    same_inputs = inputs_for_model(job.section("inputs"), read_metadata(model_path),
                                   NullReporter())
    with same_inputs.s1.open() as s1, same_inputs.s2.open() as s2:
        own, _ = pixel_attention(model, GridPatches([s1, s2], normalizers, 5, 1 << 30), rows,
                                 cols, torch.device("cpu"))
    np.testing.assert_allclose(weights[:8, rows, cols].T, own["s1"], atol=1e-5)
    np.testing.assert_allclose(weights[8:, rows, cols].T, own["s2"], atol=1e-5)


def test_an_ensembles_attention_with_tta_is_the_mean_over_members_and_symmetries(
        trained_twinns, scene):
    _, model, _, normalizers = load_twinns(trained_twinns[0], torch.device("cpu"))
    other = copy.deepcopy(model)
    with torch.no_grad():
        for branch in other.rnn.values():
            branch.context.mul_(-1.0)  # attends to other dates
    ensemble = Ensemble([model, other]).eval()
    meta = read_metadata(trained_twinns[0])
    inputs = TWINNSInputs.from_job(twinns_inputs(scene),
                                   IndexConfig.from_json(meta["inputs"]["indices"]), "db")
    core = Window(88, 90, 8, 6)  # at the scene's corner: the patches are mirrored
    rows, cols = np.array([90, 95, 92]), np.array([88, 95, 91])
    predictor = BatchedPatchPredictor(ensemble, normalizers, torch.device("cpu"), 5,
                                      tile_size=8, batch_size=48, tta=True)
    with inputs.s1.open() as s1, inputs.s2.open() as s2:
        probs, valid, weights = predictor.infer_values(predictor.load([s1, s2], core))
        patches = GridPatches([s1, s2], normalizers, 5, 0).read(rows, cols)
    np.testing.assert_allclose(weights[:8].sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_allclose(weights[8:].sum(axis=0), 1.0, atol=1e-5)
    expected_weights = np.zeros((rows.size, 14))
    expected_probs = np.zeros((rows.size, len(meta["classes"])))
    with torch.inference_mode():
        for turned in patch_symmetries(patches):
            for member in (model, other):
                output = member(*turned)
                expected_weights += torch.cat([output.attention["s1"],
                                               output.attention["s2"]], dim=1).numpy()
                expected_probs += torch.softmax(output.logits, dim=1).numpy()
    at = (slice(None), rows - 90, cols - 88)
    np.testing.assert_allclose(weights[at].T, expected_weights / 16, atol=1e-5)
    np.testing.assert_allclose(probs[at].T, expected_probs / 16, atol=1e-5)
    assert valid.all() and np.abs(weights[:8] - weights[:8].mean(axis=0)).max() > 1e-3


def test_attention_map_errors_name_the_parameter(tmp_path):
    job = Job("classify-twinns", {"outputs": {"class_map": "map.tif",
                                              "attention": "map.tif"}}, tmp_path)
    with pytest.raises(LcfusionError) as info:
        attention_output(job, map_outputs(job))
    assert info.value.parameter == "OUTPUT_ATTENTION" and "file of its own" in info.value.message
    cnn_only = TWINNS(TWINNSConfig(2, 2, 3, 4, 5, branches="cnn"))
    with pytest.raises(LcfusionError) as info:
        attention_map(tmp_path / "attention.tif", cnn_only, None, tta=False)
    assert info.value.parameter == "OUTPUT_ATTENTION" and "no ConvGRU" in info.value.message


def test_single_source_ablation_is_recorded(tmp_path, scene):
    model = tmp_path / "s2.lcfusion"
    job = Job.load(twinns_train_job(tmp_path, scene, model, sources="s2", branches="rnn",
                                    epochs=1, samples_per_epoch=64, validation_samples=0))
    train_twinns(job, NullReporter())
    meta = read_metadata(model)
    assert (meta["architecture"]["sources"], meta["architecture"]["branches"]) == ("s2", "rnn")
    assert set(meta["attention"]) == {"s2"}


@pytest.mark.slow
def test_radar_classes_need_both_sources(tmp_path, scene, trained_twinns):
    """S2 alone cannot tell grassland from wet meadow; with S1 the model can."""
    model = tmp_path / "s2.lcfusion"
    train_twinns(Job.load(twinns_train_job(tmp_path, scene, model, sources="s2")),
                 NullReporter())
    both, s2_only = f1_of(trained_twinns[0]), f1_of(model)
    both_mean = np.mean([both[name] for name in RADAR_CLASSES])
    s2_mean = np.mean([s2_only[name] for name in RADAR_CLASSES])
    assert both_mean > s2_mean + 0.2, (both, s2_only)


def test_s1_on_another_grid_names_s1(tmp_path, scene):
    shifted = [write_raster(tmp_path / f"s1_{i}.tif", np.zeros((2, 96, 96), np.float32),
                            origin=(600010.0, 5600000.0)) for i in range(2)]
    inputs = {**twinns_inputs(scene), "s1": {"paths": [str(p) for p in shifted]}}
    with pytest.raises(LcfusionError) as error:
        TWINNSInputs.from_job(inputs, None, "db")
    assert error.value.parameter == "S1" and "s1_0.tif" in error.value.message


def test_fewer_s1_dates_than_the_model_names_s1(tmp_path, scene, trained_twinns):
    job = classify_job(tmp_path, trained_twinns[0], scene)
    data = Job.load(job).data
    data["inputs"]["s1"]["paths"] = data["inputs"]["s1"]["paths"][:5]
    job = write_job(tmp_path, "classify-twinns", **{k: v for k, v in data.items()
                                                   if k not in ("version", "command")})
    with pytest.raises(LcfusionError) as error:
        classify_twinns(Job.load(job), NullReporter())
    assert error.value.parameter == "S1" and "8 Sentinel-1 dates" in error.value.message
    assert not (tmp_path / "map.tif").exists()


@pytest.mark.parametrize("settings, parameter, words", [
    ({"patch_size": 4}, "PATCH_SIZE", "must be odd"),
    ({"patch_size": 10001}, "PATCH_SIZE", "larger than the rasters (96 x 96); use at most 95"),
    ({"band_roles": "red=B99"}, "BAND_ROLES", "'B99' is not among"),
    ({"band_roles": "purple=B04"}, "BAND_ROLES", "not a role=band pair"),
    ({"indices": "NDVI,XYZ"}, "INDICES", "unknown index XYZ"),
    ({"sources": "radar"}, "SOURCES", "unknown sources"),
    ({"alpha": -0.1}, "ALPHA", "cannot be negative"),
    ({"learning_rate": 2.0}, "LEARNING_RATE", "between 0 and 1"),
    ({"epochs": 0}, "EPOCHS", "must be above 0"),
])
def test_bad_settings_fail_before_training(tmp_path, scene, settings, parameter, words):
    model = tmp_path / "model.lcfusion"
    with pytest.raises(LcfusionError) as error:
        train_twinns(Job.load(twinns_train_job(tmp_path, scene, model, **settings)),
                     NullReporter())
    assert error.value.parameter == parameter and words in error.value.message
    assert not model.exists()


@pytest.mark.parametrize("names, roles", [
    (["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"],
     {"blue": 0, "green": 1, "red": 2, "rededge": 3, "nir": 6, "swir1": 8}),
    (["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7"],
     {"blue": 1, "green": 2, "red": 3, "nir": 4, "swir1": 5}),
    (["Coastal", "Blue", "Green", "Red", "Red edge 1", "NIR", "SWIR1", "SWIR2"],
     {"blue": 1, "green": 2, "red": 3, "rededge": 4, "nir": 5, "swir1": 6}),
    (["Red edge 1", "Red edge 2", "NIR", "Red"], {"rededge": 0, "nir": 2, "red": 3}),
    (["SR_B2", "SR_B3", "SR_B4", "SR_B5"], {}),
    (["B2", "B3", "B4", "B5"], {}),
])
def test_band_roles_are_found_in_the_descriptions(names, roles):
    """Common names and the codes of a known sensor identify roles; codes whose sensor is
    unknown (Landsat 8 and 4-7 number the same bands differently) identify none."""
    assert identify_roles(names) == roles


def test_twinns_indices_follow_the_descriptions_of_other_bands(tmp_path, scene):
    """Blue, green, red and NIR bands named by their common names: the indices they allow are
    added, the others left out with a warning naming the missing roles and BAND_ROLES."""
    s2 = []
    for source in scene.s2_paths[:2]:
        with rasterio.open(source) as src:
            data, t = src.read((1, 2, 3, 7)), src.transform
        s2.append(str(write_raster(tmp_path / source.name, data, origin=(t.c, t.f), pixel=t.a,
                                   descriptions=("Blue", "Green", "Red", "NIR"))))
    reporter = RecordingReporter()
    inputs = TWINNSInputs.from_job(
        {"s1": {"paths": [str(p) for p in scene.s1_paths[:2]]}, "s2": {"paths": s2}}, None,
        "db").with_indices(TWINNSTrainConfig().index_config(), reporter)
    assert inputs.s2.indices.indices == ("NDVI", "NDWI", "BRIGHTNESS")
    assert inputs.s2.channel_names() == ["Blue", "Green", "Red", "NIR", "NDVI", "NDWI",
                                         "BRIGHTNESS"]
    assert ("MNDWI, NDBI, NDRE not added: no band of the S2 layers is identified as rededge, "
            "swir1") in reporter.text() and "[BAND_ROLES]" in reporter.text()


def test_a_band_number_is_made_of_ascii_digits():
    with pytest.raises(LcfusionError) as error:
        band_number("red", "\u00b2", ["B02", "B03", "B04"])
    assert error.value.parameter == "BAND_ROLES" and "'\u00b2' is not among" in error.value.message


def test_band_roles_accept_numbers():
    config = TWINNSTrainConfig(band_roles="nir=7, red = B04").index_config()
    numbers = config.band_numbers(["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A",
                                   "B11", "B12"])
    assert numbers["nir"] == 6 and numbers["red"] == 2
