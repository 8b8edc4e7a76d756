"""McNemar's test against the textbook formula, and the compare-maps command on two tiny maps
counted by hand (tests/map_pairs.py): polygons, points, the disagreement raster, bad grids."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from helpers import RecordingReporter
from map_pairs import (
    CHI_SQUARE,
    DISAGREEMENT,
    F1_A,
    F1_B,
    MAP_B,
    N_PIXELS,
    OA_A,
    OA_B,
    ONLY_A,
    ONLY_B,
    PIXEL,
    X0,
    Y0,
    point,
    write_features,
    write_map,
    write_pair,
    write_points,
    write_polygons,
)
from osgeo import ogr
from scipy import stats

from lcfusion.engine.errors import CancelledError, LcfusionError
from lcfusion.engine.jobs import Job, write_job
from lcfusion.engine.reports.comparison import compare_maps
from lcfusion.engine.reports.mcnemar import EXACT_BELOW, mcnemar, mcnemar_counts


def chi_square_p(statistic: float) -> float:
    """P(chi-square with 1 degree of freedom > statistic) = erfc(sqrt(statistic / 2))."""
    return math.erfc(math.sqrt(statistic / 2))


def test_mcnemar_by_hand_in_both_regimes():
    # 30 pixels right only by A, 10 only by B: (|30 - 10| - 1)^2 / 40 = 361 / 40 = 9.025
    many = mcnemar_counts(30, 10)
    assert (many.only_a, many.only_b, many.discordant) == (30, 10, 40)
    assert many.chi_square == pytest.approx(9.025)
    assert many.p_value == pytest.approx(chi_square_p(9.025), rel=1e-9)
    assert many.p_value == pytest.approx(0.002663, rel=1e-3)
    assert many.method == "chi-square, continuity-corrected"
    # 9 against 1 (10 < EXACT_BELOW): 2 P(X <= 1), X ~ B(10, 1/2) = 2 * 11 / 1024
    few = mcnemar_counts(9, 1)
    assert EXACT_BELOW > 10 and few.method == "exact binomial"
    assert few.p_value == pytest.approx(22 / 1024)
    assert few.chi_square == pytest.approx(49 / 10)  # (|9 - 1| - 1)^2 / 10
    assert mcnemar_counts(0, 0).p_value == 1.0 and mcnemar_counts(0, 0).chi_square == 0.0
    assert mcnemar_counts(10, 30).p_value == pytest.approx(many.p_value)  # symmetric


def test_mcnemar_on_pixels_counts_only_the_discordant_ones():
    a = np.array([True, True, True, False, False, True])
    b = np.array([True, False, False, True, False, True])
    test = mcnemar(a, b)
    assert (test.only_a, test.only_b) == (2, 1)
    assert test.p_value == pytest.approx(stats.binomtest(2, 3, 0.5).pvalue)
    with pytest.raises(ValueError, match="unpaired"):
        mcnemar(a, b[:3])


def comparison_job(folder, map_a, map_b, reference, disagreement=True, points=False) -> Job:
    outputs = {"report": str(folder / "report.html")}
    if disagreement:
        outputs["disagreement"] = str(folder / "disagreement.tif")
    return Job.load(write_job(
        folder / "job", "compare-maps", inputs={"map_a": str(map_a), "map_b": str(map_b)},
        reference={"path": str(reference), "layer": "reference", "class_field": "code",
                   "name_field": "label", "points": points},
        outputs=outputs))


def test_polygons_give_the_hand_counted_test_accuracies_and_raster(tmp_path):
    map_a, map_b = write_pair(tmp_path)
    reporter = RecordingReporter()
    results = compare_maps(comparison_job(tmp_path, map_a, map_b,
                                          write_polygons(tmp_path / "ref.gpkg")), reporter)

    assert (results["ONLY_A"], results["ONLY_B"], results["N_PIXELS"]) == (ONLY_A, ONLY_B,
                                                                            N_PIXELS)
    assert results["CHI_SQUARE"] == pytest.approx(CHI_SQUARE)
    assert results["P_VALUE"] == pytest.approx(chi_square_p(CHI_SQUARE), rel=1e-9)
    assert results["OA_A"] == pytest.approx(OA_A) and results["OA_B"] == pytest.approx(OA_B)
    assert results["MEAN_F1_A"] == pytest.approx(sum(F1_A) / 3)
    assert results["MEAN_F1_B"] == pytest.approx(sum(F1_B) / 3)  # crop, never in B, counts
    with rasterio.open(results["OUTPUT_DISAGREEMENT"]) as raster:
        assert raster.nodata == 255 and raster.dtypes[0] == "uint8"
        np.testing.assert_array_equal(raster.read(1), DISAGREEMENT)
        assert raster.colormap(1)[1][:3] == (0x21, 0x66, 0xac)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Map A is significantly more accurate than map B" in page
    assert ('<td class="text">A right</td><td>40</td><td>49</td><td>89</td></tr><tr>'
            '<td class="text">A wrong</td><td>2</td><td>8</td><td>10</td>') in page
    assert (f'<td class="text">forest</td><td>40</td><td>{F1_A[1]:.4f}</td>'
            f'<td>{F1_B[1]:.4f}</td>') in page
    # over the grid: 119 pixels both maps classify, 61 differ (10 outside the reference,
    # forest rows 4-6, row 7 columns 0-1, crop), 61 x 100 m² = 0.61 ha
    assert "61 (51.26%)" in page and "0.61 ha" in page and "maps differ (no reference)" in page
    assert "1 reference pixel is nodata in map_b.tif" in reporter.text()


def test_points_label_the_pixel_they_fall_in(tmp_path):
    map_a, map_b = write_pair(tmp_path)
    results = compare_maps(comparison_job(tmp_path, map_a, map_b,
                                          write_points(tmp_path / "points.gpkg"),
                                          disagreement=False, points=True),
                           RecordingReporter())
    # points: both right, only A twice, only B once, both wrong once
    assert (results["ONLY_A"], results["ONLY_B"], results["N_PIXELS"]) == (2, 1, 5)
    assert results["METHOD"] == "exact binomial" and results["P_VALUE"] == pytest.approx(1.0)
    assert results["OA_A"] == pytest.approx(3 / 5) and results["OA_B"] == pytest.approx(2 / 5)
    assert "OUTPUT_DISAGREEMENT" not in results
    assert not (tmp_path / "disagreement.tif").exists()


def test_points_sharing_a_pixel_or_off_the_maps_count_once_or_not_at_all(tmp_path):
    map_a, map_b = write_pair(tmp_path)
    points = write_features(tmp_path / "points.gpkg", ogr.wkbPoint, (
        (1, point(0, 0)), (1, point(0, 0)), (2, point(5, 3)), (2, point(5, 3)),
        (3, point(5, 3)), (2, point(4, 1)), (1, point(20, 0))))
    reporter = RecordingReporter()
    results = compare_maps(comparison_job(tmp_path, map_a, map_b, points, disagreement=False,
                                          points=True), reporter)
    # (0, 0) both right once; (5, 3) ambiguous (forest and crop), left out; (4, 1) only A
    assert (results["N_PIXELS"], results["ONLY_A"], results["ONLY_B"]) == (2, 1, 0)
    log = reporter.text()
    assert "1 pixel holds sample points of different classes" in log
    assert "5 of 7 sample points label no pixel of their own" in log


def test_a_map_off_the_grid_is_refused_with_the_warp_to_use(tmp_path):
    map_a, _ = write_pair(tmp_path)
    shifted = write_map(tmp_path / "shifted.tif", MAP_B, origin=(X0 + PIXEL / 2, Y0))
    (tmp_path / "disagreement.tif").write_bytes(b"an older file")
    with pytest.raises(LcfusionError) as error:
        compare_maps(comparison_job(tmp_path, map_a, shifted,
                                    write_polygons(tmp_path / "ref.gpkg")), RecordingReporter())
    assert error.value.parameter == "MAP_B"
    assert "not on the grid of MAP_A map_a.tif" in error.value.message
    assert "gdalwarp -t_srs EPSG:32631 -te 500000 4999900 500120 5000000 -tr 10 10 -r near" \
        in error.value.message
    assert not (tmp_path / "report.html").exists()
    assert (tmp_path / "disagreement.tif").read_bytes() == b"an older file"


def test_a_reference_no_map_covers_fails_and_writes_nothing(tmp_path):
    map_a, _ = write_pair(tmp_path)
    empty = write_map(tmp_path / "empty.tif", np.full_like(MAP_B, 255))
    with pytest.raises(LcfusionError) as error:
        compare_maps(comparison_job(tmp_path, map_a, empty,
                                    write_polygons(tmp_path / "ref.gpkg")), RecordingReporter())
    assert error.value.parameter == "REFERENCE"
    assert "no pixel of the reference has a class in both maps" in error.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.tif", "job", "map_a.tif",
                                                          "map_b.tif", "ref.gpkg"]


def test_a_cancelled_run_leaves_no_output_and_keeps_older_files(tmp_path):
    map_a, map_b = write_pair(tmp_path)
    (tmp_path / "disagreement.tif").write_bytes(b"an older file")
    with pytest.raises(CancelledError):
        compare_maps(comparison_job(tmp_path, map_a, map_b,
                                    write_polygons(tmp_path / "ref.gpkg")),
                     RecordingReporter(stop_at="comparing"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disagreement.tif", "job",
                                                          "map_a.tif", "map_b.tif", "ref.gpkg"]
    assert (tmp_path / "disagreement.tif").read_bytes() == b"an older file"
