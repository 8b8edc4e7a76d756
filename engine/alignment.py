"""How a PAN grid and an MS grid fit together: an integer ratio and a whole-pixel offset.

Pure Python on geotransforms and sizes (no raster library), so that the plugin can run the same
check in its dialogs before anything heavy starts.

Real products are not exact: the ratio of the pixel sizes is close to, not equal to, an integer,
and origins differ by a fraction of a pixel. The MS grid is accepted when every MS pixel edge
that falls on the PAN extent lies within ``ALIGNMENT_TOLERANCE`` PAN pixels of a PAN pixel edge;
the MS grid is then taken as snapped onto the PAN grid (nothing is resampled) and
`PanMsAlignment.notes` says what was reconciled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import LcfusionError

#: Largest distance, in PAN pixels, between an MS pixel edge and the nearest PAN pixel edge,
#: anywhere over the PAN extent.
ALIGNMENT_TOLERANCE = 0.25

Transform = tuple[float, float, float, float, float, float]


@dataclass(frozen=True)
class PanMsAlignment:
    """MS pixel (row, col) covers PAN rows ``offset_rows + ratio * row`` .. ``+ ratio - 1``
    (and likewise for columns); `offset_*` is the MS origin in PAN pixels (<= 0 when the MS
    starts before the PAN)."""

    ratio: int
    offset_rows: int
    offset_cols: int
    exact_ratio: float
    misalignment: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    def ms_index(self, pan_index, axis: int):
        """The MS row (axis 0) or column (axis 1) that contains a PAN row or column (an int or
        an integer array)."""
        offset = self.offset_rows if axis == 0 else self.offset_cols
        return (pan_index - offset) // self.ratio

    def patch_start(self, pan_start, axis: int):
        """The first MS row or column of the MS patch for a PAN patch starting at `pan_start`
        (an int or an integer array): the MS pixel edge nearest to the PAN patch's edge (ties go
        down-right)."""
        offset = self.offset_rows if axis == 0 else self.offset_cols
        return (2 * (pan_start - offset) + self.ratio) // (2 * self.ratio)

    def to_json(self) -> dict:
        return {"ratio": self.ratio, "offset_rows": self.offset_rows,
                "offset_cols": self.offset_cols, "exact_ratio": self.exact_ratio,
                "misalignment": self.misalignment}

    @classmethod
    def from_json(cls, data: dict) -> PanMsAlignment:
        return cls(int(data["ratio"]), int(data["offset_rows"]), int(data["offset_cols"]),
                   float(data["exact_ratio"]), float(data["misalignment"]))


def _axis(pan_origin: float, pan_step: float, pan_size: int, ms_origin: float, ms_step: float,
          ms_size: int, ratio: int) -> tuple[int, float, int, int]:
    """Offset (PAN pixels), worst edge distance (PAN pixels) and the range of MS pixels the
    PAN extent needs, along one axis; steps are signed pixel sizes."""
    offset = (ms_origin - pan_origin) / pan_step
    whole = round(offset)
    step_ratio = ms_step / pan_step
    first = (0 - whole) // ratio
    last = (pan_size - 1 - whole) // ratio
    worst = max(abs(offset + j * step_ratio - (whole + j * ratio)) for j in (first, last + 1))
    return whole, worst, first, last


def align_pan_ms(pan: Transform, pan_size: tuple[int, int], ms: Transform,
                 ms_size: tuple[int, int], tolerance: float = ALIGNMENT_TOLERANCE
                 ) -> PanMsAlignment:
    """Check and describe how the MS grid sits on the PAN grid.

    `pan` and `ms` are GDAL geotransforms of north-up grids, sizes are (width, height), both
    in one CRS (the caller checks it). Errors name the ``MS`` parameter, or ``PAN`` when the
    PAN is the coarser of the two.
    """
    pan_w, pan_h = abs(pan[1]), abs(pan[5])
    ms_w, ms_h = abs(ms[1]), abs(ms[5])
    if pan_w <= 0 or pan_h <= 0 or ms_w <= 0 or ms_h <= 0:
        raise LcfusionError("a raster has a zero pixel size; check its georeferencing", "MS")
    ratio_x, ratio_y = ms_w / pan_w, ms_h / pan_h
    if ratio_x < 1 - tolerance or ratio_y < 1 - tolerance:
        raise LcfusionError(
            f"the MS pixels ({ms_w:g} x {ms_h:g}) are smaller than the PAN pixels ({pan_w:g} x "
            f"{pan_h:g}); the PAN and MS layers seem swapped", "PAN")
    ratio = round((ratio_x + ratio_y) / 2)
    if round(ratio_x) != round(ratio_y):
        raise LcfusionError(
            f"the MS pixels are not square multiples of the PAN pixels (ratio {ratio_x:.4f} "
            f"across, {ratio_y:.4f} down); resample the MS to a pixel size that is the same whole "
            "multiple of the PAN pixel size in both directions", "MS")
    if (pan[1] > 0) != (ms[1] > 0) or (pan[5] > 0) != (ms[5] > 0):
        raise LcfusionError("the PAN and MS grids run in opposite directions (one is flipped); "
                            "warp both to north-up grids", "MS")
    cols = _axis(pan[0], pan[1], pan_size[0], ms[0], ms[1], ms_size[0], ratio)
    rows = _axis(pan[3], pan[5], pan_size[1], ms[3], ms[5], ms_size[1], ratio)
    worst = max(cols[1], rows[1])
    if worst > tolerance:
        ratio_text = (f"{ratio_x:.6f}" if abs(ratio_x - ratio) * pan_size[0] / ratio > tolerance
                      else None)
        if ratio_text:
            reason = (f"the PAN/MS pixel-size ratio is {ratio_text}, not a whole number: MS "
                      f"pixel edges drift up to {worst:.2f} PAN pixels from the PAN pixel edges "
                      f"over the extent (tolerance {tolerance:g})")
            fix = (f"resample the MS to exactly {ratio} (or another whole number of) times the "
                   "PAN pixel size, on a grid aligned with the PAN")
        else:
            reason = (f"the MS grid is offset from the PAN grid: MS pixel edges fall up to "
                      f"{worst:.2f} PAN pixels from the PAN pixel edges (tolerance "
                      f"{tolerance:g})")
            fix = ("co-register the pair, or resample the MS onto a grid whose origin lies on a "
                   "PAN pixel corner")
        raise LcfusionError(f"{reason}; {fix}. lcfusion does not resample silently", "MS")
    missing = []
    for name, (_, _, first, last), size in (("columns", cols, ms_size[0]),
                                            ("rows", rows, ms_size[1])):
        if first < 0 or last >= size:
            missing.append(name)
    if missing:
        raise LcfusionError(
            "the MS image does not cover the whole PAN image (it misses PAN "
            f"{' and '.join(missing)} at the edges); clip the PAN layer to the MS extent "
            "(Raster > Extraction > Clip Raster by Extent) or use an MS image that covers it",
            "MS")
    notes = []
    if abs(ratio_x - ratio) > 1e-9 or abs(ratio_y - ratio) > 1e-9:
        notes.append(f"PAN/MS pixel-size ratio {ratio_x:.6f} x {ratio_y:.6f} taken as {ratio}")
    if worst > 1e-6:
        notes.append(f"MS grid snapped onto the PAN grid: its pixel edges were up to "
                     f"{worst:.3f} PAN pixels ({worst * pan_w:.3g} ground units) off "
                     f"(tolerance {tolerance:g})")
    extra_cols = ms_size[0] - (cols[3] - cols[2] + 1)
    extra_rows = ms_size[1] - (rows[3] - rows[2] + 1)
    if extra_cols or extra_rows:
        notes.append(f"{extra_cols} MS column(s) and {extra_rows} MS row(s) outside the PAN "
                     "extent are not used")
    return PanMsAlignment(ratio, rows[0], cols[0], float(ratio_x), float(worst), tuple(notes))
