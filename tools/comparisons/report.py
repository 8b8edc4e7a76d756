"""accuracy.md: the paired comparison tables, what "paired" means and how to read the tests."""

from __future__ import annotations

from lcfusion.engine.families.repeats import format_mean_std
from lcfusion.engine.reports.mcnemar import EXACT_BELOW

from .config import AccuracyConfig
from .paired import ALPHA, MIN_POLYGONS

COLUMNS = ("deep model", "its RF", "OA deep", "OA RF", "Kappa deep", "Kappa RF",
           "mean F1 deep", "mean F1 RF", "s / split deep", "s / split RF", "ΔOA (deep − RF)",
           "p Wilcoxon", "p paired t", f"splits for p < {ALPHA}",
           "McNemar: deep only / RF only, p",
           "test polygons: deep higher / RF higher of all, mean share right deep / RF, p",
           "verdict")


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _metric(side: dict, name: str) -> str:
    return format_mean_std(side["mean"][name], side["std"][name])


def comparison_row(row: dict) -> str:
    if row.get("error"):
        return (f"| {row['family']} ({row['source']}) | {row['forest_name']} | "
                + " | ".join(["–"] * (len(COLUMNS) - 3)) + f" | failed: {row['error']} |")
    deep, forest, test, polygons = row["deep"], row["forest"], row["mcnemar"], row["polygons"]
    needed = row["splits_for_significance"]
    cells = [f"{row['family']} ({row['source']})", row["forest_name"],
             _metric(deep, "OA"), _metric(forest, "OA"), _metric(deep, "KAPPA"),
             _metric(forest, "KAPPA"), _metric(deep, "MEAN_F1"), _metric(forest, "MEAN_F1"),
             f"{deep['seconds_per_split']:.0f}", f"{forest['seconds_per_split']:.0f}",
             f"{row['delta_oa']['mean']:+.3f} ± {row['delta_oa']['std']:.3f}",
             _p(row["wilcoxon_p"]), _p(row["paired_t_p"]),
             "n/a" if needed is None else str(needed),
             f"{test['deep_only']} / {test['forest_only']}, {_p(test['p_value'])}",
             f"{polygons['deep_better']} / {polygons['forest_better']} of "
             f"{polygons['polygons']}, {_share(polygons['deep_mean'])} / "
             f"{_share(polygons['forest_mean'])}, {_p(polygons['p_value'])}",
             row["verdict"]]
    return "| " + " | ".join(cells) + " |"


def markdown(config: AccuracyConfig, repeats: int, seeds: list[int], results: dict,
             minutes: float) -> str:
    lines = [
        "# Deep families against their Random Forest: paired comparison (`make accuracy`)",
        "",
        f"Configuration `{config.name}`: {repeats} seeded object-level splits per set "
        f"(seeds {', '.join(map(str, seeds))}); the whole run took {minutes:.1f} minutes.",
        "",
        *[f"- {note}" for note in config.notes],
        "- Settings are never chosen on the test polygons; early stopping and the kept "
        "weights follow the validation polygons only.",
        "",
        "## What is paired",
        "",
        "- **Same split.** For each seed, the deep model and its Random Forest train on the "
        "same train / validation / test polygons: the engine derives the split from the seed, "
        "the reference layer and the grid alone (class-stratified, seeded shuffle of whole "
        "polygons), and both models of a pair read the same rasters, so the split is the "
        "same. The harness checks it: the part of every reference feature is compared "
        "(`same_split_parts` in accuracy.json).",
        "- **Same training pixels** means the same training polygons: each model then draws "
        "its own sample of pixels from them (the forest up to 1000 per class, the deep "
        "families their patches or samples per epoch).",
        "- **Same test pixels.** Every metric is the engine's own evaluation on all pixels "
        "of the test polygons (what the model file records); the per-pixel predictions come "
        "from the same evaluation (`test_pixels` output of the train job), and the harness "
        "checks that both models were scored on the same pixels (`same_test_pixels`).",
        "",
        "## How to read the tests",
        "",
        "- OA, Kappa and mean F1 are mean ± sample standard deviation over the splits; "
        "seconds per split include reading, training and the evaluation.",
        "- *p Wilcoxon*: two-sided Wilcoxon signed-rank test of the per-split OA differences. "
        f"With k = 5 splits its smallest possible two-sided p is 2 / 2^5 = 0.0625, so it can "
        f"never reach {ALPHA} on 5 splits.",
        "- *p paired t*: two-sided paired t-test of the per-split OAs (n/a when the "
        "differences have no spread).",
        "- *McNemar*: on the test pixels pooled over the splits (a pixel in the test part of "
        "several splits counts once per split): pixels right only by the deep model / only "
        f"by the RF; exact binomial test below {EXACT_BELOW} discordant pixels, chi-square "
        "with continuity correction otherwise. Neighbouring pixels of one polygon are not "
        "independent, so this p overstates the evidence; the splits are the independent "
        "replicates.",
        f"- *splits for p < {ALPHA}*: the fewest splits at which per-split OA differences "
        "with this mean and standard deviation would give the paired t-test p < "
        f"{ALPHA} if the splits were independent replicates (n/a when the deep model is not "
        "ahead on the mean or the differences have no spread). Random splits of one set "
        "share polygons, which makes the t-test over them optimistic (Nadeau and Bengio "
        "2003): it measures how far the evidence is, not a number of splits to run.",
        "- *test polygons*: every reference polygon tested in any split, scored by the share "
        "of its pixels each model gets right (the mean over the splits that test it): on how "
        "many each model scores higher, the mean of those shares, and the two-sided Wilcoxon "
        "signed-rank p of their differences (polygons both models score the same left out; "
        f"n/a below {MIN_POLYGONS} left). A small polygon weighs as much as a large one, "
        "where OA weighs pixels.",
        f"- *verdict*: 'deep better' / 'deep worse' when both the paired t-test over the "
        f"splits and McNemar's test give p < {ALPHA} in the direction of the mean ΔOA; "
        "otherwise 'no significant difference'.",
        "",
    ]
    for result in results.values():
        lines += [f"## {result['name']}", ""]
        lines += [f"- {note}" for note in result["notes"]]
        if result["notes"]:
            lines.append("")
        lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += [comparison_row(row) for row in result["comparisons"]]
        lines.append("")
    return "\n".join(lines)
