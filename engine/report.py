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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .outputs import atomic_output

if TYPE_CHECKING:
    from .metrics import Accuracy

AXES = "rows = reference, columns = prediction"
FAMILY_NAMES = {"fgunet": "FG-UNET", "mrfusion": "MRFusion", "twinns": "TWINNS",
                "randomforest": "Random Forest"}
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
th { background: #f2f2f2; }
th:first-child, td.text { text-align: left; }
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
    if isinstance(value, (list, tuple)):
        return ", ".join(number(item, digits) for item in value)
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
    """An HTML table; `total` is an emphasised last row."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = ["<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows]
    if total is not None:
        body.append('<tr class="total">' + "".join(cell(v) for v in total) + "</tr>")
    return Html(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def key_values(items: dict[str, Any]) -> Html:
    """A two-column table of names and values."""
    return table(("", ""), ((Html(f"<b>{esc(k)}</b>"), v) for k, v in items.items()))


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


def short(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def confusion_svg(matrix: list[list[int]], names: list[str]) -> str:
    """A heat map of a confusion matrix; rows = reference, columns = prediction.

    Rows take the first ``len(matrix)`` names, columns the first ``len(matrix[0])``; cells
    show counts, coloured by their share of the row so that small classes stay readable.
    """
    n_rows = len(matrix)
    n_cols = len(matrix[0]) if matrix else 0
    label = f"Confusion matrix ({AXES})"
    if not n_rows or not n_cols:
        return svg_document(320, 40, [svg_text(10, 24, "no pixels to show")], label)
    labels = [str(n) for n in names] + [f"class {i + 1}" for i in range(len(names),
                                                                         max(n_rows, n_cols))]
    cell_size = 48 if max(n_rows, n_cols) <= 12 else max(26, 576 // max(n_rows, n_cols))
    font = 11 if cell_size >= 40 else 9
    char = 0.58 * font
    row_space = 10 + char * max(len(short(name)) for name in labels[:n_rows])
    column_space = 10 + 0.72 * char * max(len(short(name)) for name in labels[:n_cols])
    left, top = 30 + row_space, 30 + column_space
    width = left + max(n_cols * cell_size + column_space, 470)  # room for the caption
    height = top + n_rows * cell_size + 40
    middle = top + n_rows * cell_size / 2
    body = [svg_text(left + n_cols * cell_size / 2, 16, "prediction (columns)", 12, "middle",
                     'font-weight="bold"'),
            svg_text(14, middle, "reference (rows)", 12, "middle",
                     'font-weight="bold" ' + rotation(-90, 14, middle))]
    for j in range(n_cols):
        x, y = left + (j + 0.5) * cell_size, top - 6
        body.append(svg_text(x, y, short(labels[j]), font, "start", rotation(-45, x, y)))
    for i, row in enumerate(matrix):
        y = top + i * cell_size
        body.append(svg_text(left - 6, y + cell_size / 2 + 4, short(labels[i]), font, "end"))
        total = sum(row)
        for j, count in enumerate(row):
            share = count / total if total else 0.0
            x = left + j * cell_size
            tip = (f"reference {labels[i]}, predicted {labels[j]}: {count:,} pixels "
                   f"({100 * share:.1f} % of the row)")
            body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell_size}" '
                        f'height="{cell_size}" fill="{shade(share)}" stroke="#fff">'
                        f"<title>{esc(tip)}</title></rect>")
            color = "#fff" if share > 0.55 else "#222"
            body.append(svg_text(x + cell_size / 2, y + cell_size / 2 + 4, f"{count:,}",
                                 font, "middle", f'fill="{color}"'))
    body.extend(f'<rect x="{left + k * cell_size:.1f}" y="{top + k * cell_size:.1f}" '
                f'width="{cell_size}" height="{cell_size}" fill="none" stroke="#222" '
                'stroke-width="1.5"/>' for k in range(min(n_rows, n_cols)))
    body.append(svg_text(left, top + n_rows * cell_size + 22,
                         f"{AXES.replace(' =', ':')}; colour: share of the row "
                         "(the reference class)", 11, "start", 'fill="#555"'))
    return svg_document(width, height, body, label)


def epoch_ticks(first: float, last: float) -> list[int]:
    """Whole-number ticks from at most `first` to at least `last` (at least two)."""
    rough = nice_ticks(first, max(last, first + 1), 8)
    step = max(1, math.ceil(rough[1] - rough[0] - 1e-9))
    start = math.floor(first / step) * step
    ticks = [start]
    while ticks[-1] < last or len(ticks) < 2:
        ticks.append(ticks[-1] + step)
    return ticks


def _points(history: list[dict], key: str) -> list[tuple[float, float]]:
    points = []
    for entry in history:
        value, epoch = entry.get(key), entry.get("epoch")
        if value is None or epoch is None:
            continue
        value = float(value)
        if math.isfinite(value):
            points.append((float(epoch), value))
    return points


def curves_svg(history: list[dict], best_epoch: int | None = None) -> str:
    """Training and validation loss per epoch, with axes, ticks, a legend and the best epoch."""
    label = "Learning curves: training and validation loss per epoch"
    series = [(name, color, _points(history, key)) for name, color, key in (
        ("training loss", TRAIN_COLOR, "train_loss"),
        ("validation loss", VALIDATION_COLOR, "val_loss"))]
    series = [entry for entry in series if entry[2]]
    if not series:
        return svg_document(320, 40, [svg_text(10, 24, "no loss was recorded")], label)
    width, height = 640, 320
    left, right, top, bottom = 64, 16, 34, 48
    values = [v for _, _, points in series for _, v in points]
    epochs = [e for _, _, points in series for e, _ in points]
    y_ticks = nice_ticks(min(0.0, min(values)), max(values))
    first, last = min(epochs), max(epochs)
    x_ticks = epoch_ticks(first, last)
    x_low, x_high = x_ticks[0], x_ticks[-1]

    def x_of(epoch: float) -> float:
        return left + (epoch - x_low) / (x_high - x_low) * (width - left - right)

    def y_of(value: float) -> float:
        span = y_ticks[-1] - y_ticks[0]
        return height - bottom - (value - y_ticks[0]) / span * (height - top - bottom)

    body = [f'<rect x="{left}" y="{top}" width="{width - left - right}" '
            f'height="{height - top - bottom}" fill="#fff" stroke="#999"/>']
    y_step = y_ticks[1] - y_ticks[0]
    for tick in y_ticks:
        y = y_of(tick)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
                    'stroke="#e5e5e5"/>')
        body.append(svg_text(left - 6, y + 4, tick_label(tick, y_step), 11, "end"))
    for tick in x_ticks:
        x = x_of(tick)
        body.append(f'<line x1="{x:.1f}" y1="{height - bottom}" x2="{x:.1f}" '
                    f'y2="{height - bottom + 5}" stroke="#999"/>')
        body.append(svg_text(x, height - bottom + 18, f"{tick:.0f}", 11, "middle"))
    body.append(svg_text(left + (width - left - right) / 2, height - 8, "epoch", 12, "middle"))
    middle = top + (height - top - bottom) / 2
    body.append(svg_text(16, middle, "loss", 12, "middle", rotation(-90, 16, middle)))
    legend = [(name, color, "") for name, color, _ in series]
    if best_epoch is not None and first <= best_epoch <= last:
        x = x_of(best_epoch)
        body.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" '
                    f'stroke="{BEST_COLOR}" stroke-width="1.5" stroke-dasharray="5,4"/>')
        legend.append((f"best epoch ({best_epoch})", BEST_COLOR, ' stroke-dasharray="5,4"'))
    for _, color, points in series:
        coordinates = " ".join(f"{x_of(e):.1f},{y_of(v):.1f}" for e, v in points)
        body.append(f'<polyline points="{coordinates}" fill="none" stroke="{color}" '
                    'stroke-width="2"/>')
        if len(points) <= 60:
            body.extend(f'<circle cx="{x_of(e):.1f}" cy="{y_of(v):.1f}" r="2.5" '
                        f'fill="{color}"><title>{esc(f"epoch {e:.0f}: {v:.4f}")}</title>'
                        "</circle>" for e, v in points)
    x = left + 8
    for name, color, dash in legend:
        body.append(f'<line x1="{x}" y1="{top - 14}" x2="{x + 22}" y2="{top - 14}" '
                    f'stroke="{color}" stroke-width="2"{dash}/>')
        body.append(svg_text(x + 27, top - 10, name))
        x += 40 + 6.2 * len(name)
    return svg_document(width, height, body, label)


# Report parts -------------------------------------------------------------------------------

def reference_rows(metrics: dict) -> int:
    """How many confusion rows are reference classes: map codes that are not reference
    classes come last, marked ``"in_reference": False`` in `per_class`."""
    return sum(1 for row in metrics.get("per_class", []) if row.get("in_reference", True))


def class_label(row: dict) -> str:
    return str(row.get("name", row.get("code", "")))


def headline_metrics(metrics: dict) -> Html:
    boxes = [("Overall accuracy", metrics.get("overall_accuracy")),
             ("Cohen's Kappa", metrics.get("kappa")), ("Mean F1", metrics.get("mean_f1")),
             ("Pixels compared", metrics.get("n_pixels"))]
    return Html('<div class="headline">' + "".join(
        f'<div class="metric"><div class="value">{esc(number(value))}</div>'
        f'<div class="label">{esc(name)}</div></div>' for name, value in boxes) + "</div>")


def per_class_table(metrics: dict) -> Html:
    rows = [(str(row.get("code")), class_label(row), row.get("precision"), row.get("recall"),
             row.get("f1"), row.get("support")) for row in metrics.get("per_class", [])]
    return table(("code", "class", "precision", "recall", "F1", "support (pixels)"), rows)


def accuracy_parts(metrics: dict) -> list[str]:
    """Headline numbers, the confusion picture and the per-class table."""
    names = [class_label(row) for row in metrics.get("per_class", [])]
    matrix = metrics.get("confusion", [])[: reference_rows(metrics)]
    return [headline_metrics(metrics),
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


def describe_value(value: Any) -> Any:
    """A setting or input value for a table cell (nested entries as ``key: value``)."""
    if isinstance(value, dict):
        return "; ".join(f"{k}: {number(describe_value(v))}" for k, v in value.items())
    if isinstance(value, (list, tuple)) and len(value) > 24:
        return f"{number(list(value[:24]))}, … ({len(value)} values)"
    return value


def headline_section(metadata: dict) -> list[str]:
    family = str(metadata.get("family", "?"))
    classes = metadata.get("classes", [])
    facts = {"family": FAMILY_NAMES.get(family, family),
             "created": metadata.get("created", "unknown"),
             "lcfusion version": metadata.get("lcfusion_version", "unknown"),
             "classes": len(classes)}
    inputs = {name: describe_value(entry) for name, entry in (metadata.get("inputs") or {}).items()}
    parts = [Html(f"<h1>Training report: {esc(FAMILY_NAMES.get(family, family))} model</h1>"),
             key_values(facts), Html("<h3>Classes</h3>"), classes_table(classes)]
    if inputs:
        parts += [Html("<h3>Inputs</h3>"), key_values(inputs)]
    return parts


def metrics_section(metrics: dict | None) -> Html:
    if not metrics:
        return section("Accuracy on the test polygons", paragraph(
            "No test-set metrics: the model was trained without test polygons.", note=True))
    return section("Accuracy on the test polygons", *accuracy_parts(metrics))


def curves_section(training: dict) -> Html:
    history = training.get("history") or []
    if not history:
        return section("Learning curves", paragraph(
            "No learning curve: this model records no training history (a Random Forest "
            "has no epochs).", note=True))
    best = training.get("best_epoch")
    rows = [(entry.get("epoch"), entry.get("train_loss"), entry.get("val_loss"),
             entry.get("learning_rate")) for entry in history]
    best_text = (f"Best epoch: {best} (the weights kept in the model file are those of the "
                 "epoch with the lowest validation loss)." if best is not None
                 else "No best epoch was recorded.")
    history_table = table(("epoch", "training loss", "validation loss", "learning rate"),
                          [(e, t, v, Html(esc("n/a" if lr is None else f"{lr:.2e}")))
                           for e, t, v, lr in rows])
    return section("Learning curves", Html(f"<figure>{curves_svg(history, best_epoch=best)}"
                                           "</figure>"), paragraph(best_text),
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


def repeats_section(repeats: dict) -> Html:
    keys = ("overall_accuracy", "kappa", "mean_f1")
    runs = repeats.get("runs") or []
    rows = [(index, run.get("seed"), *(run.get(k) for k in keys))
            for index, run in enumerate(runs, start=1)]
    mean, std = repeats.get("mean") or {}, repeats.get("std") or {}
    total = ("mean ± std", "", *(Html(esc(f"{number(mean.get(k))} ± {number(std.get(k))}"))
                                 for k in keys))
    return section("Repeated splits", paragraph(
        f"{len(runs)} runs, each on a split drawn with its own seed; the spread shows how much "
        "the accuracy depends on which polygons are held out."),
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
    settings = {k: describe_value(v) for k, v in (training.get("settings") or {}).items()}
    architecture = {k: describe_value(v)
                    for k, v in (metadata.get("architecture") or {}).items()}
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
    parts = [*headline_section(metadata), metrics_section(metadata.get("metrics")),
             curves_section(training), split_section(training)]
    if metadata.get("repeats"):
        parts.append(repeats_section(metadata["repeats"]))
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
    parts = [Html(f"<h1>{esc(title)}</h1>"), section("Accuracy", *accuracy_parts(metrics)),
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
    writer.writerow([AXES, *names[: len(accuracy.confusion[0]) if accuracy.confusion else 0]])
    for name, row in zip(names[:n_rows], accuracy.confusion[:n_rows], strict=True):
        writer.writerow([name, *row])
    return buffer.getvalue()


def write_confusion_csv(path: Path, accuracy: Accuracy) -> Path:
    """The confusion matrix as CSV: a header of predicted class names (its first cell says
    "rows = reference, columns = prediction"), then one row per reference class."""
    return write_text(path, confusion_csv(accuracy), "OUTPUT_CSV")
