"""``make demo``: the main job on the bundled sample scene, headless through qgis_process.

Generates the sample scene with its context classes, trains FG-UNET and the pixel Random
Forest on the same Sentinel-2 series and the same split, and classifies the scene with FG-UNET,
all with ``qgis_process`` (as a user would on a server); prints both models' accuracy on the
held-out test polygons side by side with the per-pixel ceiling, and leaves the styled class map
(GeoTIFF + .qml) and a PNG rendering with its legend in the output folder.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from lcfusion.engine.modelfile.header import read_metadata
from lcfusion.engine.sample_scene import (
    CONTEXT_TWINS,
    PIXEL_TWINS,
    SampleSceneConfig,
    generate_sample_scene,
    per_pixel_ceiling,
)

QGIS_PROCESS = "qgis_process.bin"
#: Every parcel labelled: 2-3 test polygons per class instead of 1, for a steadier comparison.
LABEL_FRACTION = 1.0
TRAINING = {"EPOCHS": 8, "PATCH_SIZE": 32, "BATCH_SIZE": 8, "PATCHES_PER_EPOCH": 128,
            "VALIDATION_PATCHES": 32, "LEARNING_RATE": 0.002, "MAX_SHIFT": 12, "SEED": 1}


def qgis_process(*args: str) -> None:
    """Run qgis_process and echo its output; stop the demo when it fails."""
    command = [QGIS_PROCESS, *args]
    print("$ " + " ".join(command[:4]) + " ...", flush=True)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    for line in process.stdout:
        print("  " + line.rstrip(), flush=True)
    if process.wait() != 0:
        raise SystemExit(f"qgis_process failed (exit status {process.returncode})")


def enable_plugin() -> None:
    """Enable lcfusion for qgis_process unless it already is (enabling twice is an error)."""
    listing = subprocess.run([QGIS_PROCESS, "plugins"], capture_output=True, text=True,
                             check=True).stdout
    if not any(line.strip() == "* lcfusion" for line in listing.splitlines()):
        subprocess.run([QGIS_PROCESS, "plugins", "enable", "lcfusion"], check=True,
                       stdout=subprocess.DEVNULL)


def parameters(values: dict[str, object]) -> list[str]:
    arguments = ["--"]
    for key, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            arguments.append(f"{key}={item}")
    return arguments


def split_of(model: Path) -> tuple[dict, list]:
    """The split settings and the polygons and pixels per class and part of a model file."""
    training = read_metadata(model)["training"]
    return training["split"], training["split_summary"]


def held_out_metrics(model: Path) -> dict:
    """The accuracy on the test polygons recorded in a model file."""
    return read_metadata(model)["metrics"]


def print_comparison(models: dict[str, Path], classes) -> None:
    """OA, Kappa, mean F1 and the context classes' F1 of each model on the same test polygons,
    and the per-pixel ceiling of S2 on those polygons."""
    metrics = {name: held_out_metrics(path) for name, path in models.items()}
    rows = [("Overall accuracy", "overall_accuracy"), ("Cohen's Kappa", "kappa"),
            ("Mean F1", "mean_f1")]
    print(f"{'Held-out test polygons (same split)':<38}" + "".join(f"{n:>16}" for n in models))
    for label, key in rows:
        print(f"{label:<38}" + "".join(f"{m[key]:>16.3f}" for m in metrics.values()))
    for code in (code for pair in CONTEXT_TWINS for code in pair):
        f1 = [next(row["f1"] for row in m["per_class"] if row["code"] == code)
              for m in metrics.values()]
        label = f"F1 {classes.by_code(code).name} (context)"
        print(f"{label:<38}" + "".join(f"{value:>16.3f}" for value in f1))
    support = {row["code"]: row["support"] for row in next(iter(metrics.values()))["per_class"]}
    twins = ", ".join(" / ".join(classes.by_code(code).name for code in pair)
                      for pair in PIXEL_TWINS["s2"])
    ceiling = per_pixel_ceiling(support, "s2")
    print(f"{'Per-pixel ceiling (S2) on these pixels':<38}{ceiling:>16.3f}")
    print(textwrap.fill(f"(the highest OA a model of single S2 pixels can reach here: it can "
                        f"only guess between {twins}; a model that sees the pixels' context "
                        f"can pass it)", width=96, initial_indent="  ", subsequent_indent="  "))


def render(class_map: Path, reference: Path, png: Path) -> None:
    from qgis.core import QgsApplication

    from lcfusion.plugin.rendering import render_map_png

    app = QgsApplication([], False)
    app.initQgis()
    render_map_png(str(class_map), str(png), "FG-UNET land cover — lcfusion sample scene",
                   overlay_vector_path=str(reference))
    app.exitQgis()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--size", type=int, default=160)
    args = parser.parse_args()
    folder = args.folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    scene = generate_sample_scene(
        folder / "scene", SampleSceneConfig(width=args.size, height=args.size, context=True,
                                            label_fraction=LABEL_FRACTION))
    print(f"Sample scene: {len(scene.s2_paths)} Sentinel-2 dates, {args.size} x {args.size} "
          f"pixels, {len(scene.classes)} classes, reference polygons in "
          f"{scene.reference_path.name}")
    enable_plugin()

    reference = {"REFERENCE": str(scene.reference_path), "CLASS_FIELD": "class_id",
                 "NAME_FIELD": "class_name", "COLOR_FIELD": "class_color"}
    model, report = folder / "fgunet.lcfusion", folder / "training_report.html"
    qgis_process("run", "lcfusion:trainfgunet", *parameters({
        "INPUT": [str(p) for p in scene.s2_paths], **reference, **TRAINING,
        "OUTPUT_MODEL": str(model), "OUTPUT_REPORT": str(report)}))
    forest_model = folder / "randomforest.lcfusion"
    qgis_process("run", "lcfusion:trainrandomforest", *parameters({
        "SOURCE": 0, "S2": [str(p) for p in scene.s2_paths], **reference,
        "SEED": TRAINING["SEED"], "OUTPUT_MODEL": str(forest_model)}))
    if split_of(model) != split_of(forest_model):
        raise SystemExit("FG-UNET and the Random Forest were split differently")
    class_map, confidence = folder / "landcover.tif", folder / "confidence.tif"
    qgis_process("run", "lcfusion:classifyfgunet", *parameters({
        "INPUT": [str(p) for p in scene.s2_paths], "MODEL": str(model),
        "OUTPUT": str(class_map), "OUTPUT_CONFIDENCE": str(confidence)}))
    png = folder / "landcover.png"
    render(class_map, scene.reference_path, png)

    print()
    print_comparison({"FG-UNET": model, "RF (S2 pixel)": forest_model}, scene.classes)
    print()
    print(f"Class map (styled, open it in QGIS): {class_map} (+ {class_map.with_suffix('.qml')})")
    print(f"Confidence map:                      {confidence}")
    print(f"Rendering with legend:               {png}")
    print(f"Models:                              {model}, {forest_model}")
    print(f"Training report:                     {report}")
    print(f"Done in {time.monotonic() - started:.0f} s; everything is in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
