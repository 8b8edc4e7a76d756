"""Accuracy on held-out objects: OA, Cohen's Kappa, per-class and mean F1, confusion matrix."""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from ..reference.classes import ClassTable
from ..wording import counted


@dataclass
class Accuracy:
    """Pixel-level accuracy. `confusion` rows are reference classes, columns predictions.

    `mean_f1` averages the F1 of the classes present in the reference.
    """

    overall_accuracy: float
    kappa: float | None
    mean_f1: float
    per_class: list[dict]
    confusion: list[list[int]]
    n_pixels: int

    def to_json(self) -> dict:
        data = asdict(self)
        data["confusion_axes"] = "rows = reference, columns = prediction"
        return data

    def summary(self, pixels: str = "test pixel") -> str:
        kappa = "n/a" if self.kappa is None else f"{self.kappa:.4f}"
        return (f"OA {self.overall_accuracy:.4f}, Kappa {kappa}, mean F1 {self.mean_f1:.4f} "
                f"on {counted(self.n_pixels, pixels)}")


def compute_accuracy(reference: np.ndarray, predicted: np.ndarray,
                     classes: ClassTable, weights: np.ndarray | None = None) -> Accuracy:
    """Metrics from class indices (0..n-1) of reference and predicted pixels; with `weights`,
    each (reference, predicted) pair stands for that many pixels (counts by pairs)."""
    # Imported here: scikit-learn takes half a second to import, and every engine run that
    # classifies loads this module without scoring anything.
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import (
        accuracy_score,
        cohen_kappa_score,
        confusion_matrix,
        precision_recall_fscore_support,
    )

    labels = list(range(len(classes)))
    reference = np.asarray(reference).ravel()
    predicted = np.asarray(predicted).ravel()
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64).ravel()
    matrix = confusion_matrix(reference, predicted, labels=labels, sample_weight=weights)
    precision, recall, f1, support = precision_recall_fscore_support(
        reference, predicted, labels=labels, zero_division=0, sample_weight=weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        kappa = float(cohen_kappa_score(reference, predicted, labels=labels,
                                        sample_weight=weights))
    per_class = [
        {"code": c.code, "name": c.name, "precision": float(precision[c.index]),
         "recall": float(recall[c.index]), "f1": float(f1[c.index]),
         "support": int(round(support[c.index]))}
        for c in classes
    ]
    present = support > 0
    return Accuracy(
        overall_accuracy=float(accuracy_score(reference, predicted, sample_weight=weights)),
        kappa=None if math.isnan(kappa) else kappa,
        mean_f1=float(f1[present].mean()) if present.any() else 0.0,
        per_class=per_class,
        confusion=np.rint(matrix).astype(np.int64).tolist(),
        n_pixels=int(reference.size if weights is None else round(weights.sum())),
    )
