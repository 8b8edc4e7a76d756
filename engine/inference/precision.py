"""bfloat16 autocast in classification only where it keeps the classes: a predictor on a GPU
computes its first tile in float32 and in bfloat16, and keeps bfloat16 for the rest of the run
only if no pixel with data changed class on that tile; otherwise it classifies in float32."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import LcfusionError

if TYPE_CHECKING:
    from .priors import ClassPriors


@dataclass(frozen=True)
class PrecisionCheck:
    """The check tile's pixels with data, and how many of them bfloat16 gave another class."""

    pixels: int
    changed: int

    @property
    def keeps_classes(self) -> bool:
        return self.changed == 0

    def describe(self) -> str:
        if self.keeps_classes:
            return (f"bfloat16 autocast: the classes of the check tile's {self.pixels:,} pixels "
                    "are those of float32, so the map is computed in bfloat16")
        return (f"bfloat16 autocast changed the class of {self.changed:,} of the check tile's "
                f"{self.pixels:,} pixels against float32, so the map is computed in float32")


@contextlib.contextmanager
def tile_fits_gpu() -> Iterator[None]:
    """A GPU that runs out of memory inside the block is an error naming TILE_SIZE."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as exc:
        raise LcfusionError("the GPU ran out of memory; lower the tile size",
                            "TILE_SIZE") from exc


class CheckedPrecision:
    """A predictor's precision: float32 on the CPU; on a GPU bfloat16 autocast once the first
    tile has shown that it keeps the classes (`check_precision`, called by `infer` while
    `bfloat16` is None)."""

    device: torch.device
    #: True: bfloat16 autocast; False: float32; None: decided on the next tile.
    bfloat16: bool | None = False
    precision_check: PrecisionCheck | None = None
    #: The class priors the map's probabilities are shifted by (`priors.ShiftedPredictor`
    #: sets them), so that the check compares the map's classes; None: no shift.
    class_priors: ClassPriors | None = None

    def start_precision(self, device: torch.device) -> None:
        """Check bfloat16 on the first tile on a GPU; float32 elsewhere."""
        self.bfloat16 = None if device.type == "cuda" else False

    def precision(self) -> contextlib.AbstractContextManager:
        """The autocast context of the chosen precision."""
        if self.bfloat16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def computing(self) -> Iterator[None]:
        """Where the network runs on a tile: inference mode in the chosen precision; a GPU
        that runs out of memory is an error naming TILE_SIZE."""
        with tile_fits_gpu(), torch.inference_mode(), self.precision():
            yield

    def check_precision(self, infer: Callable[[Any], tuple], tile: Any) -> tuple:
        """`infer(tile)` in float32, returned; the same in bfloat16, compared with it class by
        class on the pixels with data (shifted by `class_priors`, as the map is), decides
        the precision of the following tiles."""
        self.bfloat16 = False
        full = infer(tile)
        self.bfloat16 = True
        try:
            half = infer(tile)
        finally:
            self.bfloat16 = False
        probabilities, valid = full[0], full[1]
        if not valid.any():  # nothing to compare: the next tile decides
            self.bfloat16 = None
            return full
        reduced = half[0]
        if self.class_priors is not None:
            probabilities = self.class_priors.apply(probabilities)
            reduced = self.class_priors.apply(reduced)
        changed = (probabilities.argmax(axis=0) != reduced.argmax(axis=0)) & valid
        self.precision_check = PrecisionCheck(int(np.count_nonzero(valid)),
                                              int(np.count_nonzero(changed)))
        self.bfloat16 = self.precision_check.keeps_classes
        return full
