"""The Random Forest baseline in the engine: the exported trees predict as scikit-learn does,
each source and feature kind learns the classes its source separates, maps lie on the input
grid, the model file holds no pickle, and bad inputs are named."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from helpers import RecordingReporter, twinns_inputs, write_raster
from rasterio.windows import Window
from safetensors.numpy import load_file
from sklearn.ensemble import RandomForestClassifier

from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.families.randomforest.commands import (
    classify_randomforest,
    load_randomforest,
    train_randomforest,
)
from lcfusion.engine.families.randomforest.forest import (
    BLOCK_BYTES,
    BLOCK_ROWS,
    TENSORS,
    Forest,
    sample_blocks,
)
from lcfusion.engine.families.randomforest.pixelfeatures import (
    ForestTilePredictor,
    PanMsStack,
    PixelFeatures,
    features_at,
)
from lcfusion.engine.io.panms import PanMsPair
from lcfusion.engine.io.series import SeriesSpec
from lcfusion.engine.jobs import Job, write_job
from lcfusion.engine.modelfile.header import read_metadata
from lcfusion.engine.modelfile.storage import save_model
from lcfusion.engine.progress import NullReporter

#: Few trees and pixels: each training takes about a second on two cores.
QUICK_FOREST = {"n_trees": 20, "samples_per_class": 200, "tile_size": 64}
#: Classes that only the given source can tell apart (see engine/sample_scene.py).
SEPARATED_BY = {"s2": ("winter crop", "summer crop"), "s1s2": ("grassland", "wet meadow"),
                "panms": ("built-up", "bare soil")}


def source_inputs(scene, source: str) -> dict:
    """The layers of a source; S2 with its cloud mask and no gap-filling, so that missing
    values reach the forest."""
    if source == "panms":
        return {"pan": {"paths": [str(scene.pan_path)]}, "ms": {"paths": [str(scene.ms_path)]}}
    inputs = twinns_inputs(scene, mask=True, gapfill=False)
    return inputs if source == "s1s2" else {"s2": inputs["s2"]}


def train_job(folder, scene, source: str, inputs: dict | None = None, **settings):
    return Job.load(write_job(
        folder, "train-randomforest",
        inputs=source_inputs(scene, source) if inputs is None else inputs,
        reference={"path": str(scene.reference_path), "layer": scene.reference_layer,
                   "class_field": "class_id", "name_field": "class_name"},
        split={"train": 0.6, "validation": 0.2, "test": 0.2, "seed": 3},
        settings={"source": source, **QUICK_FOREST, **settings},
        outputs={"model": str(folder / "model.lcfusion")}))


def classify_job(folder, model, inputs: dict, **settings):
    return Job.load(write_job(
        folder, "classify-randomforest", inputs={"model": str(model), **inputs},
        settings=settings, outputs={"class_map": str(folder / "map.tif"),
                                    "confidence": str(folder / "confidence.tif")}))


@pytest.fixture(scope="module")
def forests(tmp_path_factory, scene) -> dict[str, tuple]:
    """Per source, (model path, training outputs) of a pixel-feature forest."""
    trained = {}
    for source in ("s2", "panms"):
        folder = tmp_path_factory.mktemp(f"forest-{source}")
        trained[source] = (folder / "model.lcfusion",
                           train_randomforest(train_job(folder, scene, source), NullReporter()))
    return trained


def f1_of(model) -> dict[str, float]:
    return {row["name"]: row["f1"] for row in read_metadata(model)["metrics"]["per_class"]}


def test_exported_forest_predicts_as_scikit_learn():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3000, 12)).astype(np.float32)
    labels = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(int) * 2 + (x[:, 3] > 0.7)
    estimator = RandomForestClassifier(20, max_depth=25, random_state=0, n_jobs=2)
    estimator.fit(x[:2000], labels[:2000] + 1)  # classes 1..4 of a 6-class table
    forest = Forest.from_sklearn(estimator, estimator.classes_, 6, np.zeros(12))
    restored = Forest.from_tensors(forest.tensors())
    held_out = x[2000:]
    expected = estimator.predict_proba(held_out)
    ours = restored.predict_proba(held_out)
    assert ours.shape == (1000, 6)
    assert np.allclose(ours[:, estimator.classes_], expected)
    assert not ours[:, [0, 5]].any()
    assert np.array_equal(ours.argmax(axis=1), estimator.predict(held_out))
    # the rebuilt trees have the true depths, which scikit-learn sizes decision_path's
    # buffers by (a depth of 0 overflowed them)
    assert restored.depths() == [e.get_depth() for e in estimator.estimators_]
    for tree, original in zip(restored.trees, estimator.estimators_, strict=True):
        assert tree.max_depth == original.get_depth()
        ours_path = tree.decision_path(held_out)
        assert (ours_path != original.tree_.decision_path(held_out)).nnz == 0
    assert np.allclose(ours.sum(axis=1), 1.0)


def descend_each_sample(forest: Forest, x: np.ndarray) -> np.ndarray:
    """The format's prediction, one sample and one node at a time: left when the value is at
    most the threshold, down to a leaf; the mean of the leaves' distributions."""
    leaf_row = np.cumsum(forest.children_left < 0) - 1
    out = np.zeros((x.shape[0], forest.n_classes))
    for sample, values in zip(out, x, strict=True):
        for root in forest.tree_offsets[:-1]:
            node = root
            while forest.children_left[node] >= 0:
                goes_left = values[forest.feature[node]] <= forest.threshold[node]
                node = root + (forest.children_left if goes_left else forest.children_right)[node]
            sample += forest.leaf_value[leaf_row[node]]
    return out / forest.n_trees


def test_maps_are_the_arrays_prediction_on_any_number_of_threads():
    """A generated raster with missing values, through a forest of scikit-learn's trees
    rebuilt from the arrays: the probabilities of a per-sample descent of the arrays, the same
    classes, and bit for bit the same result on 1 and 3 threads."""
    rng = np.random.default_rng(8)
    data = rng.normal(size=(6, 24, 24)).astype(np.float32)
    data[rng.random(data.shape) < 0.05] = np.nan
    x = data.reshape(6, -1).T
    labels = (np.nan_to_num(x[:, 0]) > 0).astype(int) + 2 * (np.nan_to_num(x[:, 1] * x[:, 2]) > 0)
    fill = np.nanmean(x, axis=0).astype(np.float32)
    estimator = RandomForestClassifier(10, max_depth=25, random_state=0).fit(
        np.where(np.isnan(x), fill, x), labels)
    forest = Forest.from_tensors(
        Forest.from_sklearn(estimator, estimator.classes_, 4, fill).tensors())
    expected = descend_each_sample(forest, forest.fill_missing(x.copy()))
    maps = []
    for threads in (1, 3):
        predictor = ForestTilePredictor(forest, PixelFeatures("pixel"), 24, threads)
        probs, valid = predictor.predict(_ArrayStack(data), Window(0, 0, 24, 24))
        maps.append(probs)
        np.testing.assert_allclose(probs.reshape(4, -1).T, expected, rtol=0, atol=1e-6)
        assert np.array_equal(probs.argmax(axis=0).ravel(),
                              expected.astype(np.float32).argmax(axis=1))
        assert valid.all()
    assert np.array_equal(maps[0], maps[1])
    many = np.repeat(forest.fill_missing(x.copy()), 8, axis=0)  # a block per thread
    np.testing.assert_allclose(forest.predict_proba(many, threads=3),
                               np.repeat(expected, 8, axis=0), rtol=0, atol=1e-12)


class _ArrayStack:
    """A channel stack over an array in memory (NaN outside it: the tests need no halo)."""

    def __init__(self, data: np.ndarray):
        self.data = data

    def read(self, window: Window) -> np.ndarray:
        return self.data[:, window.row_off: window.row_off + window.height,
                         window.col_off: window.col_off + window.width]


@pytest.mark.parametrize(("samples", "features", "threads", "sizes"), [
    (16_384, 144, 2, [8192] * 2),  # 4.7 MB each: S2 pixel features of 9 dates, one tile
    (65_536, 144, 2, [6553, 6554, 6553, 6554, 6554] * 2),  # 10 blocks of 3.8 MB, 5 a thread
    (8192, 1008, 2, [1024] * 8),  # 63 dates: 4.1 MB each
    (8192, 4096, 2, [1024] * 8),  # wider: no block under BLOCK_ROWS (16.8 MB each)
    (1500, 144, 2, [750, 750]),  # too few for a block each: still one per thread
    (1000, 144, 4, [1000]),  # fewer than BLOCK_ROWS: one block
    (20_000, 144, 1, [6666, 6667, 6667]),
    (3000, 144, 3, [1000] * 3),
    (3001, 144, 2, [1500, 1501]),
    (0, 144, 2, []),
])
def test_samples_are_cut_into_equal_blocks_of_about_block_bytes(samples, features, threads,
                                                                sizes):
    blocks = sample_blocks(samples, features, threads)
    assert [b.stop - b.start for b in blocks] == sizes
    assert [b.start for b in blocks] == [sum(sizes[:i]) for i in range(len(sizes))]
    assert all(size * features * 4 <= 2 * BLOCK_BYTES or size <= BLOCK_ROWS for size in sizes)


def test_any_negative_leaf_marker_stops_the_descent():
    """A leaf whose links are other negatives than -1 (valid in the format) ends the descent
    in the rebuilt trees too, instead of sending a sample outside the tree's nodes; a missing
    value goes right, as in the numpy descent."""
    forest = Forest.from_tensors({
        "tree_offsets": np.array([0, 3]), "children_left": np.array([1, -7, -3], np.int32),
        "children_right": np.array([2, -9, -1], np.int32),
        "feature": np.array([1, -5, -2], np.int32), "threshold": np.array([0.5, 9.0, 9.0]),
        "leaf_value": np.array([[1.0, 0.0], [0.25, 0.75]]),
        "fill_values": np.zeros(2, np.float32)})
    probs = forest.predict_proba(np.array([[9.0, 0.0], [9.0, 1.0], [0.0, np.nan]], np.float32))
    assert probs.tolist() == [[1.0, 0.0], [0.25, 0.75], [0.25, 0.75]]  # NaN <= 0.5 is false
    with pytest.raises(ValueError, match="samples of 2 features"):
        forest.predict_proba(np.zeros((4, 3), np.float32))


def test_missing_values_take_the_fill_values():
    forest = Forest.from_tensors({
        "tree_offsets": np.array([0, 1]), "children_left": np.array([-1], np.int32),
        "children_right": np.array([-1], np.int32), "feature": np.array([-2], np.int32),
        "threshold": np.array([-2.0]), "leaf_value": np.array([[1.0]]),
        "fill_values": np.array([7.0, 8.0], np.float32)})
    filled = forest.fill_missing(np.array([[np.nan, 1.0], [2.0, np.nan]]))
    assert filled.tolist() == [[7.0, 1.0], [2.0, 8.0]]


@pytest.mark.parametrize("source", ["s2", "s1s2", "panms"])
@pytest.mark.parametrize("kind", ["pixel", "patch_flat", "patch_stats"])
def test_each_source_learns_the_classes_it_separates(tmp_path, scene, source, kind):
    reporter = RecordingReporter()
    outputs = train_randomforest(train_job(tmp_path, scene, source, features=kind), reporter)
    said = [*reporter.lines, *reporter.stages]
    assert sum(text.startswith("forest trained") for text in said) == 1, said
    model = tmp_path / "model.lcfusion"
    f1 = f1_of(model)
    assert outputs["OA"] > 0.6 and outputs["KAPPA"] > 0.5  # chance: 1 / 8
    assert all(f1[name] > 0.9 for name in SEPARATED_BY[source]), f1
    if source != "panms":
        assert any("replaced by the mean of the sample" in line for line in reporter.lines)
    meta = read_metadata(model)
    architecture = meta["architecture"]
    assert meta["family"] == "randomforest" and meta["inputs"]["source"] == source
    assert architecture["features"] == kind
    assert architecture["patch_size"] == (1 if kind == "pixel" else 5)
    assert len(architecture["feature_names"]) == architecture["n_features"]
    assert meta["training"]["history"] == []

    folder = tmp_path / "classify"
    result = classify_randomforest(classify_job(folder, model, source_inputs(scene, source)),
                                   NullReporter())
    grid_of = scene.pan_path if source == "panms" else scene.s2_paths[0]
    with rasterio.open(result["OUTPUT"]) as out, rasterio.open(grid_of) as grid:
        assert (out.transform, out.crs, out.shape) == (grid.transform, grid.crs, grid.shape)
        labels = out.read(1)
    assert set(np.unique(labels)) <= set(range(1, 9))
    with rasterio.open(result["OUTPUT_CONFIDENCE"]) as conf:
        confidence = conf.read(1)
    assert np.nanmin(confidence) > 0 and np.nanmax(confidence) <= 1.0


def test_model_file_holds_arrays_only(forests, scene):
    model = forests["s2"][0]
    tensors = load_file(str(model))  # safetensors alone: no torch, no pickle
    assert set(tensors) == set(TENSORS)
    assert tensors["threshold"].dtype == np.float64
    assert tensors["children_left"].dtype == np.int32
    _, loaded, classes = load_randomforest(model)
    assert len(classes) == 8 and loaded.n_trees == 20
    x = np.random.default_rng(0).normal(size=(50, loaded.n_features)).astype(np.float32)
    assert np.array_equal(Forest.from_tensors(tensors).predict_proba(x),
                          loaded.predict_proba(x))


def test_classification_honours_the_thread_setting(tmp_path, scene, forests):
    maps = []
    for threads in (1, 2):
        reporter = RecordingReporter()
        result = classify_randomforest(classify_job(tmp_path / str(threads), forests["s2"][0],
                                                    source_inputs(scene, "s2"),
                                                    threads=threads), reporter)
        assert any(line.startswith("classifying with") and
                   line.endswith(f"pixel features) on {threads} thread" + "s" * (threads > 1))
                   for line in reporter.lines), reporter.lines
        with rasterio.open(result["OUTPUT"]) as out, \
                rasterio.open(result["OUTPUT_CONFIDENCE"]) as confidence:
            maps.append((out.read(), confidence.read()))
    assert all(np.array_equal(a, b) for a, b in zip(*maps, strict=True))


def test_tiles_equal_pixel_by_pixel_features(scene):
    """A pixel's probabilities do not depend on the tile it is read in (halo and edges)."""
    features = PixelFeatures("patch_stats", 5)
    pair = PanMsPair(SeriesSpec((str(scene.pan_path),)), SeriesSpec((str(scene.ms_path),)))
    rng = np.random.default_rng(1)
    rows = np.concatenate([[0, 383, 40, 17, 130, 3, 255], rng.integers(0, 384, 300)])
    cols = np.concatenate([[0, 383, 2, 300, 41, 129, 256], rng.integers(0, 384, 300)])
    with pair.open() as reader:
        stack = PanMsStack(reader)
        x, has_data = features_at(stack, features, rows, cols, 384, 384, 50, NullReporter())
        assert has_data.all() and x.shape == (307, 20)
        labels = (x[:, 1] > np.median(x[:, 1])).astype(int) + 2 * (x[:, 4] > x[:, 8])
        estimator = RandomForestClassifier(10, random_state=0).fit(x, labels)
        forest = Forest.from_sklearn(estimator, estimator.classes_, 4, np.zeros(20))
        expected = forest.predict_proba(x)
        predictor = ForestTilePredictor(forest, features, tile_size=64)
        for k, (row, col) in enumerate(zip(rows[:7], cols[:7], strict=True)):
            core = Window(col // 64 * 64, row // 64 * 64, 64, 64)
            probs, valid = predictor.predict(stack, core)
            np.testing.assert_allclose(probs[:, row % 64, col % 64], expected[k], atol=1e-6)
            assert valid.all()


def test_pan_pixel_features_are_its_pan_value_and_its_ms_pixel(scene):
    pair = PanMsPair(SeriesSpec((str(scene.pan_path),)), SeriesSpec((str(scene.ms_path),)))
    with pair.open() as reader, rasterio.open(scene.pan_path) as pan, \
            rasterio.open(scene.ms_path) as ms:
        data = PanMsStack(reader).read(Window(37, 50, 9, 6))
        assert data.shape == (5, 6, 9)
        np.testing.assert_array_equal(data[0], pan.read(1, window=Window(37, 50, 9, 6)))
        ms_data = ms.read()
        for r, c in ((0, 0), (5, 8), (2, 3)):
            np.testing.assert_array_equal(data[1:, r, c], ms_data[:, (50 + r) // 4,
                                                                  (37 + c) // 4])


def test_patch_statistics_and_names():
    data = np.arange(2 * 5 * 5, dtype=np.float32).reshape(2, 5, 5)
    data[1, 0, 0] = np.nan
    features = PixelFeatures("patch_stats", 3)
    values = features.at(data, np.array([0, 1]), np.array([0, 2]))
    patch = data[1, 0:3, 0:3]
    assert values.shape == (2, 8)
    np.testing.assert_allclose(values[0, 4:], [np.nanmean(patch), np.nanstd(patch),
                                               np.nanmin(patch), np.nanmax(patch)])
    assert features.names(["a", "b"])[4:] == ["b mean", "b std", "b min", "b max"]
    flat = PixelFeatures("patch_flat", 3)
    assert flat.names(["a"])[0] == "a [-1,-1]" and flat.count(2) == 18
    np.testing.assert_array_equal(flat.at(data, np.array([1]), np.array([1]))[0, :9],
                                  data[0, 1:4, 1:4].ravel())


def test_fewer_dates_than_the_model_names_s2(tmp_path, scene, forests):
    inputs = source_inputs(scene, "s2")
    inputs["s2"] = {"paths": inputs["s2"]["paths"][:5]}
    with pytest.raises(LcfusionError) as error:
        classify_randomforest(classify_job(tmp_path, forests["s2"][0], inputs), NullReporter())
    assert error.value.parameter == "S2" and "6 Sentinel-2 dates" in error.value.message
    assert not (tmp_path / "map.tif").exists()


def test_ms_with_other_bands_names_ms(tmp_path, scene, forests):
    with rasterio.open(scene.ms_path) as src:
        data, transform = src.read()[:3], src.transform
    ms = write_raster(tmp_path / "ms3.tif", data, origin=(transform.c, transform.f),
                      pixel=transform.a, crs="EPSG:32631")
    inputs = {"pan": {"paths": [str(scene.pan_path)]}, "ms": {"paths": [str(ms)]}}
    with pytest.raises(LcfusionError) as error:
        classify_randomforest(classify_job(tmp_path, forests["panms"][0], inputs),
                              NullReporter())
    assert error.value.parameter == "MS" and "4 bands" in error.value.message


def test_missing_inputs_of_the_models_source_are_named(tmp_path, scene, forests):
    with pytest.raises(LcfusionError) as error:
        classify_randomforest(classify_job(tmp_path, forests["panms"][0],
                                           source_inputs(scene, "s2")), NullReporter())
    assert error.value.parameter == "PAN" and "a PAN + MS pair" in error.value.message


def test_another_familys_model_is_refused(tmp_path, scene):
    model = save_model(tmp_path / "other.lcfusion", {"family": "twinns"},
                       {"weight": torch.zeros(2)})
    with pytest.raises(LcfusionError) as error:
        classify_randomforest(classify_job(tmp_path, model, source_inputs(scene, "s2")),
                              NullReporter())
    assert error.value.parameter == "MODEL"
    assert error.value.message == ("other.lcfusion is a model of the TWINNS family, not Random "
                                   "Forest: use Classify with TWINNS")


@pytest.mark.parametrize("source, settings, parameter, words", [
    ("s1s2", {}, "S1", "give the Sentinel-1 rasters"),
    ("s2", {"features": "patch_flat", "patch_size": 4}, "PATCH_SIZE", "must be odd"),
    ("s2", {"features": "patch_flat", "patch_size": 999}, "PATCH_SIZE",
     "999 pixels is larger than the rasters (96 x 96); use at most 95"),
    ("s2", {"features": "voxels"}, "FEATURES", "unknown features"),
    ("radar", {}, "SOURCE", "unknown source"),
    ("s2", {"n_trees": 0}, "N_TREES", "must be above 0"),
    ("s2", {"max_features": "half"}, "MAX_FEATURES", "unknown max features"),
])
def test_bad_settings_fail_before_training(tmp_path, scene, source, settings, parameter,
                                           words):
    inputs = source_inputs(scene, "s2")
    with pytest.raises(LcfusionError) as error:
        train_randomforest(train_job(tmp_path, scene, source, inputs=inputs, **settings),
                           NullReporter())
    assert error.value.parameter == parameter and words in error.value.message
    assert not (tmp_path / "model.lcfusion").exists()
