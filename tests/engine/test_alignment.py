"""PAN/MS grid alignment: integer ratios within a tolerance, clear errors otherwise."""

from __future__ import annotations

import pytest

from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.io.alignment import ALIGNMENT_TOLERANCE, align_pan_ms, plan_ms_alignment

PAN = (1000.0, 0.5, 0.0, 2000.0, 0.0, -0.5)


def ms_grid(pixel: float, x0: float = 1000.0, y0: float = 2000.0):
    return (x0, pixel, 0.0, y0, 0.0, -pixel)


def test_exact_ratio_and_origin():
    alignment = align_pan_ms(PAN, (400, 400), ms_grid(2.0), (100, 100))
    assert (alignment.ratio, alignment.offset_rows, alignment.offset_cols) == (4, 0, 0)
    assert alignment.notes == ()
    assert alignment.misalignment == 0.0


def test_rotterdam_like_ratio_is_reconciled_and_noted():
    pan = (593270.29, 0.49999345509841014, 0.0, 5747657.41, 0.0, -0.49999345509841014)
    ms = (593270.29, 1.0000483155950517, 0.0, 5747657.41, 0.0, -1.0000483155950517)
    alignment = align_pan_ms(pan, (600, 600), ms, (300, 300))
    assert alignment.ratio == 2
    assert alignment.misalignment == pytest.approx(0.037, abs=0.001)
    assert any("2.000123" in note and "taken as 2" in note for note in alignment.notes)


def test_larger_ms_extent_gives_a_whole_pixel_offset():
    # The MS starts one MS pixel (4 PAN pixels) west and north of the PAN.
    alignment = align_pan_ms(PAN, (400, 400), ms_grid(2.0, 998.0, 2002.0), (110, 110))
    assert (alignment.offset_rows, alignment.offset_cols) == (-4, -4)
    assert alignment.ms_index(0, 0) == 1 and alignment.ms_index(3, 1) == 1
    assert alignment.ms_index(4, 1) == 2
    assert any("not used" in note for note in alignment.notes)


def test_patch_start_is_the_nearest_ms_edge():
    alignment = align_pan_ms(PAN, (400, 400), ms_grid(2.0), (100, 100))
    # PAN patch starts 0..7 -> MS coordinates 0, 0.25, 0.5, 0.75, 1, ... rounded half up.
    assert [alignment.patch_start(s, 0) for s in range(8)] == [0, 0, 1, 1, 1, 1, 2, 2]


@pytest.mark.parametrize("ms, size, words", [
    (ms_grid(1.25), (160, 160), "not a whole number"),
    (ms_grid(2.0, 1000.0 + 0.2, 2000.0), (100, 100), "offset"),
    (ms_grid(2.0, 1000.0 + 1.0, 2000.0), (100, 100), "does not cover"),
    (ms_grid(2.0), (90, 100), "does not cover"),
    (ms_grid(2.0, 5000.0, 5000.0), (100, 100), "does not cover"),
])
def test_bad_grids_are_clear_errors_naming_ms(ms, size, words):
    with pytest.raises(LcfusionError) as error:
        align_pan_ms(PAN, (400, 400), ms, size)
    assert error.value.parameter == "MS"
    assert words in error.value.message


def test_drift_over_the_extent_counts_against_the_tolerance():
    # 2.0004 over 400 PAN pixels (200 MS pixels) drifts 0.08 PAN pixels: accepted.
    assert align_pan_ms(PAN, (400, 400), ms_grid(1.0002), (200, 200)).ratio == 2
    # The same ratio over 4000 PAN pixels drifts 0.8 PAN pixels: refused.
    with pytest.raises(LcfusionError, match="not a whole number"):
        align_pan_ms(PAN, (4000, 4000), ms_grid(1.0002), (2000, 2000))
    assert ALIGNMENT_TOLERANCE == 0.25


def test_swapped_layers_are_named():
    with pytest.raises(LcfusionError) as error:
        align_pan_ms(ms_grid(2.0), (100, 100), PAN, (400, 400))
    assert error.value.parameter == "PAN"
    assert "swapped" in error.value.message


def test_an_aligned_ms_is_kept_and_an_overhanging_pan_cropped():
    """An MS on the PAN grid is not resampled; a PAN one PAN pixel wider is cropped."""
    plan = plan_ms_alignment(PAN, (401, 400), ms_grid(2.0), (100, 100), "bilinear")
    assert plan.ms_transform is None and plan.pan_window == (0, 0, 400, 400)
    assert plan.notes == ("PAN cropped to the ground the MS covers, 400 x 400 of 401 x 400 "
                          "pixels (1 column at the right); the class map covers the cropped PAN",)


def test_landsat_offset_is_resampled_to_whole_pan_blocks():
    """Origins half a PAN pixel apart, 2n - 1 PAN pixels: n - 1 MS pixels on the PAN's
    corners, the last PAN row and column cropped."""
    pan = (1000.25, 0.5, 0.0, 1999.75, 0.0, -0.5)
    plan = plan_ms_alignment(pan, (199, 199), ms_grid(1.0), (100, 100), "nearest")
    assert plan.ms_transform == (1000.25, 1.0, 0.0, 1999.75, 0.0, -1.0)
    assert plan.ms_size == (99, 99) and plan.pan_window == (0, 0, 198, 198)


def test_a_pan_overhanging_by_an_ms_pixel_is_refused():
    with pytest.raises(LcfusionError) as error:
        plan_ms_alignment(PAN, (404, 400), ms_grid(2.0), (100, 100), "bilinear")
    assert error.value.parameter == "MS" and "4.0 PAN pixels beyond it" in error.value.message
