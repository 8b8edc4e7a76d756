"""Self-contained HTML reports: a model's training report and a class map's evaluation.

Charts are inline SVG drawn here (no script, no image file, no plotting library); every text
that comes from data is escaped. Confusion matrices: rows = reference, columns = prediction.
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..io.outputs import atomic_output
from ..wording import FAMILY_NAMES

if TYPE_CHECKING:
    from .metrics import Accuracy

AXES = "rows = reference, columns = prediction"
PARTS = ("train", "validation", "test")
TRAIN_COLOR, VALIDATION_COLOR, BEST_COLOR = "#1f78b4", "#e6550d", "#33a02c"
#: Confusion cells shade from LIGHT (0 % of the row) to DARK (100 %).
LIGHT, DARK = (247, 251, 255), (8, 48, 107)
FONT = "font-family=\"sans-serif\""

STYLE = """
body { font-family: sans-serif; color: #222; max-width: 1000px; margin: 2em auto;
       padding: 0 1em; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .6em 0 1em; }
th, td { border: 1px solid #ccc; padding: .2em .6em; text-align: right; }
th { background: #f2f2f2; text-align: left; }
td.text { text-align: left; }
tr.total td { font-weight: bold; background: #fafafa; }
.headline { display: flex; flex-wrap: wrap; gap: 1em; margin: 1em 0; }
.metric { border: 1px solid #ccc; border-radius: 6px; padding: .5em 1em; min-width: 8em; }
.metric .value { font-size: 1.6em; font-weight: bold; }
.metric .label { color: #555; }
.swatch { display: inline-block; width: .9em; height: .9em; border: 1px solid #888;
          vertical-align: middle; margin-right: .4em; }
.note { color: #555; font-style: italic; }
svg { max-width: 100%; height: auto; }
"""


class Html(str):
    """Text that is already HTML (not escaped again by `cell`)."""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def number(value: Any, digits: int = 4) -> str:
    """A value for a table: 4 decimals for floats, thousands separators for integers."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def cell(value: Any) -> str:
    """A table cell: numbers right-aligned, text left-aligned, `Html` as it is."""
    if isinstance(value, Html):
        return f'<td class="text">{value}</td>'
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    kind = "" if numeric else ' class="text"'
    return f"<td{kind}>{esc(number(value))}</td>"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]],
          total: Sequence[Any] | None = None) -> Html:
    """An HTML table (no header row without `headers`); `total` is an emphasised last row."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    head = f"<thead><tr>{head}</tr></thead>" if head else ""
    body = ["<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows]
    if total is not None:
        body.append('<tr class="total">' + "".join(cell(v) for v in total) + "</tr>")
    return Html(f"<table>{head}<tbody>{''.join(body)}</tbody></table>")


def plain(value: Any) -> str:
    """A setting or input value as text: shortest float form, lists joined, nested entries
    as ``key: value``."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {plain(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        shown = ", ".join(plain(item) for item in value[:24])
        return shown + (f", … ({len(value)} values)" if len(value) > 24 else "")
    return "n/a" if value is None else str(value)


def key_values(items: dict[str, Any]) -> Html:
    """A two-column table of names and values (as text)."""
    return table((), ((Html(f"<b>{esc(k)}</b>"), plain(v)) for k, v in items.items()))


def paragraph(text: str, note: bool = False) -> Html:
    return Html(f'<p class="note">{esc(text)}</p>' if note else f"<p>{esc(text)}</p>")


def section(title: str, *parts: str) -> Html:
    return Html(f"<section><h2>{esc(title)}</h2>{''.join(parts)}</section>")


def swatch(color: str) -> Html:
    return Html(f'<span class="swatch" style="background:{esc(color)}"></span>')


# Charts -------------------------------------------------------------------------------------

def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values from at most `low` to at least `high`, about `count` intervals."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        spread = abs(low) * 0.1 or 1.0
        low, high = low - spread, high + spread
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * 0.999)
    first = math.floor(low / step + 1e-9) * step
    ticks = [first]
    while ticks[-1] < high - step * 1e-9:
        ticks.append(first + len(ticks) * step)
    return ticks


def tick_label(value: float, step: float) -> str:
    """`value` with as many decimals as the tick step needs."""
    decimals = 0
    while decimals < 10 and abs(round(step, decimals) - step) > step * 1e-6:
        decimals += 1
    text = f"{value:.{decimals}f}"
    return "0" if text.strip("-0.") == "" else text


def svg_text(x: float, y: float, text: str, size: int = 11, anchor: str = "start",
             extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f"{FONT}{' ' + extra if extra else ''}>{esc(text)}</text>")


def rotation(angle: float, x: float, y: float) -> str:
    return f'transform="rotate({angle:g} {x:.1f} {y:.1f})"'


def svg_document(width: float, height: float, body: Iterable[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{esc(label)}">'
            f"<title>{esc(label)}</title>{''.join(body)}</svg>")


def shade(share: float) -> str:
    """The colour of a confusion cell holding `share` (0..1) of its row."""
    share = min(max(share, 0.0), 1.0)
    rgb = (round(a + (b - a) * share) for a, b in zip(LIGHT, DARK, strict=True))
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def short(name: str, limit: int = 32) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


@dataclass(frozen=True)
class MatrixLayout:
    """Where the labels and cells of a confusion picture go."""

    row_labels: list[str]
    column_labels: list[str]

    @property
    def cell(self) -> int:
        side = max(len(self.row_labels), len(self.column_labels))
        return 48 if side <= 12 else max(26, 576 // side)

    @property
    def font(self) -> int:
        return 11 if self.cell >= 40 else 9

    def label_space(self, labels: list[str]) -> float:
        return 10 + 0.58 * self.font * max(len(short(label)) for label in labels)

    @property
    def left(self) -> float:
        return 30 + self.label_space(self.row_labels)

    @property
    def top(self) -> float:
        return 30 + 0.72 * self.label_space(self.column_labels)

    @property
    def width(self) -> float:
        columns = len(self.column_labels) * self.cell
        return self.left + max(columns + 0.72 * self.label_space(self.column_labels), 470)

    @property
    def height(self) -> float:
        return self.top + len(self.row_labels) * self.cell + 40


def matrix_titles(layout: MatrixLayout) -> list[str]:
    """Axis titles, class labels and the caption."""
    cell, font = layout.cell, layout.font
    middle = layout.top + len(layout.row_labels) * cell / 2
    parts = [svg_text(layout.left + len(layout.column_labels) * cell / 2, 16,
                      "prediction (columns)", 12, "middle", 'font-weight="bold"'),
             svg_text(14, middle, "reference (rows)", 12, "middle",
                      'font-weight="bold" ' + rotation(-90, 14, middle))]
    for j, name in enumerate(layout.column_labels):
        x, y = layout.left + (j + 0.5) * cell, layout.top - 6
        parts.append(svg_text(x, y, short(name), font, "start", rotation(-45, x, y)))
    for i, name in enumerate(layout.row_labels):
        y = layout.top + (i + 0.5) * cell + 4
        parts.append(svg_text(layout.left - 6, y, short(name), font, "end"))
    parts.append(svg_text(layout.left, layout.height - 18,
                          f"{AXES.replace(' =', ':')}; colour: share of the row "
                          "(the reference class)", 11, "start", 'fill="#555"'))
    return parts


def matrix_cells(layout: MatrixLayout, matrix: list[list[int]]) -> list[str]:
    """One shaded square per cell with its count and a tooltip; the diagonal outlined."""
    cell, parts = layout.cell, []
    for i, row in enumerate(matrix):
        total = sum(row)
        for j, count in enumerate(row):
            share = count / total if total else 0.0
            x, y = layout.left + j * cell, layout.top + i * cell
            tip = (f"reference {layout.row_labels[i]}, predicted {layout.column_labels[j]}: "
                   f"{count:,} pixels ({100 * share:.1f} % of the row)")
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell}" height="{cell}" '
                         f'fill="{shade(share)}" stroke="#fff"><title>{esc(tip)}</title></rect>')
            parts.append(svg_text(x + cell / 2, y + cell / 2 + 4, f"{count:,}", layout.font,
                                  "middle", f'fill="{"#fff" if share > 0.55 else "#222"}"'))
    parts.extend(f'<rect x="{layout.left + k * cell:.1f}" y="{layout.top + k * cell:.1f}" '
                 f'width="{cell}" height="{cell}" fill="none" stroke="#222" '
                 'stroke-width="1.5"/>' for k in range(min(len(matrix), len(matrix[0]))))
    return parts


def confusion_svg(matrix: list[list[int]], names: list[str]) -> str:
    """A heat map of a confusion matrix; rows = reference, columns = prediction.

    Rows take the first ``len(matrix)`` names, columns the first ``len(matrix[0])``; cells
    show counts, coloured by their share of the row so that small classes stay readable.
    """
    label = f"Confusion matrix ({AXES})"
    n_rows, n_cols = len(matrix), len(matrix[0]) if matrix else 0
    if not n_rows or not n_cols:
        return svg_document(320, 40, [svg_text(10, 24, "no pixels to show")], label)
    labels = [str(name) for name in names]
    labels += [f"class {i + 1}" for i in range(len(labels), max(n_rows, n_cols))]
    layout = MatrixLayout(labels[:n_rows], labels[:n_cols])
    return svg_document(layout.width, layout.height,
                        matrix_titles(layout) + matrix_cells(layout, matrix), label)


def epoch_ticks(first: float, last: float) -> list[int]:
    """Whole-number ticks from at most `first` to at least `last` (at least two)."""
    rough = nice_ticks(first, max(last, first + 1), 8)
    step = max(1, math.ceil(rough[1] - rough[0] - 1e-9))
    start = math.floor(first / step) * step
    ticks = [start]
    while ticks[-1] < last or len(ticks) < 2:
        ticks.append(ticks[-1] + step)
    return ticks


def loss_points(history: list[dict], key: str) -> list[tuple[float, float]]:
    """(epoch, loss) of the entries with a finite `key`."""
    points = []
    for entry in history:
        value, epoch = entry.get(key), entry.get("epoch")
        if value is not None and epoch is not None and math.isfinite(float(value)):
            points.append((float(epoch), float(value)))
    return points


@dataclass(frozen=True)
class Plot:
    """A plot area: epochs on x, losses on y, mapped to SVG coordinates."""

    x_ticks: list[int]
    y_ticks: list[float]
    width: int = 640
    height: int = 320
    left: int = 64
    right: int = 16
    top: int = 34
    bottom: int = 48

    def x(self, epoch: float) -> float:
        low, high = self.x_ticks[0], self.x_ticks[-1]
        return self.left + (epoch - low) / (high - low) * (self.width - self.left - self.right)

    def y(self, value: float) -> float:
        low, high = self.y_ticks[0], self.y_ticks[-1]
        inner = self.height - self.top - self.bottom
        return self.height - self.bottom - (value - low) / (high - low) * inner


def plot_axes(plot: Plot) -> list[str]:
    """Frame, grid lines, ticks and axis titles."""
    right, base = plot.width - plot.right, plot.height - plot.bottom
    parts = [f'<rect x="{plot.left}" y="{plot.top}" width="{right - plot.left}" '
             f'height="{base - plot.top}" fill="#fff" stroke="#999"/>']
    step = plot.y_ticks[1] - plot.y_ticks[0]
    for tick in plot.y_ticks:
        y = plot.y(tick)
        parts.append(f'<line x1="{plot.left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" '
                     'stroke="#e5e5e5"/>')
        parts.append(svg_text(plot.left - 6, y + 4, tick_label(tick, step), 11, "end"))
    for tick in plot.x_ticks:
        x = plot.x(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 5}" '
                     'stroke="#999"/>')
        parts.append(svg_text(x, base + 18, str(tick), 11, "middle"))
    middle = (plot.top + base) / 2
    parts.append(svg_text((plot.left + right) / 2, plot.height - 8, "epoch", 12, "middle"))
    parts.append(svg_text(16, middle, "loss", 12, "middle", rotation(-90, 16, middle)))
    return parts


def plot_line(plot: Plot, color: str, points: list[tuple[float, float]]) -> list[str]:
    """A loss curve; its points marked (with a tooltip) when there are not too many."""
    coordinates = " ".join(f"{plot.x(e):.1f},{plot.y(v):.1f}" for e, v in points)
    parts = [f'<polyline points="{coordinates}" fill="none" stroke="{color}" '
             'stroke-width="2"/>']
    if len(points) <= 60:
        parts.extend(f'<circle cx="{plot.x(e):.1f}" cy="{plot.y(v):.1f}" r="2.5" '
                     f'fill="{color}"><title>{esc(f"epoch {e:.0f}: {v:.4f}")}</title></circle>'
                     for e, v in points)
    return parts


def plot_legend(plot: Plot, entries: list[tuple[str, str, str]]) -> list[str]:
    """(text, colour, extra line attributes) in a row above the plot."""
    parts, x, y = [], plot.left + 8, plot.top - 14
    for text, color, extra in entries:
        parts.append(f'<line x1="{x}" y1="{y}" x2="{x + 22}" y2="{y}" stroke="{color}" '
                     f'stroke-width="2"{extra}/>')
        parts.append(svg_text(x + 27, y + 4, text))
        x += 40 + 6.2 * len(text)
    return parts


def curves_svg(history: list[dict], best_epoch: int | None = None,
               kept: str = "best") -> str:
    """Training and validation loss per epoch, with axes, ticks, a legend and the epoch whose
    weights were kept (`kept` names it: "best", "last", or "kept" where they were chosen)."""
    label = "Learning curves: training and validation loss per epoch"
    series = [(name, color, loss_points(history, key)) for name, color, key in (
        ("training loss", TRAIN_COLOR, "train_loss"),
        ("validation loss", VALIDATION_COLOR, "val_loss"))]
    series = [entry for entry in series if entry[2]]
    if not series:
        return svg_document(320, 40, [svg_text(10, 24, "no loss was recorded")], label)
    values = [v for _, _, points in series for _, v in points]
    epochs = [e for _, _, points in series for e, _ in points]
    plot = Plot(epoch_ticks(min(epochs), max(epochs)),
                nice_ticks(min(0.0, min(values)), max(values)))
    parts = plot_axes(plot)
    legend = [(name, color, "") for name, color, _ in series]
    if best_epoch is not None and min(epochs) <= best_epoch <= max(epochs):
        x, dash = plot.x(best_epoch), ' stroke-dasharray="5,4"'
        parts.append(f'<line x1="{x:.1f}" y1="{plot.top}" x2="{x:.1f}" '
                     f'y2="{plot.height - plot.bottom}" stroke="{BEST_COLOR}" '
                     f'stroke-width="1.5"{dash}/>')
        legend.append((f"{kept} epoch ({best_epoch})", BEST_COLOR, dash))
    for _, color, points in series:
        parts += plot_line(plot, color, points)
    return svg_document(plot.width, plot.height, parts + plot_legend(plot, legend), label)


# Report parts -------------------------------------------------------------------------------

def reference_rows(metrics: dict) -> int:
    """How many confusion rows are reference classes: map codes that are not reference
    classes come last, marked ``"in_reference": False`` in `per_class`."""
    return sum(1 for row in metrics.get("per_class", []) if row.get("in_reference", True))


def class_label(row: dict) -> str:
    return str(row.get("name", row.get("code", "")))


def metric_boxes(boxes: Iterable[tuple[str, Any]]) -> Html:
    """A row of headline numbers, each (label, value)."""
    return Html('<div class="headline">' + "".join(
        f'<div class="metric"><div class="value">{esc(number(value))}</div>'
        f'<div class="label">{esc(name)}</div></div>' for name, value in boxes) + "</div>")


def headline_metrics(metrics: dict, pixels: str) -> Html:
    return metric_boxes([("Overall accuracy", metrics.get("overall_accuracy")),
                         ("Cohen's Kappa", metrics.get("kappa")),
                         ("Mean F1", metrics.get("mean_f1")), (pixels, metrics.get("n_pixels"))])


def per_class_table(metrics: dict) -> Html:
    rows = [(str(row.get("code")), class_label(row), row.get("precision"), row.get("recall"),
             row.get("f1"), row.get("support")) for row in metrics.get("per_class", [])]
    return table(("code", "class", "precision", "recall", "F1", "support (pixels)"), rows)


def accuracy_parts(metrics: dict, pixels: str) -> list[str]:
    """Headline numbers (`pixels` names the pixel count), the confusion picture and the
    per-class table."""
    names = [class_label(row) for row in metrics.get("per_class", [])]
    matrix = metrics.get("confusion", [])[: reference_rows(metrics)]
    return [headline_metrics(metrics, pixels),
            Html(f"<h3>Confusion matrix ({esc(AXES)})</h3>"),
            Html(f"<figure>{confusion_svg(matrix, names)}</figure>"),
            Html("<h3>Per class</h3>"),
            paragraph("Mean F1 averages the F1 of the classes present in the reference."),
            per_class_table(metrics)]


def classes_table(classes: list[dict]) -> Html:
    return table(("code", "class", "colour"),
                 [(str(c.get("code")), c.get("name"),
                   Html(swatch(c.get("color", "#ffffff")) + esc(c.get("color", ""))))
                  for c in classes])


def headline_section(metadata: dict) -> list[str]:
    family = str(metadata.get("family", "?"))
    classes = metadata.get("classes", [])
    facts = {"family": FAMILY_NAMES.get(family, family),
             "created": metadata.get("created", "unknown"),
             "lcfusion version": metadata.get("lcfusion_version", "unknown"),
             "classes": len(classes)}
    inputs = dict(metadata.get("inputs") or {})
    parts = [Html(f"<h1>Training report: {esc(FAMILY_NAMES.get(family, family))} model</h1>"),
             key_values(facts), Html("<h3>Classes</h3>"), classes_table(classes)]
    if inputs:
        parts += [Html("<h3>Inputs</h3>"), key_values(inputs)]
    return parts


def ensemble_accuracy_note(members: int) -> str:
    """Why an ensemble's accuracy is the mean of its members' (one sentence)."""
    return (f"no split's test polygons can score an ensemble (each of its {members} members but "
            "one trained on them), so its accuracy is the mean ± standard deviation of the "
            "members' accuracies, each on its own split's test polygons")


def metrics_section(metrics: dict | None, ensemble: dict | None = None) -> Html:
    """The test accuracy; for an ensemble, the mean of its members' (see
    `ensemble_accuracy_note`)."""
    if ensemble and metrics:
        note = ensemble_accuracy_note(int(ensemble.get("members", 0)))
        return section("Accuracy on the test polygons (mean of the ensemble's members)",
                       paragraph(note[0].upper() + note[1:] + ".", note=True),
                       headline_metrics(metrics, "Test pixels"))
    if not metrics:
        return section("Accuracy on the test polygons", paragraph(
            "No test-set metrics: the model was trained without test polygons.", note=True))
    return section("Accuracy on the test polygons", *accuracy_parts(metrics, "Test pixels"))


def curves_section(training: dict) -> Html:
    history = training.get("history") or []
    if not history:
        return section("Learning curves", paragraph(
            "No learning curve: this model records no training history (a Random Forest "
            "has no epochs).", note=True))
    best = training.get("best_epoch")
    rows = [(entry.get("epoch"), entry.get("train_loss"), entry.get("val_loss"),
             entry.get("learning_rate")) for entry in history]
    monitored = ("validation" if any(entry.get("val_loss") is not None for entry in history)
                 else "training")
    settings = training.get("settings") or {}
    criterion = (f"highest {monitored} OA"
                 if settings.get("monitor") == "accuracy" and monitored == "validation"
                 else f"lowest {monitored} loss")
    kept = settings.get("keep", "best")
    choice = training.get("kept")
    if kept == "last":
        best_text = f"Kept epoch: {best} (the model file keeps the weights of the last epoch)."
    elif choice:
        (first, first_oa), (last, last_oa) = ((c["epoch"], c["validation_oa"])
                                              for c in choice["candidates"])
        best_text = (f"Kept epoch: {best}. Of the weights of the epoch with the {criterion} "
                     f"({first}) and of the last epoch ({last}), the model file keeps those "
                     "right on more of the validation polygons' pixels: OA "
                     f"{first_oa:.3f} and {last_oa:.3f}.")
    elif best is not None:
        best_text = (f"Best epoch: {best} (the model file keeps the weights of the epoch with "
                     f"the {criterion}).")
    else:
        best_text = "No best epoch was recorded."
    history_table = table(("epoch", "training loss", "validation loss", "learning rate"),
                          [(e, t, v, Html(esc("n/a" if lr is None else f"{lr:.2e}")))
                           for e, t, v, lr in rows])
    curves = curves_svg(history, best_epoch=best, kept="kept" if choice else kept)
    return section("Learning curves", Html(f"<figure>{curves}</figure>"), paragraph(best_text),
                   Html(f"<details><summary>Losses per epoch</summary>{history_table}"
                        "</details>"))


def split_section(training: dict) -> Html:
    config = training.get("split") or {}
    summary = training.get("split_summary") or []
    if not summary:
        return section("Reference split", paragraph("No split was recorded.", note=True))
    text = ("Whole polygons go to one part, per class: "
            + ", ".join(f"{part} {number(config.get(part), 2)}" for part in PARTS)
            + f" (method {config.get('method', '?')}, seed {config.get('seed', '?')}).")
    columns = [f"{part}_{kind}" for part in PARTS for kind in ("objects", "pixels")]
    rows = [(str(row.get("code")), row.get("name"), *(row.get(c, 0) for c in columns))
            for row in summary]
    total = ("", "total", *(sum(int(row.get(c, 0)) for row in summary) for c in columns))
    headers = ("code", "class", *(f"{part} {kind}" for part in PARTS
                                  for kind in ("polygons", "pixels")))
    return section("Reference split", paragraph(text), table(headers, rows, total))


#: How the strength of a single model's priors was set (see `jobsteps.choose_class_priors`).
PRIORS_CHOICE = ("The strength is CLASS_PRIORS's: by default the one of 0, 0.25, 0.5, 0.75 and 1 "
                 "that gets the most validation pixels right (0 without validation polygons, 1 "
                 "when they were trained on).")


def priors_section(priors: dict, classes: list[dict], ensemble: dict | None = None) -> Html:
    """The class priors the model applies: the factor each class's probability is multiplied
    by (then all are scaled to sum to 1) before the classes are ranked."""
    strength = float(priors.get("strength", 0))
    factors = [math.exp(strength * float(v)) for v in priors.get("log_ratio") or []]
    if all(factor == 1 for factor in factors):
        why = (f"strength {strength:g}. {PRIORS_CHOICE}" if strength == 0 else
               "the training polygons' class shares are those the model was fitted to.")
        return section("Class priors", paragraph(
            "None: the classes are ranked by the model's probabilities as they are; "
            + why, note=True))
    if ensemble:
        text = (f"The mean of the {int(ensemble.get('members', 0))} members' shifts: each "
                "class's probability is multiplied by the factor below, then the classes are "
                "ranked. A factor above 1 favours the class.")
    else:
        text = (f"Strength {strength:g}: each class's probability is multiplied by (its share "
                "of the training polygons' pixels / its share of what the model was fitted to) "
                f"to the power {strength:g}, then the classes are ranked. A factor above 1 "
                f"favours the class. {PRIORS_CHOICE}")
    rows = [(str(c.get("code")), c.get("name"), Html(f"&times; {factor:.3g}"))
            for c, factor in zip(classes, factors, strict=False)]
    return section("Class priors", paragraph(text), table(("code", "class", "factor"), rows))


def repeats_section(repeats: dict, ensemble: bool = False) -> Html:
    keys = ("overall_accuracy", "kappa", "mean_f1")
    runs = repeats.get("runs") or []
    rows = [(index, run.get("seed"), *(run.get(k) for k in keys))
            for index, run in enumerate(runs, start=1)]
    mean, std = repeats.get("mean") or {}, repeats.get("std") or {}
    total = ("mean ± std", "", *(Html(esc(f"{number(mean.get(k))} ± {number(std.get(k))}"))
                                 for k in keys))
    kept = f" (seed {runs[0].get('seed')})" if runs else ""
    held = ("This file holds the models of all the runs, an ensemble." if ensemble else
            "The accuracy section above is that of the model kept in this file, trained on "
            f"the first split{kept}.")
    return section("Repeated splits", paragraph(
        f"{len(runs)} runs, each on a split drawn with its own seed; the spread shows how much "
        f"the accuracy depends on which polygons are held out. {held}"),
        table(("run", "seed", "overall accuracy", "Kappa", "mean F1"), rows, total))


def attention_section(attention: dict) -> Html:
    parts = []
    for source, entry in attention.items():
        dates = entry.get("dates", [])
        rows = [(name, *values) for name, values in entry.get("by_class", {}).items()]
        parts += [Html(f"<h3>{esc(source)}</h3>"),
                  paragraph(f"Mean attention per date over the {entry.get('pixels_from', '')} "
                            "pixels of each class."),
                  table(("class", *dates), [(n, *(Html(f"{v:.3f}") for v in values))
                                            for n, *values in rows])]
    return section("Temporal attention", *parts)


def settings_section(metadata: dict) -> Html:
    training = metadata.get("training") or {}
    settings = training.get("settings") or {}
    architecture = metadata.get("architecture") or {}
    parts = [Html("<h3>Training settings</h3>"),
             key_values(settings) if settings else paragraph("None recorded.", note=True)]
    if architecture:
        parts += [Html("<h3>Architecture</h3>"), key_values(architecture)]
    return section("Settings", *parts)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes, rest = divmod(float(seconds), 60)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours} h {minutes:02d} min {rest:02.0f} s"
    return f"{minutes} min {rest:04.1f} s" if minutes else f"{rest:.1f} s"


def run_section(training: dict) -> Html:
    return section("Time and hardware", key_values({
        "training time": duration(training.get("seconds")),
        "device": training.get("device", "unknown"),
        "CPU threads": training.get("threads", "unknown")}))


def page(title: str, parts: Iterable[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
            + "".join(parts) + "</body></html>\n")


def write_text(path: Path, text: str, parameter: str) -> Path:
    """Write `text` atomically (a temporary name renamed when complete)."""
    path = Path(path)
    with atomic_output(path, parameter) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path


# Public API ---------------------------------------------------------------------------------

def training_report_html(metadata: dict) -> str:
    """The training report of a model, from its file's metadata only."""
    training = metadata.get("training") or {}
    ensemble = metadata.get("ensemble")
    parts = [*headline_section(metadata), metrics_section(metadata.get("metrics"), ensemble),
             curves_section(training), split_section(training)]
    if metadata.get("class_priors"):
        parts.append(priors_section(metadata["class_priors"], metadata.get("classes", []),
                                    ensemble))
    if metadata.get("repeats"):
        parts.append(repeats_section(metadata["repeats"], bool(ensemble)))
    if metadata.get("attention"):
        parts.append(attention_section(metadata["attention"]))
    parts += [settings_section(metadata), run_section(training)]
    family = str(metadata.get("family", ""))
    return page(f"Training report: {FAMILY_NAMES.get(family, family)} model", parts)


def write_training_report(path: Path, metadata: dict, *,
                          parameter: str = "OUTPUT_HTML") -> Path:
    """Write a model's training report (HTML, self-contained) built from its metadata."""
    return write_text(path, training_report_html(metadata), parameter)


def evaluation_report_html(accuracy: Accuracy, title: str, details: dict[str, str]) -> str:
    metrics = accuracy.to_json()
    parts = [Html(f"<h1>{esc(title)}</h1>"),
             section("Accuracy", *accuracy_parts(metrics, "Pixels compared")),
             section("Details", key_values(details))]
    return page(title, parts)


def write_evaluation_report(path: Path, accuracy: Accuracy, title: str,
                            details: dict[str, str]) -> Path:
    """Write a class map's evaluation report: metrics, confusion picture, per-class table and
    `details` (what was compared)."""
    return write_text(path, evaluation_report_html(accuracy, title, details), "OUTPUT_HTML")


def confusion_csv(accuracy: Accuracy) -> str:
    names = [class_label(row) for row in accuracy.per_class]
    n_rows = reference_rows({"per_class": accuracy.per_class})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([AXES, *names])
    for name, row in zip(names[:n_rows], accuracy.confusion[:n_rows], strict=True):
        writer.writerow([name, *row])
    return buffer.getvalue()


def write_confusion_csv(path: Path, accuracy: Accuracy) -> Path:
    """The confusion matrix as CSV: a header of predicted class names (its first cell says
    "rows = reference, columns = prediction"), then one row per reference class."""
    return write_text(path, confusion_csv(accuracy), "OUTPUT_CSV")
