"""make accuracy: every model family against the Random Forest baselines, over k seeded
object-level splits, on the sample scene and on the Slovenia Sentinel-2 data.

Writes ``accuracy.md`` (OA, mean F1 and Kappa as mean ± std over the splits, like the papers'
tables) and ``accuracy.json`` in the output folder; runs the engine directly (no QGIS).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LCFUSION_SHARED_DATA", REPO.parent / "shared" / "data"))

from lcfusion.engine.cli import job_command  # noqa: E402
from lcfusion.engine.families.repeats import format_mean_std, run_training  # noqa: E402
from lcfusion.engine.jobs import Job, write_job  # noqa: E402
from lcfusion.engine.progress import ConsoleReporter, Reporter  # noqa: E402
from lcfusion.engine.sample_scene import SampleSceneConfig, generate_sample_scene  # noqa: E402

#: Settings that train in about a minute each on two CPU cores.
FGUNET = {"epochs": 8, "patch_size": 32, "batch_size": 8, "patches_per_epoch": 128,
          "validation_patches": 32, "learning_rate": 0.002, "max_shift": 12, "tile_size": 160}
MRFUSION = {"epochs": 6, "samples_per_epoch": 1024, "validation_samples": 256,
            "batch_size": 64, "learning_rate": 0.001, "tile_size": 320}
TWINNS = {"epochs": 8, "samples_per_epoch": 1024, "validation_samples": 256,
          "batch_size": 64, "learning_rate": 0.002, "tile_size": 160}
RANDOM_FOREST = {"n_trees": 100, "samples_per_class": 1000}
SLOVENIA_FGUNET = {"epochs": 12, "patch_size": 32, "batch_size": 8, "patches_per_epoch": 128,
                   "validation_patches": 16, "learning_rate": 3e-4, "max_shift": 8,
                   "tile_size": 128, "class_weighting": "sqrt"}


#: The rasters each source takes.
SOURCE_INPUTS = {"s2": ("s2",), "s1s2": ("s1", "s2"), "panms": ("pan", "ms")}


@dataclass
class Dataset:
    """Input rasters (s2, s1, pan, ms), the reference and the split of one comparison."""

    name: str
    inputs: dict[str, dict]
    reference: dict
    split: dict


@dataclass
class Entry:
    """One row of the table: a model (family, settings) on one source of the datasets."""

    name: str
    command: str
    source: str
    settings: dict = field(default_factory=dict)


def sample_dataset(folder: Path, size: int) -> Dataset:
    scene = generate_sample_scene(folder / "scene", SampleSceneConfig(width=size, height=size))
    s2 = {"paths": [str(p) for p in scene.s2_paths],
          "masks": [str(scene.s2_cloud_mask_path)], "gapfill": True}
    s1 = {"paths": [str(p) for p in scene.s1_paths]}
    return Dataset(
        "sample scene",
        {"s2": s2, "s1": s1, "pan": {"paths": [str(scene.pan_path)]},
         "ms": {"paths": [str(scene.ms_path)]}},
        {"path": str(scene.reference_path), "layer": scene.reference_layer,
         "class_field": "class_id", "name_field": "class_name"},
        {"train": 0.6, "validation": 0.2, "test": 0.2, "method": "random"})


def slovenia_dataset(folder: Path) -> Dataset | None:
    from osgeo import gdal

    source = SHARED_DATA / "slovenia_s2" / "lulc_reference.gpkg"
    if not source.is_file():
        return None
    gdal.UseExceptions()
    reference = folder / "slovenia_reference.gpkg"
    if not reference.exists():
        folder.mkdir(parents=True, exist_ok=True)
        gdal.VectorTranslate(str(reference), str(source), format="GPKG",
                             where="LULC_ID NOT IN (0, 1)")
    scenes = [str(SHARED_DATA / "slovenia_s2" / f"s2_scene_{i}.tif") for i in (5, 2, 1, 4, 3)]
    return Dataset("Slovenia (S2, 5 dates)", {"s2": {"paths": scenes}},
                   {"path": str(reference), "class_field": "LULC_ID",
                    "name_field": "LULC_NAME"},
                   {"train": 0.5, "validation": 0.17, "test": 0.33, "method": "random"})


def run_entry(entry: Entry, dataset: Dataset, folder: Path, repeats: int, seed: int,
              reporter: Reporter) -> dict:
    """Train `entry` on `dataset` over `repeats` splits; the mean ± std outputs."""
    job_folder = folder / dataset.name.split()[0].lower() / entry.name.replace(" ", "_")
    inputs = {key: dataset.inputs[key] for key in SOURCE_INPUTS[entry.source]}
    if entry.command == "train-fgunet":
        inputs = {"series": inputs["s2"]}
    path = write_job(job_folder, entry.command, inputs=inputs,
                     reference=dataset.reference,
                     split={**dataset.split, "seed": seed, "repeats": repeats},
                     settings=entry.settings,
                     outputs={"model": str(job_folder / "model.lcfusion")})
    started = time.monotonic()
    outputs = run_training(Job.load(path), reporter, job_command(entry.command))
    return {**outputs, "seconds": round(time.monotonic() - started, 1)}


def sample_entries() -> list[Entry]:
    forest = [Entry(f"RF {features} ({source})", "train-randomforest", source,
                    {**RANDOM_FOREST, "source": source, "features": features})
              for source in ("s2", "s1s2", "panms")
              for features in ("pixel", "patch_flat", "patch_stats")]
    return [
        *forest,
        Entry("FG-UNET (s2)", "train-fgunet", "s2", FGUNET),
        Entry("MRFusion (pan+ms)", "train-mrfusion", "panms", MRFUSION),
        Entry("MRFusion PAN branch only", "train-mrfusion", "panms",
              {**MRFUSION, "branches": "pan"}),
        Entry("MRFusion MS branch only", "train-mrfusion", "panms",
              {**MRFUSION, "branches": "ms"}),
        Entry("TWINNS (s1+s2)", "train-twinns", "s1s2", TWINNS),
        Entry("TWINNS S1 only", "train-twinns", "s1s2", {**TWINNS, "sources": "s1"}),
        Entry("TWINNS S2 only", "train-twinns", "s1s2", {**TWINNS, "sources": "s2"}),
        Entry("TWINNS CNN only", "train-twinns", "s1s2", {**TWINNS, "branches": "cnn"}),
        Entry("TWINNS ConvGRU only", "train-twinns", "s1s2", {**TWINNS, "branches": "rnn"}),
        Entry("TWINNS no auxiliary", "train-twinns", "s1s2", {**TWINNS, "auxiliary": False}),
    ]


def slovenia_entries() -> list[Entry]:
    return [Entry(f"RF {features} (s2)", "train-randomforest", "s2",
                  {**RANDOM_FOREST, "source": "s2", "features": features})
            for features in ("pixel", "patch_flat", "patch_stats")] + [
        Entry("FG-UNET (s2)", "train-fgunet", "s2", SLOVENIA_FGUNET)]


def markdown(results: dict[str, list[dict]], repeats: int) -> str:
    lines = [f"Accuracy on the held-out test polygons, mean ± standard deviation over {repeats} "
             "seeded object-level splits (`make accuracy`).", ""]
    for dataset, rows in results.items():
        lines += [f"### {dataset}", "", "| model | OA | mean F1 | Kappa | time per split |",
                  "|---|---|---|---|---|"]
        for row in rows:
            lines.append(
                f"| {row['model']} | {format_mean_std(row.get('OA'), row.get('OA_STD'))} | "
                f"{format_mean_std(row.get('MEAN_F1'), row.get('MEAN_F1_STD'))} | "
                f"{format_mean_std(row.get('KAPPA'), row.get('KAPPA_STD'))} | "
                f"{row['seconds'] / repeats:.0f} s |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--repeats", type=int, default=3, help="seeded splits per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=160, help="sample scene side (pixels)")
    parser.add_argument("--only", default="", help="run the rows whose name contains this")
    args = parser.parse_args()
    folder = args.folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    reporter = ConsoleReporter()
    plans = [(sample_dataset(folder, args.size), sample_entries())]
    slovenia = slovenia_dataset(folder)
    if slovenia is None:
        print(f"Slovenia data not found under {SHARED_DATA}: skipped", file=sys.stderr)
    else:
        plans.append((slovenia, slovenia_entries()))
    results: dict[str, list[dict]] = {}
    for dataset, entries in plans:
        for entry in entries:
            if args.only and args.only not in entry.name:
                continue
            print(f"== {dataset.name}: {entry.name} ({args.repeats} splits)", flush=True)
            outputs = run_entry(entry, dataset, folder, args.repeats, args.seed, reporter)
            results.setdefault(dataset.name, []).append({"model": entry.name, **outputs})
            (folder / "accuracy.json").write_text(json.dumps(results, indent=1))
    table = markdown(results, args.repeats)
    (folder / "accuracy.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    print(f"written to {folder / 'accuracy.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
