"""``make demo``: the main job on the bundled sample scene, headless through qgis_process.

Generates the sample scene, trains FG-UNET and classifies the scene with ``qgis_process``
(as a user would on a server), prints the accuracy, and leaves the styled class map
(GeoTIFF + .qml) and a PNG rendering with its legend in the output folder.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from lcfusion.engine.sample_scene import SampleSceneConfig, generate_sample_scene

QGIS_PROCESS = "qgis_process.bin"
TRAINING = {"EPOCHS": 8, "PATCH_SIZE": 32, "BATCH_SIZE": 8, "PATCHES_PER_EPOCH": 128,
            "VALIDATION_PATCHES": 32, "LEARNING_RATE": 0.002, "MAX_SHIFT": 12, "SEED": 1}


def qgis_process(*args: str) -> dict[str, str]:
    """Run qgis_process, echo its output, return the values printed under 'Results'."""
    command = [QGIS_PROCESS, *args]
    print("$ " + " ".join(command[:4]) + " ...", flush=True)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    results: dict[str, str] = {}
    in_results = False
    for line in process.stdout:
        print("  " + line.rstrip(), flush=True)
        if line.strip() == "Results":
            in_results = True
        elif in_results and ":\t" in line:
            key, value = line.rstrip("\n").split(":\t", 1)
            results[key.strip()] = value.strip()
    if process.wait() != 0:
        raise SystemExit(f"qgis_process failed (exit status {process.returncode})")
    return results


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

    scene = generate_sample_scene(folder / "scene",
                                  SampleSceneConfig(width=args.size, height=args.size))
    print(f"Sample scene: {len(scene.s2_paths)} Sentinel-2 dates, {args.size} x {args.size} "
          f"pixels, reference polygons in {scene.reference_path.name}")
    enable_plugin()

    model, report = folder / "fgunet.lcfusion", folder / "training_report.html"
    trained = qgis_process("run", "lcfusion:trainfgunet", *parameters({
        "INPUT": [str(p) for p in scene.s2_paths], "REFERENCE": str(scene.reference_path),
        "CLASS_FIELD": "class_id", "NAME_FIELD": "class_name", "COLOR_FIELD": "class_color",
        **TRAINING,
        "OUTPUT_MODEL": str(model), "OUTPUT_REPORT": str(report)}))
    class_map, confidence = folder / "landcover.tif", folder / "confidence.tif"
    qgis_process("run", "lcfusion:classifyfgunet", *parameters({
        "INPUT": [str(p) for p in scene.s2_paths], "MODEL": str(model),
        "OUTPUT": str(class_map), "OUTPUT_CONFIDENCE": str(confidence)}))
    png = folder / "landcover.png"
    render(class_map, scene.reference_path, png)

    print()
    print(f"Overall accuracy (held-out test polygons): {float(trained['OA']):.3f}")
    print(f"Cohen's Kappa:                            {float(trained['KAPPA']):.3f}")
    print(f"Mean F1:                                  {float(trained['MEAN_F1']):.3f}")
    print(f"Class map (styled, open it in QGIS): {class_map} (+ {class_map.with_suffix('.qml')})")
    print(f"Confidence map:                      {confidence}")
    print(f"Rendering with legend:               {png}")
    print(f"Model:                               {model}")
    print(f"Training report:                     {report}")
    print(f"Done in {time.monotonic() - started:.0f} s; everything is in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
