"""The Random Forest baseline (as in iota2 and OTB) on any source the deep families take: a
Sentinel-2 series (``s2``), Sentinel-1 + Sentinel-2 series (``s1s2``, TWINNS's inputs) or a
PAN + MS pair (``panms``, on the PAN grid).

Features of a pixel: its channels (``pixel``), or the p x p patch around it, every value
(``patch_flat``) or per channel mean, standard deviation, minimum and maximum
(``patch_stats``). Training draws at most N pixels per class from the training polygons
(seeded), drops pixels without any data of their own and replaces the remaining missing
values by the mean of the training sample (kept in the model; classification does the same).
The forest is stored as arrays (see `forest`), never pickled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier

from ...compute.devices import configure_threads
from ...errors import LcfusionError
from ...inference.priors import log_share_ratio, with_model_priors
from ...io.alignment import ALIGN_METHODS
from ...io.indices import DEFAULT_INDICES, IndexConfig, parse_index_config, resolve_indices
from ...io.panms import PanMsPair
from ...io.series import SeriesSpec, TimeSeries
from ...io.sources import S1_SCALES, SourceFeatures
from ...jobs import Job, check_settings, settings_from
from ...modelfile.storage import restore_model
from ...progress import Reporter
from ...reference.classes import ClassTable
from ...reference.splits import SplitReference, preset_split
from ...training.choices import PRIOR_SETTINGS
from ...training.loop import FitResult
from ...wording import counted
from ..blockjobs import classify_command
from ..jobsteps import (
    PixelSet,
    check_odd_patch,
    choose_class_priors,
    held_out_outputs,
    model_output,
    predict_held_out_parts,
    save_trained_model,
    score_held_out,
    split_reference,
)
from ..mapsteps import classify_to_files, map_outputs, model_input
from ..twinns.commands import TWINNSInputs
from .forest import Forest
from .inputs import (
    ForestInputs,
    RandomForestClassifyConfig,
    inputs_for_model,
    model_features,
    require_inputs,
)
from .pixelfeatures import (
    FEATURE_KINDS,
    ForestTilePredictor,
    PixelFeatures,
    features_at,
)

FAMILY = "randomforest"
SOURCES = ("s2", "s1s2", "panms")
#: Features tried at each split: the square root or log2 of their number, or all of them.
MAX_FEATURES = {"sqrt": "sqrt", "log2": "log2", "all": None}


@dataclass(frozen=True)
class RandomForestTrainConfig:
    """Training settings; the forest's defaults are those of iota2 / OTB (100 trees of depth
    at most 25)."""

    source: str = "s2"
    features: str = "pixel"
    patch_size: int = 5
    samples_per_class: int = 1000
    train_on_validation: bool = False
    n_trees: int = 100
    max_depth: int = 25
    max_features: str = "sqrt"
    add_indices: bool = True
    indices: str = ",".join(DEFAULT_INDICES)
    band_roles: str = ""
    s1_scale: str = "db"
    threads: int = 0
    tile_size: int = 128
    align_ms: str = "none"
    class_priors: str = "validation"

    def __post_init__(self) -> None:
        check_settings(self, positive=("samples_per_class", "n_trees", "tile_size"),
                       non_negative=("max_depth",),
                       choices={"source": SOURCES, "features": FEATURE_KINDS,
                                "max_features": tuple(MAX_FEATURES), "s1_scale": S1_SCALES,
                                "align_ms": ALIGN_METHODS, "class_priors": PRIOR_SETTINGS})
        self.pixel_features()

    def pixel_features(self) -> PixelFeatures:
        return PixelFeatures(self.features, self.patch_size)

    def index_config(self) -> IndexConfig | None:
        """The indices added to each Sentinel-2 date (as for TWINNS)."""
        return parse_index_config(self.add_indices, self.indices, self.band_roles)


def training_inputs(inputs: dict, config: RandomForestTrainConfig,
                    reporter: Reporter) -> ForestInputs:
    """The layers of the configured source, read as the deep family of that source reads
    them (S2 indices and S1 in dB as TWINNS, the PAN/MS grid checks of MRFusion), series
    from the earliest date to the latest."""
    require_inputs(inputs, config.source, f"the source {config.source} is")
    if config.source == "panms":
        return ForestInputs("panms", pair=PanMsPair(SeriesSpec.from_json(inputs["pan"]),
                                                    SeriesSpec.from_json(inputs["ms"]),
                                                    config.align_ms))
    if config.source == "s2":
        series = TimeSeries(SeriesSpec.from_json(inputs["s2"]), "S2")
        series.sort_by_date(reporter)
        indices = resolve_indices(config.index_config(), series.band_names, reporter)
        return ForestInputs("s2", [("S2", SourceFeatures(series, indices))], indices=indices)
    both = TWINNSInputs.from_job(inputs, None, config.s1_scale).with_indices(
        config.index_config(), reporter)
    both.sort_by_date(reporter)
    return ForestInputs("s1s2", [("S1", both.s1), ("S2", both.s2)], indices=both.s2.indices,
                        s1_scale=config.s1_scale)


def sample_training_pixels(split: SplitReference, config: RandomForestTrainConfig,
                           rng: np.random.Generator) -> PixelSet:
    """At most `samples_per_class` pixels of each class from the training polygons (and the
    validation polygons with `train_on_validation`), drawn without replacement."""
    part = split.mask(0) | (split.mask(1) if config.train_on_validation else False)
    chosen = []
    for index in np.unique(split.pixel_class[part]):
        members = np.flatnonzero(part & (split.pixel_class == index))
        if members.size > config.samples_per_class:
            members = np.sort(rng.choice(members, config.samples_per_class, replace=False))
        chosen.append(members)
    if not chosen:
        raise LcfusionError("the training polygons cover no pixel of the rasters", "REFERENCE")
    picked = np.concatenate(chosen)
    pixels = split.reference.pixels
    return PixelSet(pixels.rows[picked], pixels.cols[picked], split.pixel_class[picked],
                    pixels.objects[picked])


def fill_values_of(x: np.ndarray, names: list[str], reporter: Reporter) -> np.ndarray:
    """Per feature, the mean of its known values in the training sample (0 if it has none)."""
    known = np.isfinite(x)
    counts = known.sum(axis=0)
    sums = np.where(known, x, 0.0).sum(axis=0, dtype=np.float64)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        reporter.warning(f"{counted(int(empty.size), 'feature')} "
                         f"{'has' if empty.size == 1 else 'have'} no value in the training "
                         f"sample (for example {names[empty[0]]}); "
                         f"{'it is' if empty.size == 1 else 'they are'} set to 0")
    return (sums / np.maximum(counts, 1)).astype(np.float32)


@dataclass
class ForestWeights:
    """The forest's arrays as the tensors of a model file (what `save_trained_model` saves)."""

    forest: Forest

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy(array) for name, array in self.forest.tensors().items()}


def train_randomforest(job: Job, reporter: Reporter) -> dict:
    """Train a Random Forest on the configured source and reference polygons; write the
    model file."""
    started = time.monotonic()
    settings = job.section("settings")
    config = settings_from(RandomForestTrainConfig, settings)
    split_config = preset_split(job.section("split"), settings)
    model_path = model_output(job)
    held_out = held_out_outputs(job)
    features = config.pixel_features()
    inputs = training_inputs(job.section("inputs"), config, reporter)
    for line in inputs.describe():
        reporter.info(line)
    check_odd_patch(features.size, inputs.grid)
    channels = inputs.channel_names()
    names = features.names(channels)
    threads = configure_threads(config.threads)
    rng = np.random.default_rng(split_config.seed)
    grid = inputs.grid

    with job.workdir() as scratch:
        split = split_reference(job, grid, split_config, Path(scratch), reporter)
        classes = split.reference.classes
        reporter.progress(0.05, "reference")
        sample = sample_training_pixels(split, config, rng)
        with inputs.open() as stack:
            ranges = inputs.input_ranges(stack, np.random.default_rng(split_config.seed))
            x, has_data = features_at(stack, features, sample.rows, sample.cols, grid.height,
                                      grid.width, config.tile_size, reporter.span(0.05, 0.25))
            sample = sample.take(has_data)
            x = x[has_data]
            if not has_data.all():
                reporter.info(f"{int((~has_data).sum())} sampled pixels have no data and are "
                              "not used")
            if sample.size == 0:
                raise LcfusionError("the training polygons cover no pixel with data",
                                    "REFERENCE")
            counts = np.bincount(sample.classes, minlength=len(classes))
            reporter.info(f"training sample: {counted(sample.size, 'pixel')} (at most "
                          f"{config.samples_per_class} per class): " + ", ".join(
                              f"{c.name} {counts[c.index]}" for c in classes))
            reporter.info(f"Random Forest: {counted(config.n_trees, 'tree')}, maximum depth "
                          f"{config.max_depth or 'unlimited'}, {config.max_features} of "
                          f"{len(names)} features ({features.kind}"
                          + (f", patches {features.size} x {features.size}"
                             if features.kind != "pixel" else "")
                          + f") per split, {counted(threads, 'thread')}")
            reporter.progress(0.25, "training the forest")
            forest, importance, depth = fit_forest(x, sample.classes, len(classes), config,
                                                   split_config.seed, threads, names, reporter)
            reporter.progress(0.6)
            predictor = ForestTilePredictor(forest, features, config.tile_size, threads)
            trained_on = split.class_counts(0) + (split.class_counts(1)
                                                  if config.train_on_validation else 0)
            predictions = predict_held_out_parts(
                predictor, stack, grid, split, log_share_ratio(trained_on, counts),
                reporter.span(0.6, 0.95))
            priors, validation_predicted = choose_class_priors(
                config.class_priors, trained_on, counts, split, reporter.span(0.95, 0.96),
                predictions.validation, validation_held_out=not config.train_on_validation)
            accuracy = score_held_out(split, predictions.test_predicted(priors),
                                      reporter.span(0.96, 0.97), held_out, validation_predicted)

    architecture = {"source": inputs.source, "features": features.kind,
                    "patch_size": features.size, "n_features": len(names),
                    "feature_names": names, "n_classes": len(classes),
                    "n_trees": config.n_trees, "max_depth": config.max_depth,
                    "max_features": config.max_features, "depth_reached": depth,
                    "ratio": inputs.pair.ratio if inputs.pair else None}
    return save_trained_model(
        model_path, ForestWeights(forest), family=FAMILY, architecture=architecture,
        inputs=inputs.to_json(),
        normalization={"method": "none", "missing": "mean of the training sample "
                       "(tensor fill_values)"},
        settings=config, split_config=split_config, split=split,
        fit_result=FitResult(best_state={}, best_epoch=0), device=torch.device("cpu"),
        threads=threads, started=started, accuracy=accuracy, reporter=reporter, priors=priors,
        extra={"sampling": {"samples_per_class": config.samples_per_class,
                            "pixels": {c.name: int(counts[c.index]) for c in classes}},
               "input_ranges": ranges,
               "feature_importance": importance[:50]})


def fit_forest(x: np.ndarray, labels: np.ndarray, n_classes: int,
               config: RandomForestTrainConfig, seed: int, threads: int, names: list[str],
               reporter: Reporter) -> tuple[Forest, list[dict], int]:
    """Fit scikit-learn's forest on `x` (missing values replaced by the sample's means) and
    export it; also the features ranked by importance and the depth reached."""
    fill = fill_values_of(x, names, reporter)
    missing = float(np.isnan(x).mean()) if x.size else 0.0
    if missing:
        reporter.info(f"{missing:.1%} of the training feature values are missing and replaced "
                      "by the mean of the sample")
    estimator = RandomForestClassifier(
        n_estimators=config.n_trees, max_depth=config.max_depth or None,
        max_features=MAX_FEATURES[config.max_features], n_jobs=threads,
        random_state=seed).fit(np.where(np.isnan(x), fill, x), labels)
    forest = Forest.from_sklearn(estimator, estimator.classes_, n_classes, fill)
    depth = max(e.get_depth() for e in estimator.estimators_)
    reporter.info(f"forest trained: {forest.tree_offsets[-1]:,} nodes, "
                  f"{forest.leaf_value.shape[0]:,} leaves, depth reached {depth}")
    importance = ranked_importance(estimator.feature_importances_, names)
    reporter.info("most important features: " + ", ".join(
        f"{row['feature']} {row['importance']:.3f}" for row in importance[:10]))
    return forest, importance, depth


def ranked_importance(importance: np.ndarray, names: list[str]) -> list[dict]:
    """Features by decreasing mean decrease in impurity."""
    order = np.argsort(-importance, kind="stable")
    return [{"feature": names[i], "importance": round(float(importance[i]), 5)} for i in order]


def load_randomforest(path: Path) -> tuple[dict, Forest, ClassTable]:
    """A trained forest with its metadata and class table (checksum verified, no pickle)."""
    def build(metadata: dict, tensors: dict) -> tuple[Forest, ClassTable]:
        forest = Forest.from_tensors({k: v.numpy() for k, v in tensors.items()})
        classes = ClassTable.from_json(metadata["classes"])
        if forest.n_classes != len(classes) or forest.n_features != int(
                metadata["architecture"]["n_features"]):
            raise ValueError("the forest does not fit the class table or the feature count")
        return forest, classes

    metadata, (forest, classes) = restore_model(path, FAMILY, build)
    return metadata, forest, classes


@classify_command
def classify_randomforest(job: Job, reporter: Reporter) -> dict:
    """Classify the model's source with a trained Random Forest, tile by tile."""
    config = settings_from(RandomForestClassifyConfig, job.section("settings"))
    maps = map_outputs(job)
    model_path = model_input(job)
    metadata, forest, classes = load_randomforest(model_path)
    inputs = inputs_for_model(job.section("inputs"), metadata, reporter, config.align_ms)
    for line in inputs.describe():
        reporter.info(line)
    features = model_features(metadata, inputs)
    threads = configure_threads(config.threads)
    reporter.info(f"classifying with {model_path.name} ({counted(len(classes), 'class')}, "
                  f"{counted(forest.n_trees, 'tree')}, {features.kind} features) on "
                  f"{counted(threads, 'thread')}")
    predictor = with_model_priors(ForestTilePredictor(forest, features, config.tile_size,
                                                      threads), metadata, reporter)
    with inputs.open() as stack:
        inputs.check_scales(stack, metadata.get("input_ranges"), reporter)
        return classify_to_files(predictor, stack, inputs.grid, classes, maps, model_path,
                                 FAMILY, reporter)
