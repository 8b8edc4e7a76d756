"""make choose: each setting of a deep family against its defaults on the validation
polygons of the same k seeded splits of every set the family runs on (never the test
polygons), so that defaults are chosen on evidence a user's data would also give.

Writes ``choice.md`` and ``choice.json`` in the output folder; runs the engine directly.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from comparisons.config import CANDIDATES, CONFIGS, FAMILY_NAMES  # noqa: E402
from comparisons.datasets import SHARED_DATA, load_set  # noqa: E402
from comparisons.runs import train_split  # noqa: E402

from lcfusion.engine.families.repeats import format_mean_std  # noqa: E402


def _mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def markdown(results: dict, config_name: str, seeds: list[int], minutes: float) -> str:
    lines = ["# Choosing the deep families' settings on validation polygons (`make choose`)",
             "", f"Configuration `{config_name}` (its budget in samples and its settings), "
             f"plus each candidate's change; seeds "
             f"{', '.join(map(str, seeds))}; validation polygons only; {minutes:.1f} minutes.",
             "",
             "ΔOA: the candidate's validation OA minus the defaults', per split, mean ± std.",
             ""]
    for command, sets in results.items():
        lines += [f"## {FAMILY_NAMES[command]}", "",
                  "| set | candidate | validation OA | validation mean F1 | ΔOA vs defaults "
                  "| s / split |", "|---|---|---|---|---|---|"]
        for key, candidates in sets.items():
            base = [run["VAL_OA"] for run in candidates["defaults"]]
            for name, runs in candidates.items():
                oa = [run["VAL_OA"] for run in runs]
                f1 = [run["VAL_MEAN_F1"] for run in runs]
                delta = [a - b for a, b in zip(oa, base, strict=True)]
                seconds = np.mean([run["seconds"] for run in runs])
                lines.append(f"| {key} | {name} | {format_mean_std(*_mean_std(oa))} | "
                             f"{format_mean_std(*_mean_std(f1))} | "
                             f"{format_mean_std(*_mean_std(delta))} | {seconds:.0f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="full")
    parser.add_argument("--families", default=",".join(CANDIDATES),
                        help="comma-separated train commands")
    parser.add_argument("--sets", default="", help="comma-separated set keys (default: all "
                        "of the configuration's sets the family runs on)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--candidates", default="", help="comma-separated candidate names "
                        "(default: all; 'defaults' is always run)")
    args = parser.parse_args()
    config = CONFIGS[args.config]
    seeds = list(range(args.repeats))
    folder = args.folder.resolve()
    chosen_sets = [key for key in args.sets.split(",") if key] or list(config.sets)
    started = time.monotonic()
    results: dict[str, dict] = {}
    loaded: dict = {}
    for command in args.families.split(","):
        results[command] = {}
        for key in chosen_sets:
            comparison = next((c for c in config.comparisons[key] if c.command == command),
                              None)
            if comparison is None:
                continue
            if key not in loaded:
                loaded[key] = load_set(key, folder / "inputs", config.sample_size,
                                       config.sample_context)
            labelled = loaded[key]
            if labelled is None:
                print(f"[{key}] data not found under {SHARED_DATA}: skipped", file=sys.stderr)
                continue
            sets = results[command].setdefault(key, {})
            wanted = {name for name in args.candidates.split(",") if name}
            for candidate in CANDIDATES[command]:
                if wanted and candidate.name not in wanted | {"defaults"}:
                    continue
                settings = {**comparison.settings, **candidate.changes}
                tag = f"{command.removeprefix('train-')}-{candidate.name.replace(' ', '_')}"
                runs = []
                for seed in seeds:
                    run = train_split(labelled, command, comparison.source, settings, seed,
                                      folder / key / tag / f"seed-{seed}")
                    print(f"[{key}] {FAMILY_NAMES[command]} {candidate.name} seed {seed}: "
                          f"validation OA {run['VAL_OA']:.3f} in {run['seconds']:.0f} s",
                          flush=True)
                    runs.append(run)
                sets[candidate.name] = runs
                (folder / "choice.json").write_text(json.dumps(results, indent=1))
    text = markdown(results, config.name, seeds, (time.monotonic() - started) / 60)
    (folder / "choice.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
