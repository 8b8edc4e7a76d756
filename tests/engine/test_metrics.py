"""Accuracy metrics against a hand-computed example."""

import numpy as np
import pytest

from lcfusion.engine.reference.classes import ClassTable
from lcfusion.engine.reports.metrics import compute_accuracy

CLASSES = ClassTable.build([10, 20, 30], names={10: "a", 20: "b", 30: "c"})


def test_metrics_match_a_hand_computed_example():
    # reference: 4 a, 3 b, 3 c; predictions: a a a b | b b c | c c a
    reference = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    predicted = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0])
    acc = compute_accuracy(reference, predicted, CLASSES)
    # confusion rows = reference, columns = prediction
    assert acc.confusion == [[3, 1, 0], [0, 2, 1], [1, 0, 2]]
    assert acc.overall_accuracy == pytest.approx(7 / 10)
    # p_e = (4*4 + 3*3 + 3*3) / 100 = 0.34; kappa = (0.7 - 0.34) / (1 - 0.34)
    assert acc.kappa == pytest.approx((0.7 - 0.34) / 0.66)
    # a: P 3/4 R 3/4 F1 .75; b: P 2/3 R 2/3; c: P 2/3 R 2/3
    f1 = [row["f1"] for row in acc.per_class]
    assert f1 == pytest.approx([0.75, 2 / 3, 2 / 3])
    assert acc.mean_f1 == pytest.approx((0.75 + 2 / 3 + 2 / 3) / 3)
    assert [row["support"] for row in acc.per_class] == [4, 3, 3]
    assert acc.n_pixels == 10
    assert "rows = reference" in acc.to_json()["confusion_axes"]


def test_mean_f1_ignores_classes_absent_from_the_reference():
    acc = compute_accuracy(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]), CLASSES)
    assert acc.per_class[2]["support"] == 0
    assert acc.mean_f1 == pytest.approx(1.0)


def test_kappa_undefined_for_a_single_class():
    acc = compute_accuracy(np.array([0, 0, 0]), np.array([0, 0, 0]), CLASSES)
    assert acc.overall_accuracy == 1.0
    assert acc.kappa is None
