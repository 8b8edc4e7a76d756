"""Tiled inference: overlapping tiles, only each tile's centre kept, streamed by windows."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from rasterio.windows import Window

from ..io.normalization import PercentileNormalizer
from ..io.series import SeriesReader
from .precision import CheckedPrecision
from .tiles import DIHEDRAL, MarginTiling, TilePredictor


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


class TiledPredictor(CheckedPrecision, MarginTiling, TilePredictor):
    """Class probabilities of a PyTorch network by `MarginTiling`'s tiles.

    With a margin as wide as the network's receptive field (28 pixels for FG-UNET) the tiled
    result equals a single pass over the whole image; a narrower margin (the paper's 20) leaves
    small differences along tile seams.

    Its activations (tens of MB a tile) are mapped on their own (`mapped_buffers`): FG-UNET's
    peak over 16 times the rows of a one-tile scene fell from 1.2 to 1.12 times the scene's,
    at the same speed (glibc's dynamic threshold put activations under 32 MB in the heap).
    """

    mapped_buffers = 8 << 20

    def __init__(self, model: torch.nn.Module, normalizer: PercentileNormalizer,
                 device: torch.device, tile_size: int = 512, margin: int = 20,
                 tta: bool = False):
        super().__init__(getattr(model, "size_multiple", 1), normalizer, tile_size, margin)
        self.model = inference_copy(model, device)
        self.device, self.tta = device, tta
        self.start_precision(device)

    def load(self, reader: SeriesReader, core: Window) -> tuple[torch.Tensor, np.ndarray, Window]:
        """The tile around `core` (with its margins), normalised, and the core's mask of pixels
        with any valid input."""
        data, valid, core = self.read_tile(reader, core)
        return torch.from_numpy(data), valid, core

    def infer(self, tile: tuple[torch.Tensor, np.ndarray, Window]
              ) -> tuple[np.ndarray, np.ndarray]:
        """The network on the tile; the core's probabilities (classes, h, w) and its mask."""
        if self.bfloat16 is None:
            return self.check_precision(self.infer, tile)
        tensor, valid, core = tile

        def probabilities(x: list[torch.Tensor]) -> torch.Tensor:
            return torch.softmax(self.model(x[0])[0].float(), dim=0)

        with self.computing():
            x = [tensor.to(self.device)]
            probs = dihedral_mean(probabilities, x) if self.tta else probabilities(x)
        return self.core_of(probs, core).float().cpu().numpy(), valid
