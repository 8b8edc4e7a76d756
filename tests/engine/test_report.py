"""HTML reports: well-formed inline SVG charts, the sections, escaping, the CSV matrix."""

from __future__ import annotations

import copy
import csv
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from lcfusion.engine.cli import main
from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.io.outputs import partial_files
from lcfusion.engine.modelfile.storage import save_model
from lcfusion.engine.reference.classes import ClassTable
from lcfusion.engine.reports.html import (
    confusion_svg,
    curves_svg,
    nice_ticks,
    write_confusion_csv,
    write_evaluation_report,
    write_training_report,
)
from lcfusion.engine.reports.metrics import compute_accuracy

SVG = "{http://www.w3.org/2000/svg}"
NAMES = {10: "water", 20: "<b>&", 30: 'crop, "wheat"'}
CLASSES = ClassTable.build([10, 20, 30], names=NAMES)
#: reference: 4 water, 3 <b>&, 3 crop; predictions: a a a b | b b c | c c a (as test_metrics)
ACCURACY = compute_accuracy(np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2]),
                            np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0]), CLASSES)
MATRIX = [[3, 1, 0], [0, 2, 1], [1, 0, 2]]
HISTORY = [{"epoch": 1, "train_loss": 1.9, "val_loss": 1.5, "learning_rate": 0.003},
           {"epoch": 2, "train_loss": 1.1, "val_loss": None, "learning_rate": 0.003},
           {"epoch": 3, "train_loss": 0.7, "val_loss": 0.6, "learning_rate": 0.0006},
           {"epoch": 4, "train_loss": 0.5, "val_loss": 0.8, "learning_rate": 0.0006}]

METADATA = {
    "family": "fgunet", "created": "2026-01-02T03:04:05+00:00", "lcfusion_version": "0.1.0",
    "architecture": {"n_chunks": 2, "unet_widths": [32, 64, 128]},
    "inputs": {"series": {"n_dates": 6, "dates": ["2021-01-15", "2021-03-16"]}},
    "classes": CLASSES.to_json(),
    "training": {
        "settings": {"epochs": 4, "learning_rate": 0.0001, "augment": True},
        "split": {"train": 0.6, "validation": 0.2, "test": 0.2, "seed": 3, "method": "random"},
        "split_summary": [
            {"code": 10, "name": "water", "train_objects": 3, "train_pixels": 300,
             "validation_objects": 1, "validation_pixels": 90, "test_objects": 1,
             "test_pixels": 4},
            {"code": 20, "name": "<b>&", "train_objects": 2, "train_pixels": 120,
             "validation_objects": 1, "validation_pixels": 40, "test_objects": 1,
             "test_pixels": 3},
            {"code": 30, "name": 'crop, "wheat"', "train_objects": 4, "train_pixels": 410,
             "validation_objects": 2, "validation_pixels": 77, "test_objects": 1,
             "test_pixels": 3}],
        "history": HISTORY, "best_epoch": 3, "device": "cuda", "threads": 16,
        "seconds": 3725.4},
    "metrics": ACCURACY.to_json(),
    "repeats": {"runs": [{"seed": 3, "overall_accuracy": 0.7, "kappa": 0.5454, "mean_f1": 0.69},
                         {"seed": 4, "overall_accuracy": 0.8, "kappa": 0.7, "mean_f1": 0.79}],
                "mean": {"overall_accuracy": 0.75, "kappa": 0.6227, "mean_f1": 0.74},
                "std": {"overall_accuracy": 0.05, "kappa": 0.0773, "mean_f1": 0.05}},
    "attention": {"s2": {"dates": ["2021-01-15", "2021-03-16"],
                         "by_class": {"water": [0.25, 0.75]}, "pixels": {"water": 4},
                         "pixels_from": "test"}},
    # (4, 1, 1/4) ** 0.5: water doubled, crop halved.
    "class_priors": {"strength": 0.5, "log_ratio": [1.386294, 0.0, -1.386294]},
}


class TextOf(HTMLParser):
    """The text of an HTML page, entities decoded, whitespace collapsed."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.feed(page)

    def handle_data(self, data):
        self.parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.parts).split())


def svgs_of(page: str) -> list[ET.Element]:
    """Every inline SVG of a page, parsed as XML (fails on a malformed one)."""
    return [ET.fromstring(match) for match in re.findall(r"<svg .*?</svg>", page, re.S)]


def texts(svg: ET.Element) -> list[str]:
    return ["".join(node.itertext()) for node in svg.iter(f"{SVG}text")]


# Charts ---------------------------------------------------------------------------------------

def test_confusion_svg_is_xml_with_counts_axes_and_escaped_names():
    markup = confusion_svg(MATRIX, [c.name for c in CLASSES])
    svg = ET.fromstring(markup)
    labels = texts(svg)
    assert "prediction (columns)" in labels and "reference (rows)" in labels
    assert any("rows: reference, columns: prediction" in t for t in labels)
    assert "<b>&" in labels and 'crop, "wheat"' in labels  # decoded by the XML parser
    assert "<b>&" not in markup  # ... because the markup escapes it
    # 9 cells (+ 3 diagonal outlines), each count written once, row by row.
    counts = [t for t in labels if t.isdigit()]
    assert counts == [str(v) for row in MATRIX for v in row]
    cells = [r for r in svg.iter(f"{SVG}rect") if r.get("fill") != "none"]
    assert len(cells) == 9
    # Colour by share of the row: the 3 of row 0 (3/4) is darker than the 2 of row 1 (2/3)
    # and a zero cell is the lightest.
    fills = [r.get("fill") for r in cells]
    assert fills[0] < fills[4] < fills[2] == "#f7fbff"


def test_confusion_svg_with_extra_columns_labels_rows_by_the_first_names():
    svg = ET.fromstring(confusion_svg([[2, 0, 1], [0, 3, 0]], ["a", "b", "code 9"]))
    labels = texts(svg)
    assert labels.count("code 9") == 1  # a column only
    assert labels.count("a") == 2 and labels.count("b") == 2
    assert ET.fromstring(confusion_svg([], [])) is not None


def test_curves_svg_has_both_lines_ticks_legend_and_best_epoch():
    svg = ET.fromstring(curves_svg(HISTORY, best_epoch=3))
    lines = list(svg.iter(f"{SVG}polyline"))
    assert len(lines) == 2
    # The validation line skips the epoch without a validation loss.
    assert [len(line.get("points").split()) for line in lines] == [4, 3]
    labels = texts(svg)
    assert {"training loss", "validation loss", "best epoch (3)", "epoch", "loss"} <= set(labels)
    assert {"1", "2", "3", "4"} <= set(labels)  # epoch ticks
    assert {"0", "0.5", "1.0", "1.5", "2.0"} <= set(labels)  # loss ticks
    dashed = [line for line in svg.iter(f"{SVG}line") if line.get("stroke-dasharray")]
    assert len(dashed) == 2  # the best-epoch marker and its legend entry


def test_curves_svg_without_validation_or_history():
    svg = ET.fromstring(curves_svg([{"epoch": 1, "train_loss": 0.5, "val_loss": None,
                                     "learning_rate": 0.001}]))
    assert len(list(svg.iter(f"{SVG}polyline"))) == 1
    assert "validation loss" not in texts(svg)
    assert "no loss was recorded" in texts(ET.fromstring(curves_svg([])))


@pytest.mark.parametrize(("low", "high"), [(0, 1.79), (0.3, 0.31), (0, 1234), (5, 5)])
def test_nice_ticks_cover_the_range_with_round_steps(low, high):
    ticks = nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high and 2 <= len(ticks) <= 8
    steps = np.diff(ticks)
    assert np.allclose(steps, steps[0])
    mantissa = steps[0] / 10 ** np.floor(np.log10(steps[0]))
    assert any(np.isclose(mantissa, m) for m in (1, 2, 2.5, 5))


# Training report ------------------------------------------------------------------------------

def test_training_report_has_every_section(tmp_path):
    path = write_training_report(tmp_path / "report.html", METADATA)
    page = path.read_text(encoding="utf-8")
    text = TextOf(page).text
    for heading in ("Training report: FG-UNET model", "Classes", "Inputs",
                    "Accuracy on the test polygons",
                    "Confusion matrix (rows = reference, columns = prediction)", "Per class",
                    "Learning curves", "Reference split", "Repeated splits",
                    "Temporal attention", "Class priors", "Settings", "Time and hardware"):
        assert heading in text, heading
    assert "created 2026-01-02T03:04:05+00:00" in text
    assert "0.7000 Overall accuracy" in text
    assert f"{ACCURACY.kappa:.4f} Cohen's Kappa" in text
    # Per-class rows: code, name, precision, recall, F1, support (escaped names).
    assert "10 water 0.7500 0.7500 0.7500 4" in text
    assert "20 <b>& 0.6667 0.6667 0.6667 3" in text
    assert "&lt;b&gt;&amp;" in page and "<b>&" not in page
    # Learning curves and the best epoch.
    assert "Best epoch: 3" in text and "lowest validation loss" in text
    # Split: rows and totals (polygons / pixels per part).
    assert "30 crop, \"wheat\" 4 410 2 77 1 3" in text
    assert "total 9 830 4 207 3 10" in text
    assert "train 0.60, validation 0.20, test 0.20 (method random, seed 3)" in text
    # Repeats: one row per run and the mean ± std.
    assert "1 3 0.7000 0.5454 0.6900" in text and "2 4 0.8000 0.7000 0.7900" in text
    assert "mean ± std 0.7500 ± 0.0500 0.6227 ± 0.0773 0.7400 ± 0.0500" in text
    # Settings (floats in their shortest form), architecture, time and hardware.
    assert "learning_rate 0.0001" in text and "augment yes" in text
    assert "unet_widths 32, 64, 128" in text
    assert "training time 1 h 02 min 05 s" in text
    assert "device cuda" in text and "CPU threads 16" in text
    assert "water 0.250 0.750" in text
    # Class priors: the strength and each class's factor.
    assert "Strength 0.5:" in text
    assert "10 water × 2 20 <b>& × 1 30 crop, \"wheat\" × 0.5" in text
    # Both charts are well-formed SVG: the confusion matrix shows the test counts.
    confusion, curves = svgs_of(page)
    assert [t for t in texts(confusion) if t.isdigit()] == [str(v) for r in MATRIX for v in r]
    assert len(list(curves.iter(f"{SVG}polyline"))) == 2
    assert "<script" not in page and "src=" not in page and "href=" not in page
    assert partial_files(path) == []


def test_missing_parts_are_skipped_with_a_sentence(tmp_path):
    metadata = copy.deepcopy(METADATA)
    metadata.update(family="randomforest", metrics=None)
    for key in ("repeats", "attention", "class_priors"):
        metadata.pop(key)
    metadata["training"].update(history=[], best_epoch=None)
    page = write_training_report(tmp_path / "rf.html", metadata).read_text(encoding="utf-8")
    text = TextOf(page).text
    assert "Training report: Random Forest model" in text
    assert "No test-set metrics: the model was trained without test polygons." in text
    assert "No learning curve" in text
    assert "Repeated splits" not in text and "Temporal attention" not in text
    assert svgs_of(page) == []
    assert "Class priors" not in text


def test_priors_of_strength_zero_are_reported_as_none(tmp_path):
    metadata = {**METADATA, "class_priors": {"strength": 0.0, "log_ratio": [1.0, 0.0, -1.0]}}
    page = write_training_report(tmp_path / "report.html", metadata).read_text(encoding="utf-8")
    text = TextOf(page).text
    assert ("Class priors None: the classes are ranked by the model's probabilities as they "
            "are; strength 0. The strength is CLASS_PRIORS's") in text
    assert "factor" not in text
    metadata["class_priors"] = {"strength": 1.0, "log_ratio": [0.0, 0.0, 0.0]}
    page = write_training_report(tmp_path / "report.html", metadata).read_text(encoding="utf-8")
    assert ("as they are; the training polygons' class shares are those the model was fitted "
            "to.") in TextOf(page).text


def test_an_ensembles_priors_are_the_mean_of_its_members_shifts(tmp_path):
    metadata = {**METADATA, "ensemble": {"members": 3},
                "class_priors": {"strength": 1.0, "log_ratio": [0.693147, 0.0, 0.0]}}
    page = write_training_report(tmp_path / "report.html", metadata).read_text(encoding="utf-8")
    text = TextOf(page).text
    assert "Class priors The mean of the 3 members' shifts" in text
    assert "10 water × 2 20 <b>& × 1" in text
    assert "Strength 1" not in text


def test_a_report_in_a_missing_folder_names_the_parameter(tmp_path):
    with pytest.raises(LcfusionError, match="does not exist") as error:
        write_training_report(tmp_path / "missing" / "r.html", METADATA,
                              parameter="OUTPUT_REPORT")
    assert error.value.parameter == "OUTPUT_REPORT"


def test_model_report_command_writes_the_report_of_a_model_file(tmp_path):
    model = save_model(tmp_path / "model.lcfusion", METADATA, {"weight": torch.zeros(2)})
    report = tmp_path / "report.html"
    assert main(["model-report", str(model), str(report)]) == 0
    assert "Training report: FG-UNET model" in TextOf(report.read_text(encoding="utf-8")).text
    assert main(["model-report", str(tmp_path / "none.lcfusion"), str(report)]) == 2


# Evaluation report and CSV --------------------------------------------------------------------

def test_evaluation_report_has_metrics_matrix_table_and_details(tmp_path):
    details = {"class map": "map <1>.tif", "pixels compared": "10",
               "pixels skipped (nodata in the class map)": "2"}
    page = write_evaluation_report(tmp_path / "e.html", ACCURACY, "Evaluation of <map>",
                                   details).read_text(encoding="utf-8")
    text = TextOf(page).text
    assert "<h1>Evaluation of &lt;map&gt;</h1>" in page
    assert "0.7000 Overall accuracy" in text and "10 Pixels compared" in text
    assert "30 crop, \"wheat\" 0.6667 0.6667 0.6667 3" in text
    assert "class map map <1>.tif" in text and "pixels skipped (nodata in the class map) 2" in text
    (confusion,) = svgs_of(page)
    assert [t for t in texts(confusion) if t.isdigit()] == [str(v) for r in MATRIX for v in r]


def test_confusion_csv_parses_back_to_the_matrix(tmp_path):
    path = write_confusion_csv(tmp_path / "m.csv", ACCURACY)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["rows = reference, columns = prediction", *NAMES.values()]
    assert [row[0] for row in rows[1:]] == list(NAMES.values())
    assert [[int(v) for v in row[1:]] for row in rows[1:]] == MATRIX


def test_confusion_csv_leaves_out_rows_of_codes_that_are_not_reference_classes(tmp_path):
    accuracy = copy.deepcopy(ACCURACY)
    accuracy.per_class[2]["in_reference"] = False
    with open(write_confusion_csv(tmp_path / "m.csv", accuracy), newline="",
              encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert len(rows[0]) == 4 and [row[0] for row in rows[1:]] == ["water", "<b>&"]


def test_training_report_names_the_last_epoch_when_it_was_kept(tmp_path):
    training = METADATA["training"]
    metadata = {**METADATA, "training": {**training, "best_epoch": 4,
                                         "settings": {**training["settings"], "keep": "last"}}}
    page = write_training_report(tmp_path / "report.html", metadata).read_text(encoding="utf-8")
    text = TextOf(page).text
    assert "Kept epoch: 4 (the model file keeps the weights of the last epoch)" in text
    assert "Best epoch" not in text
    assert "last epoch (4)" in page and "best epoch" not in page


def test_training_report_gives_both_validation_accuracies_when_the_kept_epoch_was_chosen(
        tmp_path):
    training = METADATA["training"]
    kept = {"rule": "best-or-last", "epoch": 4,
            "candidates": [{"epoch": 2, "validation_oa": 0.6125},
                           {"epoch": 4, "validation_oa": 0.75}]}
    metadata = {**METADATA, "training": {
        **training, "best_epoch": 4, "kept": kept,
        "settings": {**training["settings"], "keep": "best-or-last"}}}
    page = write_training_report(tmp_path / "report.html", metadata).read_text(encoding="utf-8")
    text = TextOf(page).text
    assert ("Kept epoch: 4. Of the weights of the epoch with the lowest validation loss (2) "
            "and of the last epoch (4), the model file keeps those right on more of the "
            "validation polygons' pixels: OA 0.613 and 0.750.") in text
    assert "kept epoch (4)" in page and "best epoch" not in page
