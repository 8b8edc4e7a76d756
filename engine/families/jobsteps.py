"""Steps the train and classify commands of every family share: output checks, the reference
split, accuracy on the test polygons, writing the class map and what goes back to the plugin."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.windows import Window

from ..compute.distributed import Ranks
from ..errors import LcfusionError
from ..inference.classifying import (
    labels_of,
    pixels_by_tile,
)
from ..inference.ensemble import Ensemble
from ..inference.priors import (
    STRENGTHS,
    ClassPriors,
    choose_strength,
    log_share_ratio,
)
from ..inference.tiles import TilePredictor
from ..io.outputs import check_writable
from ..io.rasters import Grid
from ..jobs import Job
from ..modelfile.storage import save_model
from ..progress import Reporter
from ..reference.polygons import ReferenceSpec, load_reference
from ..reference.splits import PARTS, ObjectSplit, SplitConfig, SplitReference
from ..reports.metrics import Accuracy, compute_accuracy
from ..training.loop import Batch, FitConfig, FitResult, RunContext, fit
from ..training.sampling import polygon_balanced
from ..wording import counted


def model_output(job: Job) -> Path:
    """The model file to write, checked before any work starts."""
    path = job.resolve(job.section("outputs").get("model"))
    if path is None:
        raise LcfusionError("no output model file given", "OUTPUT_MODEL")
    check_writable(path, "OUTPUT_MODEL")
    return path


@dataclass(frozen=True)
class HeldOutFiles:
    """Optional ``.npz`` files for the predictions of the held-out pixels: the test polygons'
    (``outputs.test_pixels``; what a paired comparison of two models needs) and the validation
    polygons' (``outputs.validation_pixels``; what choosing settings needs, never the test)."""

    test: Path | None = None
    validation: Path | None = None


def held_out_outputs(job: Job) -> HeldOutFiles:
    """The held-out pixel files of the job, checked before any work starts."""
    outputs = job.section("outputs")
    files = HeldOutFiles(job.resolve(outputs.get("test_pixels")),
                         job.resolve(outputs.get("validation_pixels")))
    for path, parameter in ((files.test, "OUTPUT_TEST_PIXELS"),
                            (files.validation, "OUTPUT_VALIDATION_PIXELS")):
        if path is not None:
            check_writable(path, parameter)
    return files


def shared_normalization(job: Job) -> dict | None:
    """The normalisation statistics the job gives (``normalization``, in the model file's
    form), or None: the training fits its own. The later members of an ensemble of repeated
    splits get the first member's, so every member sees the inputs the file's single
    normalisation gives."""
    return job.section("normalization") or None


def check_odd_patch(size: int, grid: Grid) -> None:
    """A patch centred on its pixel must fit in the rasters (a larger one only mirrors them
    and multiplies the memory needed)."""
    side = min(grid.width, grid.height)
    if size > side:
        raise LcfusionError(
            f"{size} pixels is larger than the rasters ({grid.width} x {grid.height}); use at "
            f"most {side - 1 + side % 2}", "PATCH_SIZE")


def report_ensemble(model: torch.nn.Module, reporter: Reporter) -> None:
    """Say so when the model that classifies is an ensemble of repeated splits."""
    if isinstance(model, Ensemble):
        reporter.info(f"the model is an ensemble of {counted(len(model.members), 'model')} (one "
                      "per repeated split): the maps hold the mean of their class "
                      "probabilities")


def split_reference(job: Job, grid: Grid, split_config: SplitConfig, scratch: Path,
                    reporter: Reporter) -> SplitReference:
    """Burn the reference polygons on `grid`, split them by object and log the split."""
    reference = load_reference(ReferenceSpec.from_json(job.section("reference")), grid,
                               scratch, reporter)
    classes = reference.classes
    reporter.info(f"{counted(reference.n_features, 'reference feature')}, "
                  f"{counted(len(classes), 'class')}: "
                  + ", ".join(f"{c.code} {c.name}" for c in classes))
    split = SplitReference(reference, ObjectSplit(split_config).assign(
        reference.object_class, reference.present_objects(), classes, reference.object_area))
    for row in split.summary():
        reporter.info(f"  {row['name']}: " + ", ".join(
            f"{p} {counted(row[p + '_objects'], 'polygon')} / {row[p + '_pixels']} px"
            for p in PARTS))
    return split


def balanced_pixels(classes: np.ndarray, count: int, rng: np.random.Generator,
                    objects: np.ndarray | None = None) -> np.ndarray:
    """`count` indices into `classes`: a class uniformly among those present, then one of its
    pixels uniformly (with `objects`, the pixels' polygon ids: one of its polygons uniformly,
    then one of that polygon's pixels)."""
    if objects is not None:
        return polygon_balanced(classes, objects, count, rng)
    by_class = [np.flatnonzero(classes == c) for c in np.unique(classes)]
    picks = rng.integers(0, len(by_class), size=count)
    return np.array([by_class[p][rng.integers(0, by_class[p].size)] for p in picks],
                    dtype=np.int64)


PIXEL_COLUMNS = ("rows", "cols", "classes", "objects")


@dataclass(frozen=True)
class PixelSet:
    """Labelled pixels: rows, columns, class indices and polygon (object) ids."""

    rows: np.ndarray
    cols: np.ndarray
    classes: np.ndarray
    objects: np.ndarray

    @property
    def size(self) -> int:
        return int(self.rows.size)

    def take(self, index: np.ndarray | slice) -> PixelSet:
        return PixelSet(self.rows[index], self.cols[index], self.classes[index],
                        self.objects[index])

    def balanced(self, count: int, rng: np.random.Generator, sampling: str) -> PixelSet:
        """`count` pixels drawn as `sampling` says (see `training.choices.SAMPLINGS`)."""
        return self.take(balanced_pixels(self.classes, count, rng,
                                         self.objects if sampling == "polygon" else None))


@dataclass(frozen=True)
class TrainingPixels:
    """The pixels a pixel-wise family trains and validates on."""

    train: PixelSet
    validation: PixelSet

    @classmethod
    def from_split(cls, split: SplitReference, usable: np.ndarray | None = None
                   ) -> TrainingPixels:
        """The training and validation polygons' pixels; `usable` excludes labelled pixels
        (for example on nodata)."""
        pixels = split.reference.pixels

        def part(index: int) -> PixelSet:
            mask = split.mask(index) if usable is None else split.mask(index) & usable
            return PixelSet(pixels.rows[mask], pixels.cols[mask], split.pixel_class[mask],
                            pixels.objects[mask])

        return cls(part(0), part(1))

    def all_rows_cols(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows and columns of the training and validation pixels together."""
        return (np.concatenate([self.train.rows, self.validation.rows]),
                np.concatenate([self.train.cols, self.validation.cols]))

    def to_table(self) -> dict[str, np.ndarray]:
        return {f"{name}_{column}": getattr(getattr(self, name), column).astype(np.int64)
                for name in ("train", "validation") for column in PIXEL_COLUMNS}

    @classmethod
    def from_table(cls, table: dict[str, np.ndarray]) -> TrainingPixels:
        return cls(*(PixelSet(*(table[f"{name}_{column}"] for column in PIXEL_COLUMNS))
                     for name in ("train", "validation")))


def labelled_with_data(readers: Sequence[Any], grid: Grid, split: SplitReference,
                       reporter: Reporter, where: str = "nodata",
                       budget_bytes: int = 64 << 20) -> np.ndarray:
    """Which labelled pixels have a value in some channel of `readers` (on `grid`): pixels on
    nodata or fill are not trained on. The rasters are read in bands of rows of at most
    `budget_bytes` each, so memory does not grow with them."""
    channels = max(reader.series.n_channels for reader in readers)
    band_rows = max(1, min(256, budget_bytes // (4 * channels * grid.width)))
    pixels = split.reference.pixels
    valid = np.zeros(len(pixels), dtype=bool)
    order = np.argsort(pixels.rows, kind="stable")
    sorted_rows = pixels.rows[order]
    for top in range(0, grid.height, band_rows):
        lo, hi = np.searchsorted(sorted_rows, [top, top + band_rows])
        if lo == hi:
            continue
        members = order[lo:hi]
        window = Window(0, top, grid.width, min(band_rows, grid.height - top))
        rows, cols = pixels.rows[members] - top, pixels.cols[members]
        for reader in readers:
            valid[members] |= np.isfinite(reader.read(window)[:, rows, cols]).any(axis=0)
    dropped = int((~valid).sum())
    if dropped:
        reporter.info(f"{dropped} labelled pixels fall on {where} and are not used")
    return valid


#: Batches of the given pixels: (rows, cols, class indices, augmentation rng or None).
PixelBatches = Callable[[np.ndarray, np.ndarray, np.ndarray, np.random.Generator | None],
                        Iterable[Batch]]


def rank_generator(rng: np.random.Generator, ranks: Ranks) -> np.random.Generator:
    """Rank 0 goes on with `rng` (so one rank draws what a local run draws); every other rank
    gets a stream of its own."""
    if ranks.leader:
        return rng
    return np.random.default_rng([int(rng.integers(1 << 62)), ranks.rank])


def fit_on_pixels(model: torch.nn.Module, pixels: TrainingPixels, batches: PixelBatches,
                  config: Any, loss_fn: Callable, device: torch.device,
                  rng: np.random.Generator, reporter: Reporter, augment: bool = True,
                  context: RunContext | None = None) -> FitResult:
    """Train on `config.samples_per_epoch` balanced pixels (`config.sampling`) of the training
    polygons per epoch; validate on a fixed set of `config.validation_samples` pixels of the
    validation polygons, drawn the same way. With several ranks, each draws its share of the
    samples from its share of the training pixels."""
    context = context or RunContext()
    ranks = context.ranks
    if pixels.train.size == 0:
        raise LcfusionError("the training polygons cover no pixel with data", "REFERENCE")
    val_batches = None
    validation = pixels.validation
    if validation.size and config.validation_samples:
        chosen = validation.balanced(config.validation_samples,
                                     np.random.default_rng(rng.integers(1 << 31)),
                                     config.sampling)

        def val_batches():
            return batches(chosen.rows, chosen.cols, chosen.classes, None)

    rng = context.rng = rank_generator(rng, ranks)
    train = pixels.train.take(slice(ranks.rank, None, ranks.size))
    per_rank = math.ceil(config.samples_per_epoch / ranks.size)

    def train_batches(epoch: int):
        drawn = train.balanced(per_rank, rng, config.sampling)
        return batches(drawn.rows, drawn.cols, drawn.classes, rng if augment else None)

    fit_config = FitConfig.of(config)
    steps = math.ceil(per_rank / config.batch_size)
    return fit(model, train_batches, steps, val_batches, loss_fn, fit_config, device, reporter,
               context)


def save_held_out_pixels(path: Path, split: SplitReference, part: int,
                         predicted: np.ndarray) -> None:
    """The pixels of one split part (1 validation, 2 test): row, column, reference feature,
    their reference class code and the predicted one (-1 on nodata), as arrays of an ``.npz``
    file."""
    held_out = split.mask(part)
    pixels = split.reference.pixels
    codes = np.array([entry.code for entry in split.reference.classes], dtype=np.int64)
    np.savez_compressed(
        path, rows=pixels.rows[held_out].astype(np.int64),
        cols=pixels.cols[held_out].astype(np.int64),
        feature=split.reference.object_feature[pixels.objects[held_out]].astype(np.int64),
        reference=codes[split.pixel_class[held_out]],
        predicted=np.where(predicted >= 0, codes[np.maximum(predicted, 0)], -1))


def held_out_accuracy(split: SplitReference, part: int,
                      predicted: np.ndarray) -> Accuracy | None:
    """The accuracy of one split part's predicted classes on its pixels that are classified;
    None when none is."""
    classified = predicted >= 0
    if not classified.any():
        return None
    return compute_accuracy(split.pixel_class[split.mask(part)][classified],
                            predicted[classified], split.reference.classes)


@dataclass(frozen=True)
class HeldOutPredictions:
    """What one pass over the held-out polygons gives (`predict_held_out_parts`): the
    validation pixels' class probabilities (classes, pixels; NaN where the class map is
    nodata), and the test pixels' classes (-1 on nodata) under the class priors of each
    strength of `STRENGTHS` (strengths, pixels), so that the strength the validation pixels
    choose needs no second pass over the test polygons."""

    validation: np.ndarray
    test_labels: np.ndarray
    #: The class priors' log share ratio the strengths scaled.
    log_ratio: tuple[float, ...]

    def test_predicted(self, priors: ClassPriors) -> np.ndarray:
        """The test pixels' classes with `priors` (a strength of `STRENGTHS`, of the same log
        share ratio)."""
        if priors.strength not in STRENGTHS or (
                priors.shifts and not np.allclose(priors.log_ratio, self.log_ratio)):
            raise ValueError(f"the test labels were kept for the strengths {STRENGTHS} of "
                             f"another log share ratio, not for {priors}")
        return self.test_labels[STRENGTHS.index(priors.strength)].astype(np.int64)


def predict_held_out_parts(predictor: TilePredictor, reader: Any, grid: Grid,
                           split: SplitReference, log_ratio: np.ndarray, reporter: Reporter
                           ) -> HeldOutPredictions:
    """The validation and test polygons' predictions of `predictor` (without priors) in one
    pass over the tiles that hold either (their tiles mostly overlap); `log_ratio`: the class
    priors' log share ratio that each strength scales. Holds the validation probabilities and
    a few labels per test pixel, never the test probabilities."""
    validation, test = split.mask(1), split.mask(2)
    either = validation | test
    at_test = test[either]
    position = np.where(at_test, np.cumsum(at_test), np.cumsum(~at_test)) - 1
    probabilities = np.full((len(split.reference.classes), int(validation.sum())), np.nan,
                            dtype=np.float32)
    labels = np.full((len(STRENGTHS), int(test.sum())), -1, dtype=np.int16)
    ratio = tuple(float(value) for value in log_ratio)
    shifts = [ClassPriors(strength, ratio) for strength in STRENGTHS]
    pixels = split.reference.pixels
    for members, probs, valid in pixels_by_tile(predictor, reader, grid, pixels.rows[either],
                                                pixels.cols[either], reporter):
        probs = np.where(valid, probs, np.nan)
        tested = at_test[members]
        probabilities[:, position[members[~tested]]] = probs[:, ~tested]
        for row, priors in zip(labels, shifts, strict=True):
            row[position[members[tested]]] = labels_of(priors.apply(probs[:, tested]))
    return HeldOutPredictions(probabilities, labels, ratio)


def choose_kept_weights(model: torch.nn.Module, fit_result: FitResult,
                        predictor_for: Callable[[], TilePredictor], reader: Any, grid: Grid,
                        split: SplitReference, log_ratio: np.ndarray, reporter: Reporter
                        ) -> tuple[FitResult, HeldOutPredictions]:
    """Keep "best-or-last": of the best epoch's weights and the last epoch's, those whose
    predictions are right on more of the validation polygons' pixels (a tie keeps the best
    epoch's); `model` ends with them. The monitored score that picked the best epoch sees a
    few patches or samples; this sees every validation pixel. `predictor_for()` makes a
    predictor of `model` as it is (predictors copy the model). Returns the fit result of the
    kept weights and their held-out predictions (`predict_held_out_parts`); other keeps pass
    through, with the predictions of the model as it is."""
    if fit_result.last_state is None or not split.mask(1).any():
        if fit_result.last_state is not None:
            reporter.info(f"no validation polygons to choose between the best epoch's and the "
                          f"last epoch's weights: kept the best epoch's, "
                          f"{fit_result.best_epoch}")
            fit_result = replace(fit_result, last_state=None)
        return fit_result, predict_held_out_parts(predictor_for(), reader, grid, split,
                                                  log_ratio, reporter)
    candidates = ((fit_result.best_epoch, fit_result.best_state),
                  (fit_result.last_epoch, fit_result.last_state))
    predictions, scores = [], []
    for index, (_, state) in enumerate(candidates):
        model.load_state_dict(state)
        predictions.append(predict_held_out_parts(
            predictor_for(), reader, grid, split, log_ratio,
            reporter.span(index / 2, (index + 1) / 2)))
        accuracy = held_out_accuracy(split, 1, labels_of(predictions[-1].validation))
        scores.append(0.0 if accuracy is None else accuracy.overall_accuracy)
    chosen = int(scores[1] > scores[0])
    epoch, state = candidates[chosen]
    model.load_state_dict(state)
    pixels = counted(int(split.mask(1).sum()), "validation pixel", thousands=True)
    reporter.info(f"OA on the {pixels}: {scores[0]:.3f} with the best epoch's weights "
                  f"({candidates[0][0]}), {scores[1]:.3f} with the last epoch's "
                  f"({candidates[1][0]}); kept "
                  f"{'the last' if chosen else 'the best'} epoch's")
    return replace(fit_result, best_state=state, best_epoch=epoch, last_state=None, kept={
        "rule": "best-or-last", "epoch": epoch,
        "candidates": [{"epoch": e, "validation_oa": round(score, 6)}
                       for (e, _), score in zip(candidates, scores, strict=True)]}
    ), predictions[chosen]


def choose_class_priors(setting: str, training_pixels: np.ndarray, fitted: np.ndarray,
                        split: SplitReference, reporter: Reporter,
                        validation: np.ndarray | None, validation_held_out: bool = True
                        ) -> tuple[ClassPriors, np.ndarray | None]:
    """The class priors of a trained model (see `inference.priors`), and the validation
    pixels' predicted classes with them (None without validation polygons), for
    `score_held_out`. `validation`: the validation pixels' class probabilities
    (`predict_held_out_parts`), required where there are validation polygons.
    `training_pixels`: per class, the pixels of the polygons the model trained on; `fitted`:
    per class, how much of what the model was fitted to it holds (pixels of the forest's
    sample; equal shares for the deep families' class-balanced samples); `setting`:
    "validation" (the strength chosen on the validation polygons), "training" (strength 1) or
    "balanced" (none). Validation polygons that were trained on (`validation_held_out` false)
    choose nothing: strength 1."""
    ratio = tuple(log_share_ratio(training_pixels, fitted))
    has_validation = bool(split.mask(1).any())
    if setting == "balanced":
        priors = ClassPriors(0.0, ratio)
    elif setting == "training":
        priors = ClassPriors(1.0, ratio)
    elif not has_validation:
        priors = ClassPriors(0.0, ratio)
        reporter.info("class priors: no validation polygons to choose their strength on; the "
                      "classes are ranked as in the balanced training sample")
    elif not validation_held_out:
        priors = ClassPriors(1.0, ratio)
        reporter.info("class priors: the validation polygons were trained on, so they choose "
                      "no strength; strength 1 (the training polygons' shares)")
    else:
        if validation is None:
            raise ValueError("the validation polygons' probabilities are needed to choose the "
                             "class priors' strength")
        priors, accuracies = choose_strength(validation, split.pixel_class[split.mask(1)],
                                             np.asarray(ratio))
        reporter.info("class priors: OA on the validation pixels " + ", ".join(
            f"{accuracy:.3f} at strength {strength:g}"
            for strength, accuracy in zip(STRENGTHS, accuracies, strict=True))
            + f"; kept strength {priors.strength:g}")
    if priors.shifts:
        reporter.info("class priors: the classes' probabilities are weighted by (their share "
                      f"of the training polygons' pixels / their share of the training sample) "
                      f"** {priors.strength:g}")
    predicted = (labels_of(priors.apply(validation))
                 if validation is not None and has_validation else None)
    return priors, predicted


def evaluate_trained(model: torch.nn.Module, fit_result: FitResult,
                     predictor_for: Callable[[], TilePredictor], reader: Any, grid: Grid,
                     split: SplitReference, class_priors: str, reporter: Reporter,
                     held_out: HeldOutFiles | None = None
                     ) -> tuple[FitResult, ClassPriors, Accuracy | None]:
    """A deep family's steps after its fit: the kept weights and their predictions on the
    held-out polygons (`choose_kept_weights`, one pass over them per candidate), the class
    priors (`choose_class_priors`, as fitted to equal shares: the samples were drawn class by
    class; FG-UNET's loss also counts the other labelled pixels of a patch, so its fitted
    shares lie between equal and the training polygons', which the strength chosen on the
    validation polygons absorbs) and the accuracy on the test polygons with both
    (`score_held_out`)."""
    training_pixels = split.class_counts(0)
    fitted = np.ones(len(split.reference.classes))
    fit_result, predictions = choose_kept_weights(
        model, fit_result, predictor_for, reader, grid, split,
        log_share_ratio(training_pixels, fitted), reporter.span(0.0, 0.95))
    priors, validation_predicted = choose_class_priors(
        class_priors, training_pixels, fitted, split, reporter.span(0.95, 0.97),
        predictions.validation)
    accuracy = score_held_out(split, predictions.test_predicted(priors),
                              reporter.span(0.97, 1.0), held_out, validation_predicted)
    return fit_result, priors, accuracy


def score_held_out(split: SplitReference, predicted: np.ndarray | None, reporter: Reporter,
                   save_to: HeldOutFiles | None = None,
                   validation_predicted: np.ndarray | None = None) -> Accuracy | None:
    """Accuracy on the pixels of the test polygons (None without test polygons) of their
    predicted class indices (`predicted`, -1 on nodata), with its report; with `save_to`, the
    held-out pixels' predictions go to its files (see `save_held_out_pixels`)."""
    save_to = save_to or HeldOutFiles()
    if save_to.validation is not None:
        if split.mask(1).any():
            if validation_predicted is None:
                raise ValueError("the validation polygons' predictions are needed to write "
                                 "their pixels file")
            save_held_out_pixels(save_to.validation, split, 1, validation_predicted)
            validation = held_out_accuracy(split, 1, validation_predicted)
            if validation is not None:
                reporter.info("accuracy on the validation polygons: "
                              f"{validation.summary('validation pixel')}")
        else:
            reporter.warning("no validation polygons: no validation pixels file is written")
    if predicted is None or not split.mask(2).any():
        reporter.warning("no test polygons (test fraction 0): no accuracy is reported")
        return None
    if save_to.test is not None:
        save_held_out_pixels(save_to.test, split, 2, predicted)
    unclassified = int((predicted < 0).sum())
    if unclassified:
        reporter.info(f"{unclassified} test pixels fall on nodata (nodata in the class map) "
                      "and are not counted")
    accuracy = held_out_accuracy(split, 2, predicted)
    if accuracy is None:
        reporter.warning("every test pixel falls on nodata: no accuracy is reported")
        return None
    reporter.info(f"accuracy on the held-out test polygons: {accuracy.summary()}")
    for row in accuracy.per_class:
        reporter.info(f"  {row['name']}: F1 {row['f1']:.3f} (precision {row['precision']:.3f}, "
                      f"recall {row['recall']:.3f}, {row['support']} px)")
    return accuracy


def save_trained_model(path: Path, model: torch.nn.Module, *, family: str, architecture: dict,
                       inputs: dict, normalization: dict, settings: Any, split_config: SplitConfig,
                       split: SplitReference, fit_result: FitResult, device: torch.device,
                       threads: int, started: float, accuracy: Accuracy | None,
                       reporter: Reporter, priors: ClassPriors | None = None,
                       extra: dict | None = None) -> dict:
    """Write the model file with everything needed to reuse and judge it (its class `priors`,
    plus the family's `extra` entries); return the outputs of the train command."""
    metadata = {
        "family": family,
        "architecture": architecture,
        "inputs": inputs,
        "normalization": normalization,
        "classes": split.reference.classes.to_json(),
        "training": {
            "settings": asdict(settings),
            "split": split_config.to_json(),
            "split_summary": split.summary(),
            "history": fit_result.history,
            "best_epoch": fit_result.best_epoch,
            "kept": fit_result.kept,
            "device": device.type,
            "threads": threads,
            "seconds": round(time.monotonic() - started, 1),
            "samples_per_second": round(fit_result.samples_per_second, 1),
        },
        "metrics": accuracy.to_json() if accuracy else None,
        **({"class_priors": priors.to_json()} if priors else {}),
        **(extra or {}),
    }
    save_model(path, metadata, model.state_dict())
    reporter.progress(1.0, "done")
    outputs = {"OUTPUT_MODEL": str(path), "CLASSES": split.reference.classes.to_json(),
               "SPLIT_PARTS": split.feature_parts(), "SPLIT_SEED": split_config.seed}
    if accuracy:
        outputs.update(OA=accuracy.overall_accuracy, KAPPA=accuracy.kappa,
                       MEAN_F1=accuracy.mean_f1)
    return outputs
