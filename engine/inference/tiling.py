"""Tiled inference: overlapping tiles, only each tile's centre kept, streamed by windows."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from rasterio.windows import Window

from ..compute.devices import autocast
from ..errors import LcfusionError
from ..io.normalization import PercentileNormalizer
from ..io.rasters import iter_windows
from ..io.series import SeriesReader


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def check_tiling(tile_size: int, margin: int, size_multiple: int) -> None:
    """Tiles must pool on the image's grid and keep a centre; clear errors otherwise."""
    if tile_size % size_multiple:
        raise LcfusionError(f"the tile size must be a multiple of {size_multiple}, got "
                            f"{tile_size}", "TILE_SIZE")
    if margin % size_multiple or margin < 0:
        raise LcfusionError(
            f"the margin must be a multiple of {size_multiple} (so that every tile pools on the "
            f"same grid), got {margin}", "MARGIN")
    if tile_size - 2 * margin < size_multiple:
        raise LcfusionError(
            f"the tile size ({tile_size}) must exceed twice the margin ({margin}); raise the "
            "tile size or lower the margin", "TILE_SIZE")


class TilePredictor(ABC):
    """Class probabilities by windows ("cores") of a grid. `load` reads and prepares a core's
    input (it runs in a reader thread, ahead of the computation); `infer` computes."""

    tile_size: int

    def cores(self, height: int, width: int) -> Iterator[Window]:
        """The windows whose probabilities are computed, covering the raster once."""
        return iter_windows(width, height, self.tile_size)

    @abstractmethod
    def load(self, reader: Any, core: Window) -> Any:
        """The input of `core`, read from `reader` and ready for `infer`."""

    @abstractmethod
    def infer(self, tile: Any) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (classes, h, w) of a loaded core and its mask of pixels with data."""

    def infer_values(self, tile: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`infer`'s probabilities and mask, with the per-pixel values (bands, h, w) the
        predictor computes beside them in the same pass (TWINNS's attention); a predictor
        without any refuses."""
        raise NotImplementedError(f"{type(self).__name__} computes no per-pixel values")

    def predict(self, reader: Any, core: Window) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (classes, h, w) of `core` and its mask of pixels with data."""
        return self.infer(self.load(reader, core))


def memory_format(device: torch.device) -> torch.memory_format:
    """Channels-last on the CPU (oneDNN's fastest convolution layout), else the default."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def inference_copy(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model for inference, in eval mode; on the CPU a channels-last copy (the caller's
    model keeps its layout, which saving needs)."""
    model.eval()
    if device.type != "cpu":
        return model
    return copy.deepcopy(model).to(memory_format=torch.channels_last)


#: The 8 symmetries of a square (dihedral group D4): quarter turns, each with and without a
#: transpose. Test-time augmentation averages a network's probabilities over them.
DIHEDRAL = tuple((turns, transpose) for turns in range(4) for transpose in (False, True))


def dihedral(tensor: torch.Tensor, turns: int, transpose: bool) -> torch.Tensor:
    """`tensor` (..., rows, cols) turned by `turns` quarter turns, then transposed."""
    turned = torch.rot90(tensor, turns, dims=(-2, -1))
    return turned.transpose(-2, -1) if transpose else turned


def undo_dihedral(tensor: torch.Tensor, turns: int, transpose: bool) -> torch.Tensor:
    """The inverse of `dihedral`."""
    tensor = tensor.transpose(-2, -1) if transpose else tensor
    return torch.rot90(tensor, -turns, dims=(-2, -1))


def dihedral_mean(probabilities: Callable[[list[torch.Tensor]], torch.Tensor],
                  tensors: list[torch.Tensor]) -> torch.Tensor:
    """Test-time augmentation: the mean of `probabilities` (a map of inputs (..., rows, cols)
    on one grid to (classes, rows, cols)) over the 8 symmetries of the inputs, each mapped
    back."""
    total = None
    for turns, transpose in DIHEDRAL:
        probs = undo_dihedral(probabilities([dihedral(t, turns, transpose) for t in tensors]),
                              turns, transpose)
        total = probs if total is None else total + probs
    return total / len(DIHEDRAL)


def balanced_steps(size: int, tile: int, margin: int, multiple: int) -> int:
    """The core side along an axis: as few tiles as `tile` allows, of equal sides (a multiple of
    `multiple`), so no last tile is computed almost empty."""
    count = -(-size // (tile - 2 * margin))
    return round_up(-(-size // count), multiple)


class TiledPredictor(TilePredictor):
    """Class probabilities by tiles of at most `tile_size` (network input side) whose outer
    `margin` pixels are discarded; edges of the raster are reflect-padded.

    Tiles along an axis have equal sides, the fewest `tile_size` allows. Tile origins fall on
    multiples of `size_multiple`, so every tile pools on the grid of the whole image. With a
    margin as wide as the network's receptive field (28 pixels for FG-UNET) the tiled result
    equals a single pass over the whole image; a narrower margin (the paper's 20) leaves small
    differences along tile seams.
    """

    def __init__(self, model: torch.nn.Module, normalizer: PercentileNormalizer,
                 device: torch.device, tile_size: int = 512, margin: int = 20,
                 tta: bool = False):
        self.size_multiple = getattr(model, "size_multiple", 1)
        check_tiling(tile_size, margin, self.size_multiple)
        self.model = inference_copy(model, device)
        self.normalizer, self.device = normalizer, device
        self.tile_size, self.margin, self.tta = tile_size, margin, tta

    def steps(self, height: int, width: int) -> tuple[int, int]:
        """Core sides (rows, columns) for a raster."""
        return (balanced_steps(height, self.tile_size, self.margin, self.size_multiple),
                balanced_steps(width, self.tile_size, self.margin, self.size_multiple))

    def cores(self, height: int, width: int) -> Iterator[Window]:
        step_h, step_w = self.steps(height, width)
        return iter_windows(width, height, step_h, step_w)

    def load(self, reader: SeriesReader, core: Window) -> tuple[torch.Tensor, np.ndarray, Window]:
        """The tile around `core` (with its margins), normalised, and the core's mask of pixels
        with any valid input."""
        series = reader.series
        step_h, step_w = self.steps(series.height, series.width)
        window = Window(int(core.col_off) - self.margin, int(core.row_off) - self.margin,
                        step_w + 2 * self.margin, step_h + 2 * self.margin)
        data = reader.read(window)
        h, w = int(core.height), int(core.width)
        valid = np.isfinite(data[:, self.margin: self.margin + h,
                                 self.margin: self.margin + w]).any(axis=0)
        return torch.from_numpy(self.normalizer.apply(data)).unsqueeze(0), valid, core

    def infer(self, tile: tuple[torch.Tensor, np.ndarray, Window]
              ) -> tuple[np.ndarray, np.ndarray]:
        """The network on the tile; the core's probabilities (classes, h, w) and its mask."""
        tensor, valid, core = tile
        h, w = int(core.height), int(core.width)

        def probabilities(x: list[torch.Tensor]) -> torch.Tensor:
            return torch.softmax(self.model(x[0])[0].float(), dim=0)

        try:
            with torch.inference_mode(), autocast(self.device):
                x = [tensor.to(self.device)]
                probs = dihedral_mean(probabilities, x) if self.tta else probabilities(x)
            probs = probs[:, self.margin: self.margin + h, self.margin: self.margin + w]
        except torch.cuda.OutOfMemoryError as exc:
            raise LcfusionError("the GPU ran out of memory; lower the tile size",
                                "TILE_SIZE") from exc
        return probs.float().cpu().numpy(), valid


def tiles_holding(cores: Iterable[Window], rows: np.ndarray, cols: np.ndarray
                  ) -> list[tuple[Window, np.ndarray]]:
    """The tiles that hold some of the pixels (rows, cols), each with the indices of its
    pixels."""
    selected = []
    for core in cores:
        r0, c0 = int(core.row_off), int(core.col_off)
        inside = ((rows >= r0) & (rows < r0 + int(core.height)) & (cols >= c0)
                  & (cols < c0 + int(core.width)))
        if inside.any():
            selected.append((core, np.flatnonzero(inside)))
    return selected
