"""Figure 8: Random Forest prediction on one forest and one set of S2 pixel features: the
engine's path (scikit-learn's compiled trees rebuilt from the model file's arrays, on every
core), scikit-learn's own `predict_proba` with n_jobs=-1 on the forest it fitted (the
reference), and the numpy path the engine used before (all samples descending all trees one
level per step), with the largest difference of their probabilities."""

from __future__ import annotations

import os

import numpy as np
import rasterio
from rasterio.windows import Window
from sklearn.ensemble import RandomForestClassifier

from benchmarks.config import BenchConfig
from benchmarks.dense import best_time
from benchmarks.scenes import SceneFiles
from lcfusion.engine.families.randomforest.commands import (
    MAX_FEATURES,
    RandomForestTrainConfig,
    fill_values_of,
    training_inputs,
)
from lcfusion.engine.families.randomforest.forest import Forest
from lcfusion.engine.families.randomforest.pixelfeatures import PixelFeatures
from lcfusion.engine.progress import NullReporter


def numpy_predict_proba(forest: Forest, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """The engine's prediction before scikit-learn's trees: in batches, every sample of a batch
    descends every tree at once, one depth level per numpy step."""
    sizes = np.diff(forest.tree_offsets)
    owner_offset = np.repeat(forest.tree_offsets[:-1], sizes)
    is_leaf = forest.is_leaf
    nodes = np.arange(is_leaf.size)
    # A leaf points to itself, so a sample that reached it stays there.
    left = np.where(is_leaf, nodes, forest.children_left + owner_offset)
    right = np.where(is_leaf, nodes, forest.children_right + owner_offset)
    feature = np.where(is_leaf, 0, forest.feature).astype(np.int64)
    leaf_row = np.cumsum(is_leaf) - 1
    out = np.zeros((x.shape[0], forest.n_classes), dtype=np.float64)
    for start in range(0, x.shape[0], batch_size):
        batch = x[start: start + batch_size]
        n = batch.shape[0]
        node = np.repeat(forest.tree_offsets[:-1], n)
        sample = np.tile(np.arange(n), forest.n_trees)
        active = np.flatnonzero(~is_leaf[node])
        while active.size:
            at = node[active]
            goes_left = batch[sample[active], feature[at]] <= forest.threshold[at]
            node[active] = np.where(goes_left, left[at], right[at])
            active = active[~is_leaf[node[active]]]
        part = out[start: start + batch_size]
        for tree_leaves in node.reshape(forest.n_trees, n):
            part += forest.leaf_value[leaf_row[tree_leaves]]
    out /= forest.n_trees
    return out


def s2_pixel_features(scene: SceneFiles) -> tuple[np.ndarray, list[str]]:
    """The Random Forest's default features (the S2 bands and indices of every date) of every
    pixel of the scene, NaN where missing, and their names."""
    inputs = training_inputs(scene.inputs("randomforest"), RandomForestTrainConfig(),
                             NullReporter())
    with inputs.open() as stack:
        data = stack.read(Window(0, 0, scene.side, scene.rows))
    rows, cols = np.divmod(np.arange(scene.side * scene.rows), scene.side)
    features = PixelFeatures("pixel")
    return features.at(data, rows, cols), features.names(inputs.channel_names())


def forest_figures(train: SceneFiles, scene: SceneFiles, config: BenchConfig) -> dict:
    """Fit scikit-learn's forest (the engine's settings) on the true classes of the training
    scene's pixels, export it as the engine does, and time the three predictions on every
    pixel of `scene`."""
    x, names = s2_pixel_features(train)
    with rasterio.open(train.truth) as src:
        labels = src.read(1).ravel()
    keep = (labels > 0) & np.isfinite(x).any(axis=1)
    x, labels = x[keep], labels[keep]
    fill = fill_values_of(x, names, NullReporter())
    settings = RandomForestTrainConfig(**config.training["randomforest"])
    estimator = RandomForestClassifier(
        settings.n_trees, max_depth=settings.max_depth or None,
        max_features=MAX_FEATURES[settings.max_features], n_jobs=-1,
        random_state=0).fit(np.where(np.isnan(x), fill, x), labels)
    forest = Forest.from_sklearn(estimator, estimator.classes_, int(labels.max()) + 1, fill)
    build_seconds, _ = best_time(lambda: forest.trees, 1)
    pixels = forest.fill_missing(s2_pixel_features(scene)[0])
    threads = len(os.sched_getaffinity(0))
    timed = {"numpy": best_time(lambda: numpy_predict_proba(forest, pixels), config.repeats),
             "engine": best_time(lambda: forest.predict_proba(pixels, threads), config.repeats),
             "sklearn": best_time(lambda: estimator.predict_proba(pixels), config.repeats)}
    engine = timed["engine"][1][:, estimator.classes_]
    mpx = {path: pixels.shape[0] / seconds / 1e6 for path, (seconds, _) in timed.items()}
    differences = {}
    for path in ("numpy", "sklearn"):
        other = timed[path][1]
        other = other if path == "sklearn" else other[:, estimator.classes_]
        differences[path] = {"max_abs_difference": float(np.abs(engine - other).max()),
                             "same_class": float((engine.argmax(axis=1)
                                                  == other.argmax(axis=1)).mean())}
    return {"pixels": int(pixels.shape[0]), "features": forest.n_features,
            "trees": forest.n_trees, "nodes": int(forest.tree_offsets[-1]),
            "depth": max(e.get_depth() for e in estimator.estimators_), "threads": threads,
            "build_seconds": build_seconds, "mpx_per_s": mpx,
            "speedup_vs_numpy": mpx["engine"] / mpx["numpy"],
            "vs_sklearn": mpx["engine"] / mpx["sklearn"], "engine_vs": differences}
