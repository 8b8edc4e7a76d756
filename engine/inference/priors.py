"""Class priors: how common each class is, put back into a model trained on balanced samples.

Every family trains on samples balanced by class (the forest on at most N pixels per class, the
deep families on patches or samples centred class by class), so it ranks a pixel's classes as if
every class covered as much of the scene as any other. Where forest covers ten times the area of
scrub, the map is right on more pixels when the ranking knows it: the probabilities are
multiplied by (share of the class among the training polygons' pixels / its share in what the
model was fitted to) ** strength and renormalised (a prior shift, Saerens et al. 2002; strength 1
is Bayes' rule for calibrated probabilities of a model fitted to those shares). The strength is
chosen on the validation polygons: the one with the highest overall accuracy there, the weakest
on a tie. No torch here: the ONNX classifications use it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.windows import Window

from ..progress import Reporter
from .tiles import TilePredictor

#: The strengths tried on the validation polygons, weakest first.
STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


def log_share_ratio(training_pixels: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """Per class, log(share among the training polygons' pixels / share in the fitted sample);
    0 for a class missing from either (the model cannot rank it by its prior)."""
    training_pixels = np.asarray(training_pixels, dtype=np.float64)
    fitted = np.asarray(fitted, dtype=np.float64)
    present = (training_pixels > 0) & (fitted > 0)
    ratio = np.zeros(training_pixels.size)
    if present.any():
        train_share = training_pixels[present] / training_pixels[present].sum()
        fitted_share = fitted[present] / fitted[present].sum()
        ratio[present] = np.log(train_share / fitted_share)
    return ratio


@dataclass(frozen=True)
class ClassPriors:
    """A prior shift: `strength` times `log_ratio` (one per class) added to the log
    probabilities; strength 0 leaves them as they are."""

    strength: float
    log_ratio: tuple[float, ...]

    @property
    def shifts(self) -> bool:
        return self.strength != 0 and any(self.log_ratio)

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        """The shifted probabilities of (classes, ...) `probabilities`, summing to 1 over the
        classes again (NaN stays NaN)."""
        if not self.shifts:
            return probabilities
        offsets = self.strength * np.asarray(self.log_ratio)
        factors = np.exp(offsets - offsets.max()).astype(probabilities.dtype)
        shifted = probabilities * factors.reshape((-1,) + (1,) * (probabilities.ndim - 1))
        total = shifted.sum(axis=0, keepdims=True)
        return shifted / np.where(total > 0, total, 1)

    def to_json(self) -> dict:
        return {"strength": self.strength, "log_ratio": [round(v, 6) for v in self.log_ratio]}

    @classmethod
    def from_json(cls, data: dict | None, n_classes: int) -> ClassPriors:
        """The priors a model file records; none (an older file) shifts nothing."""
        if not data:
            return cls(0.0, (0.0,) * n_classes)
        return cls(float(data["strength"]), tuple(float(v) for v in data["log_ratio"]))


def mean_priors(members: list[dict | None], n_classes: int) -> ClassPriors:
    """The priors of an ensemble: the mean of its members' shifts (strength times log ratio;
    none for a member without priors), at strength 1."""
    priors = [ClassPriors.from_json(member, n_classes) for member in members]
    mean = np.mean([p.strength * np.asarray(p.log_ratio) for p in priors], axis=0)
    return ClassPriors(1.0 if mean.any() else 0.0, tuple(float(v) for v in mean))


def choose_strength(probabilities: np.ndarray, reference: np.ndarray, log_ratio: np.ndarray,
                    strengths: tuple[float, ...] = STRENGTHS) -> tuple[ClassPriors, list[float]]:
    """The priors whose strength gives the highest overall accuracy on validation pixels
    (`probabilities` (classes, n), NaN where a pixel has no data; `reference` their class
    indices), the weakest on a tie; also the accuracy of each strength."""
    classified = np.isfinite(probabilities).all(axis=0)
    probabilities, reference = probabilities[:, classified], reference[classified]
    ratio = tuple(float(v) for v in log_ratio)
    accuracies = []
    for strength in strengths:
        predicted = ClassPriors(strength, ratio).apply(probabilities).argmax(axis=0)
        accuracies.append(float((predicted == reference).mean()) if reference.size else 0.0)
    best = int(np.argmax(accuracies))  # the first of equals: the weakest
    return ClassPriors(strengths[best], ratio), accuracies


class ShiftedPredictor(TilePredictor):
    """A predictor whose probabilities are shifted by class priors; it reads and computes as
    the predictor it wraps."""

    def __init__(self, inner: TilePredictor, priors: ClassPriors):
        self.inner = inner
        self.priors = priors
        if hasattr(inner, "check_precision"):  # its bfloat16 check compares the map's classes
            inner.class_priors = priors
        self.tile_size = inner.tile_size
        self.halo = inner.halo
        self.mapped_buffers = inner.mapped_buffers
        if hasattr(inner, "infer_pixels"):
            self.infer_pixels = self._infer_pixels

    @property
    def precision_check(self) -> Any:
        """What the wrapped predictor's check of bfloat16 found, if it has one
        (`mapsteps.report_precision`)."""
        return getattr(self.inner, "precision_check", None)

    def cores(self, height: int, width: int) -> Iterator[Window]:
        return self.inner.cores(height, width)

    def window(self, core: Window) -> Window:
        return self.inner.window(core)

    def load(self, reader: Any, core: Window) -> Any:
        return self.inner.load(reader, core)

    def infer(self, tile: Any) -> tuple[np.ndarray, np.ndarray]:
        probabilities, valid = self.inner.infer(tile)
        return self.priors.apply(probabilities), valid

    def infer_values(self, tile: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        probabilities, valid, values = self.inner.infer_values(tile)
        return self.priors.apply(probabilities), valid, values

    def _infer_pixels(self, tile: Any, rows: np.ndarray, cols: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
        probabilities, valid = self.inner.infer_pixels(tile, rows, cols)
        return self.priors.apply(probabilities), valid


def with_priors(predictor: TilePredictor, priors: ClassPriors) -> TilePredictor:
    """`predictor` itself when `priors` shift nothing, else wrapped (the wrapped predictor
    then belongs to its wrapper: its bfloat16 check ranks with the priors)."""
    if priors.shifts:
        return ShiftedPredictor(predictor, priors)
    if hasattr(predictor, "check_precision"):
        predictor.class_priors = None  # ranked by its own probabilities again
    return predictor


def describe(priors: ClassPriors, metadata: dict) -> str:
    """The class priors a model file records, in words."""
    if "ensemble" in metadata:
        return "the mean of the ensemble members' class priors"
    return f"class priors of the training polygons at strength {priors.strength:g}"


def with_model_priors(predictor: TilePredictor, metadata: dict,
                      reporter: Reporter) -> TilePredictor:
    """`predictor` with the class priors its model file records (none in older files)."""
    priors = ClassPriors.from_json(metadata.get("class_priors"), len(metadata["classes"]))
    if priors.shifts:
        reporter.info(f"{describe(priors, metadata)}, as recorded in the model file")
    return with_priors(predictor, priors)
