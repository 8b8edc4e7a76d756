"""How a PAN grid and an MS grid fit together: an integer ratio and a whole-pixel offset.

Pure Python on geotransforms and sizes (no raster library), so that the plugin can run the same
check in its dialogs before anything heavy starts.

Real products are not exact: the ratio of the pixel sizes is close to, not equal to, an integer,
and origins differ by a fraction of a pixel. The MS grid is accepted when every MS pixel edge
that falls on the PAN extent lies within ``ALIGNMENT_TOLERANCE`` PAN pixels of a PAN pixel edge;
the MS grid is then taken as snapped onto the PAN grid (nothing is resampled) and
`PanMsAlignment.notes` says what was reconciled.

Some products are offset by design: Landsat's PAN and MS pixel centres meet at the scene's
upper-left corner, so the grids are half a PAN pixel apart and the PAN has one row and column
fewer than twice the MS. On request (`plan_ms_alignment`), the MS is resampled onto a grid whose
pixels are whole blocks of PAN pixels, keeping only the MS pixels that lie within the MS data,
and the PAN is cropped to the ground those pixels cover, when it overhangs the MS data by less
than one MS pixel on each side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import LcfusionError
from ..wording import counted

#: Largest distance, in PAN pixels, between an MS pixel edge and the nearest PAN pixel edge,
#: anywhere over the PAN extent.
ALIGNMENT_TOLERANCE = 0.25
#: How the MS may be put onto the PAN grid (the ``align_ms`` setting): not at all (a pair off
#: the grid is refused), or resampled with GDAL's bilinear or nearest-neighbour method.
ALIGN_METHODS = ("none", "bilinear", "nearest")
#: Fraction of a PAN pixel by which an MS pixel may stick out of the MS data.
_EDGE_SLACK = 1e-6

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


@dataclass(frozen=True)
class AxisPlan:
    """Along one axis: the PAN pixels kept (`pan_start` .. `pan_stop` - 1) and the aligned MS
    pixels (`ms_count` of them, the first starting at PAN pixel `ms_start`), with the shift
    of the MS pixel edges in PAN pixels (0 when the MS is kept as it is)."""

    pan_start: int
    pan_stop: int
    ms_start: int
    ms_count: int
    shift: float


@dataclass(frozen=True)
class MsAlignmentPlan:
    """What aligning the MS onto the PAN grid does: the PAN window kept, the aligned MS grid
    (None when the MS already fits the PAN grid) and log lines saying what changed."""

    pan_window: tuple[int, int, int, int]  # column, row, width, height
    pan_size: tuple[int, int]
    ms_transform: Transform | None
    ms_size: tuple[int, int]
    notes: tuple[str, ...]

    @property
    def crops_pan(self) -> bool:
        return self.pan_window[2:] != self.pan_size


def _plan_axis(pan_origin: float, pan_step: float, pan_size: int, ms_origin: float,
               ms_step: float, ms_size: int, ratio: int, fits: bool, name: str) -> AxisPlan:
    """The aligned MS pixels and the PAN pixels they cover along one axis (see
    `plan_ms_alignment`); `fits` keeps the MS pixels where they are."""
    offset = (ms_origin - pan_origin) / pan_step
    data_stop = offset + ms_size * ms_step / pan_step
    if fits:
        start, first, count, shift = round(offset), 0, ms_size, 0.0
    else:
        start = math.floor(offset + 0.5)
        first = math.ceil((offset - _EDGE_SLACK - start) / ratio)
        count = math.floor((data_stop + _EDGE_SLACK - start) / ratio) - first
        shift = start - offset
        start += first * ratio
    overhang = max(0.0, offset), max(0.0, pan_size - data_stop)
    if max(overhang) >= ratio - _EDGE_SLACK or count < 1:
        raise LcfusionError(
            f"the MS image does not cover the whole PAN image: the PAN reaches "
            f"{max(overhang):.1f} PAN pixels beyond it along the {name}, one MS pixel ({ratio} "
            "PAN pixels) or more; clip the PAN layer to the MS extent (Raster > Extraction > "
            "Clip Raster by Extent) or use an MS image that covers it", "MS")
    return AxisPlan(max(0, start), min(pan_size, start + count * ratio), start, count, shift)


def plan_ms_alignment(pan: Transform, pan_size: tuple[int, int], ms: Transform,
                      ms_size: tuple[int, int], method: str) -> MsAlignmentPlan:
    """How to put the MS onto the PAN grid with `method` (one of `ALIGN_METHODS` but
    ``none``): an MS within `ALIGNMENT_TOLERANCE` of the PAN grid is kept as it is, any other
    is resampled onto the grid of whole PAN-pixel blocks nearest to it, keeping the MS pixels
    that lie within its data; the PAN is cropped to the ground the MS pixels cover when it
    overhangs the MS data by less than one MS pixel (more is refused, naming ``MS``)."""
    ratio = pixel_ratio(pan, ms)
    fits = max(_axis(pan[0], pan[1], pan_size[0], ms[0], ms[1], ms_size[0], ratio)[1],
               _axis(pan[3], pan[5], pan_size[1], ms[3], ms[5], ms_size[1], ratio)[1]
               ) <= ALIGNMENT_TOLERANCE
    cols = _plan_axis(pan[0], pan[1], pan_size[0], ms[0], ms[1], ms_size[0], ratio, fits,
                      "columns")
    rows = _plan_axis(pan[3], pan[5], pan_size[1], ms[3], ms[5], ms_size[1], ratio, fits,
                      "rows")
    window = (cols.pan_start, rows.pan_start, cols.pan_stop - cols.pan_start,
              rows.pan_stop - rows.pan_start)
    notes = []
    transform = None
    if not fits:
        transform = (pan[0] + cols.ms_start * pan[1], ratio * pan[1], 0.0,
                     pan[3] + rows.ms_start * pan[5], 0.0, ratio * pan[5])
        notes.append(
            f"MS resampled ({method}) onto a grid of {ratio} x {ratio} PAN pixels aligned with "
            f"the PAN grid: its pixel edges moved by {cols.shift * pan[1]:+.6g} in x and "
            f"{rows.shift * pan[5]:+.6g} in y (map units; {abs(cols.shift):.2f} and "
            f"{abs(rows.shift):.2f} PAN pixels); {cols.ms_count} x {rows.ms_count} MS pixels "
            f"kept of {ms_size[0]} x {ms_size[1]}")
    cropped = {"left": window[0], "top": window[1],
               "right": pan_size[0] - window[0] - window[2],
               "bottom": pan_size[1] - window[1] - window[3]}
    if any(cropped.values()):
        notes.append(
            f"PAN cropped to the ground the MS covers, {window[2]} x {window[3]} of "
            f"{pan_size[0]} x {pan_size[1]} pixels (" + ", ".join(
                f"{count} {'column' if side in ('left', 'right') else 'row'}"
                f"{'s' if count > 1 else ''} at the {side}" for side, count in cropped.items()
                if count) + "); the class map covers the cropped PAN")
    return MsAlignmentPlan(window, pan_size, transform, (cols.ms_count, rows.ms_count),
                           tuple(notes))


def pixel_ratio(pan: Transform, ms: Transform, tolerance: float = ALIGNMENT_TOLERANCE) -> int:
    """The whole number of PAN pixels across an MS pixel; refuses a swapped, non-square or
    flipped pair (naming ``PAN`` or ``MS``)."""
    pan_w, pan_h = abs(pan[1]), abs(pan[5])
    ms_w, ms_h = abs(ms[1]), abs(ms[5])
    if pan_w <= 0 or pan_h <= 0 or ms_w <= 0 or ms_h <= 0:
        raise LcfusionError("a raster has a zero pixel size; check its georeferencing", "MS")
    ratio_x, ratio_y = ms_w / pan_w, ms_h / pan_h
    if ratio_x < 1 - tolerance or ratio_y < 1 - tolerance:
        raise LcfusionError(
            f"the MS pixels ({ms_w:g} x {ms_h:g}) are smaller than the PAN pixels ({pan_w:g} x "
            f"{pan_h:g}); the PAN and MS layers seem swapped", "PAN")
    if round(ratio_x) != round(ratio_y):
        raise LcfusionError(
            f"the MS pixels are not square multiples of the PAN pixels (ratio {ratio_x:.4f} "
            f"across, {ratio_y:.4f} down); resample the MS to a pixel size that is the same whole "
            "multiple of the PAN pixel size in both directions", "MS")
    if (pan[1] > 0) != (ms[1] > 0) or (pan[5] > 0) != (ms[5] > 0):
        raise LcfusionError("the PAN and MS grids run in opposite directions (one is flipped); "
                            "warp both to north-up grids", "MS")
    return round((ratio_x + ratio_y) / 2)


def align_pan_ms(pan: Transform, pan_size: tuple[int, int], ms: Transform,
                 ms_size: tuple[int, int], tolerance: float = ALIGNMENT_TOLERANCE
                 ) -> PanMsAlignment:
    """Check and describe how the MS grid sits on the PAN grid.

    `pan` and `ms` are GDAL geotransforms of north-up grids, sizes are (width, height), both
    in one CRS (the caller checks it). Errors name the ``MS`` parameter, or ``PAN`` when the
    PAN is the coarser of the two.
    """
    ratio = pixel_ratio(pan, ms, tolerance)
    pan_w = abs(pan[1])
    ratio_x, ratio_y = abs(ms[1]) / pan_w, abs(ms[5]) / abs(pan[5])
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
            fix = ("co-register the pair, resample the MS onto a grid whose origin lies on a "
                   "PAN pixel corner, or set [ALIGN_MS] to let lcfusion resample it (as for "
                   "Landsat, whose PAN and MS grids are half a PAN pixel apart)")
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
            "(Raster > Extraction > Clip Raster by Extent), use an MS image that covers it, or "
            "set [ALIGN_MS] to crop a PAN that overhangs the MS by less than one MS pixel",
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
        notes.append(f"{counted(extra_cols, 'MS column')} and {counted(extra_rows, 'MS row')} "
                     "outside the PAN extent are not used")
    return PanMsAlignment(ratio, rows[0], cols[0], float(ratio_x), float(worst), tuple(notes))
