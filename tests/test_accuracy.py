"""`make accuracy` on its quick configuration, so the harness cannot rot: the structure of
accuracy.md / accuracy.json, the p-values' range and the pairing (both models of a pair on the
same split parts and test pixels). No accuracy is asserted. Plus the paired tests' arithmetic."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import SHARED_DATA, shared_data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from comparisons.paired import (  # noqa: E402
    mcnemar,
    paired_t_p,
    polygon_test,
    splits_for_significance,
    verdict,
    wilcoxon_p,
)
from comparisons.runs import paired_pixels  # noqa: E402

VERDICTS = {"deep better", "deep worse", "no significant difference"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[Path, dict, str]:
    out = tmp_path_factory.mktemp("accuracy")
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "accuracy.py"), str(out),
                             "--config", "quick"], capture_output=True, text=True,
                            timeout=900, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, json.loads((out / "accuracy.json").read_text(encoding="utf-8")), result.stderr


def comparisons(results: dict) -> list[dict]:
    return [row for data in results["sets"].values() for row in data["comparisons"]]


def in_unit_range(value) -> bool:
    return value is None or 0.0 <= value <= 1.0


@pytest.mark.slow
def test_quick_run_writes_every_comparison_with_its_tests(quick):
    out, results, _ = quick
    assert results["config"] == "quick" and results["seeds"] == [0, 1]
    assert [row["family"] for row in results["sets"]["sample"]["comparisons"]] == [
        "FG-UNET", "MRFusion", "TWINNS"]
    text = (out / "accuracy.md").read_text(encoding="utf-8")
    for heading in ("## What is paired", "## How to read the tests", "## sample scene"):
        assert heading in text
    assert "0.0625" in text
    for row in comparisons(results):
        assert "error" not in row, row.get("error")
        for side in ("deep", "forest"):
            assert [run["seed"] for run in row[side]["runs"]] == [0, 1]
            assert all(in_unit_range(run["OA"]) for run in row[side]["runs"])
            assert row[side]["seconds_per_split"] > 0 or side == "forest"
        assert in_unit_range(row["wilcoxon_p"]) and in_unit_range(row["paired_t_p"])
        test = row["mcnemar"]
        assert 0.0 <= test["p_value"] <= 1.0
        assert test["deep_only"] + test["forest_only"] <= row["pooled_test_pixels"]
        assert row["delta_oa"]["per_split"] == pytest.approx(
            [d["OA"] - f["OA"] for d, f in zip(row["deep"]["runs"], row["forest"]["runs"],
                                                strict=True)])
        assert row["verdict"] in VERDICTS
        assert f"| {row['family']} ({row['source']}) | {row['forest_name']} |" in text
        # Every reference polygon with pixels both models classified in any split, once.
        polygons, tested = row["polygons"], set()
        for deep, forest in zip(row["deep"]["runs"], row["forest"]["runs"], strict=True):
            deep_pixels, forest_pixels = (np.load(run["test_pixels"]) for run in (deep, forest))
            both = (deep_pixels["predicted"] >= 0) & (forest_pixels["predicted"] >= 0)
            tested |= set(deep_pixels["feature"][both].tolist())
        assert polygons["polygons"] == len(tested)
        assert in_unit_range(polygons["deep_mean"]) and in_unit_range(polygons["forest_mean"])
        assert in_unit_range(polygons["p_value"])
        assert row["splits_for_significance"] is None or row["splits_for_significance"] >= 2
    assert "test polygons: deep higher / RF higher of all, mean share right deep / RF, p" in text


@pytest.mark.slow
def test_both_models_of_a_pair_share_split_parts_and_test_pixels(quick):
    _, results, _ = quick
    for row in comparisons(results):
        assert row["same_split_parts"] == [True, True]
        assert row["same_test_pixels"] == [True, True]
        for deep, forest in zip(row["deep"]["runs"], row["forest"]["runs"], strict=True):
            assert deep["parts"] == forest["parts"] and "test" in deep["parts"]
            deep_pixels = np.load(deep["test_pixels"])
            forest_pixels = np.load(forest["test_pixels"])
            # The test pixels lie in exactly the split's test polygons.
            tests = {i for i, part in enumerate(deep["parts"]) if part == "test"}
            assert set(np.unique(deep_pixels["feature"]).tolist()) == tests
            assert np.array_equal(deep_pixels["rows"], forest_pixels["rows"])
        seeds = [run["parts"] for run in row["deep"]["runs"]]
        assert seeds[0] != seeds[1]  # another seed, another split
        for run in row["deep"]["runs"] + row["forest"]["runs"]:
            validation = np.load(Path(run["test_pixels"]).with_name("validation_pixels.npz"))
            # Settings are chosen on these: the validation polygons' pixels, none of the test's.
            parts = {run["parts"][i] for i in np.unique(validation["feature"]).tolist()}
            assert parts == {"validation"}
            assert run["VAL_OA"] == pytest.approx(
                np.mean(validation["predicted"] == validation["reference"]))


@pytest.mark.slow
def test_choose_scores_candidates_on_the_validation_polygons(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "choose.py"), str(tmp_path), "--config",
         "quick", "--families", "train-fgunet", "--sets", "sample", "--repeats", "1",
         "--candidates", "polygon sampling"], capture_output=True, text=True, timeout=600,
        check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = json.loads((tmp_path / "choice.json").read_text())["train-fgunet"]["sample"]
    assert sorted(runs) == ["defaults", "polygon sampling"]
    assert all(in_unit_range(run["VAL_OA"]) for name in runs for run in runs[name])
    text = (tmp_path / "choice.md").read_text(encoding="utf-8")
    delta = runs["polygon sampling"][0]["VAL_OA"] - runs["defaults"][0]["VAL_OA"]
    assert f"| sample | polygon sampling | {runs['polygon sampling'][0]['VAL_OA']:.3f}" in text
    assert f"{delta:.3f} ± 0.000" in text


@pytest.mark.slow
def test_quick_run_takes_a_real_set_with_its_derived_inputs_logged(quick):
    shared_data("slovenia_s2", "lulc_reference.gpkg")
    out, results, _ = quick
    slovenia = results["sets"]["slovenia"]
    assert any("dropped LULC 1 'cultivated land'" in note for note in slovenia["notes"])
    assert (out / "inputs" / "slovenia_reference.gpkg").is_file()
    assert not (SHARED_DATA / "slovenia_s2" / "slovenia_reference.gpkg").exists()
    assert "dropped LULC 1" in (out / "accuracy.md").read_text(encoding="utf-8")


def test_mcnemar_is_exact_for_few_discordant_pixels_and_chi_square_otherwise():
    deep = np.array([True] * 9 + [False] * 1 + [True] * 50)
    forest = np.array([False] * 9 + [True] * 1 + [True] * 50)
    few = mcnemar(deep, forest)
    assert (few.deep_only, few.forest_only, few.method) == (9, 1, "exact binomial")
    assert few.p_value == pytest.approx(22 / 1024)  # 2 * P(X <= 1), X ~ B(10, 1/2)
    many = mcnemar(np.repeat(deep, 4), np.repeat(forest, 4))
    assert many.method == "chi-square, continuity-corrected"
    # chi-square (|36 - 4| - 1)^2 / 40 = 24.025 on 1 degree of freedom
    assert many.p_value == pytest.approx(9.509e-7, rel=1e-3)
    assert mcnemar(deep, deep).p_value == 1.0


def test_split_tests_over_five_splits():
    deep, forest = [0.80, 0.82, 0.85, 0.79, 0.90], [0.70, 0.71, 0.72, 0.70, 0.75]
    assert wilcoxon_p(deep, forest) == pytest.approx(0.0625)  # the smallest possible at k = 5
    assert paired_t_p(deep, forest) < 0.01
    assert wilcoxon_p(forest, forest) == 1.0 and paired_t_p(forest, forest) == 1.0
    assert paired_t_p([0.8, 0.9], [0.7, 0.8]) is None  # equal differences: no spread


def test_polygons_are_scored_by_their_share_of_right_pixels():
    # Polygon 0: 4 pixels, the deep model right on 2, the forest on 1; polygon 1: 2 pixels,
    # 1 against 2; polygon 2: 3 pixels, 3 against 0; polygon 3: both right on its pixel.
    deep = np.array([1, 1, 0, 0, 1, 0, 1, 1, 1, 1], dtype=bool)
    forest = np.array([1, 0, 0, 0, 1, 1, 0, 0, 0, 1], dtype=bool)
    polygon = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 3])
    test = polygon_test(deep, forest, np.zeros(10, dtype=int), polygon)
    assert (test.polygons, test.deep_better, test.forest_better) == (4, 2, 1)
    # Shares 1/2, 1/2, 1, 1 against 1/4, 1, 0, 1.
    assert test.deep_mean == pytest.approx(3 / 4) and test.forest_mean == pytest.approx(9 / 16)
    assert test.p_value is None  # 3 polygons scored differently: too few for a p-value
    assert polygon_test(deep, deep, np.zeros(10, dtype=int), polygon).p_value is None


def test_the_polygon_p_value_is_exact_without_ties():
    # 10 polygons of 10 pixels; on polygon k the deep model is right on k + 1 more pixels
    # than the forest: all 10 differences positive and distinct, so the exact two-sided p
    # is 2 / 2^10 (only all signs positive, or all negative, are as extreme).
    deep = np.concatenate([np.arange(10) < k + 1 for k in range(10)])
    forest = np.zeros(100, dtype=bool)
    test = polygon_test(deep, forest, np.zeros(100, dtype=int), np.repeat(np.arange(10), 10))
    assert (test.polygons, test.deep_better, test.forest_better) == (10, 10, 0)
    assert test.p_value == pytest.approx(2 / 2**10)


def test_a_polygon_tested_in_two_splits_is_one_unit_with_its_shares_averaged(tmp_path):
    runs = []
    # Split 0: both right on both pixels; split 1: the forest right on one.
    for split, (deep_predicted, forest_predicted) in enumerate((([1, 1], [1, 1]),
                                                                ([1, 1], [1, 2]))):
        for model, predicted in (("deep", deep_predicted), ("forest", forest_predicted)):
            path = tmp_path / f"{model}-{split}.npz"
            np.savez(path, rows=np.array([0, 1]), cols=np.array([0, 0]),
                     feature=np.array([4, 4]), reference=np.array([1, 1]),
                     predicted=np.array(predicted))
            runs.append({"test_pixels": str(path)})
    pixels = paired_pixels(runs[0::2], runs[1::2])
    assert pixels.same_pixels == [True, True]
    assert pixels.split.tolist() == [0, 0, 1, 1] and pixels.polygon.tolist() == [4, 4, 4, 4]
    test = polygon_test(pixels.deep_correct, pixels.forest_correct, pixels.split,
                        pixels.polygon)
    assert (test.polygons, test.deep_better, test.forest_better) == (1, 1, 0)
    assert test.forest_mean == pytest.approx(0.75)  # 2 of 2, then 1 of 2


def test_splits_needed_for_significance_at_the_observed_mean_and_spread():
    # Mean 0.05, standard deviation 0.0158: t = 0.05 / (0.0158 / sqrt(k)) is 4.47 at k = 2
    # (below t 0.975 = 12.71 on 1 degree of freedom) and 5.48 at k = 3 (above 4.30).
    assert splits_for_significance([0.05, 0.06, 0.04, 0.07, 0.03]) == 3
    # Mean 0.05, standard deviation 0.0990: t = 0.505 sqrt(k) passes t 0.975 (2.110 on 17
    # degrees of freedom) at k = 18 (2.143), not at 17 (2.083 against 2.120).
    assert splits_for_significance([0.12, -0.02]) == 18
    assert splits_for_significance([0.12, -0.02], most=10) is None
    assert splits_for_significance([-0.1, 0.0]) is None  # not ahead on the mean
    assert splits_for_significance([0.05, 0.05]) is None  # no spread, as the t-test's n/a


def test_verdict_needs_both_tests_in_the_same_direction():
    better = mcnemar(np.array([True] * 40 + [False] * 2), np.array([False] * 40 + [True] * 2))
    assert verdict(0.05, 0.01, better) == "deep better"
    assert verdict(0.05, 0.2, better) == "no significant difference"
    assert verdict(-0.05, 0.01, better) == "no significant difference"
    worse = mcnemar(np.array([False] * 40 + [True] * 2), np.array([True] * 40 + [False] * 2))
    assert verdict(-0.05, 0.01, worse) == "deep worse"
