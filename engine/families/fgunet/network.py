"""FG-UNET (Stoian et al., Remote Sensing 11(17):1986, 2019).

The input's channels are cut into `n_chunks` chunks of `chunk_channels` (a few dates of all
bands each). One U-Net and one per-pixel path, with weights shared by all chunks, process every
chunk; a 1x1 convolution maps all chunks' features to class scores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class FGUNetConfig:
    """Architecture parameters; widths and dropout default to the paper's values."""

    chunk_channels: int
    n_chunks: int
    n_classes: int
    unet_widths: tuple[int, int, int] = (32, 64, 128)
    pixel_widths: tuple[int, int, int] = (200, 100, 50)
    dropout: float = 0.2

    @property
    def in_channels(self) -> int:
        return self.chunk_channels * self.n_chunks

    def to_json(self) -> dict:
        data = asdict(self)
        data["unet_widths"] = list(self.unet_widths)
        data["pixel_widths"] = list(self.pixel_widths)
        return data

    @classmethod
    def from_json(cls, data: dict) -> FGUNetConfig:
        return cls(
            chunk_channels=int(data["chunk_channels"]),
            n_chunks=int(data["n_chunks"]),
            n_classes=int(data["n_classes"]),
            unet_widths=tuple(int(w) for w in data.get("unet_widths", (32, 64, 128))),
            pixel_widths=tuple(int(w) for w in data.get("pixel_widths", (200, 100, 50))),
            dropout=float(data.get("dropout", 0.2)),
        )


class DoubleConv(nn.Module):
    """3x3 conv, ReLU, dropout, 3x3 conv, ReLU (same padding, with bias)."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(F.relu(self.conv1(x), inplace=True))
        return F.relu(self.conv2(x), inplace=True)


class ChunkUNet(nn.Module):
    """The two-level U-Net applied to each chunk."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int], dropout: float):
        super().__init__()
        w1, w2, w3 = widths
        self.down1 = DoubleConv(in_channels, w1, dropout)
        self.down2 = DoubleConv(w1, w2, dropout)
        self.bottom = DoubleConv(w2, w3, dropout)
        self.up1 = DoubleConv(w3 + w2, w2, dropout)
        self.up2 = DoubleConv(w2 + w1, w1, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1 = self.down1(x)
        c2 = self.down2(F.max_pool2d(c1, 2))
        c3 = self.bottom(F.max_pool2d(c2, 2))
        u1 = self.up1(torch.cat([F.interpolate(c3, scale_factor=2, mode="nearest"), c2], dim=1))
        return self.up2(torch.cat([F.interpolate(u1, scale_factor=2, mode="nearest"), c1], dim=1))


class PixelPath(nn.Module):
    """Per-pixel 1x1 convolutions: k -> 200 -> 100 (dropout) -> 50 (dropout)."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int], dropout: float):
        super().__init__()
        w1, w2, w3 = widths
        self.conv1 = nn.Conv2d(in_channels, w1, 1)
        self.conv2 = nn.Conv2d(w1, w2, 1)
        self.conv3 = nn.Conv2d(w2, w3, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x), inplace=True)
        x = self.drop(F.relu(self.conv2(x), inplace=True))
        return self.drop(F.relu(self.conv3(x), inplace=True))


class FGUNet(nn.Module):
    """Class scores (logits) per pixel; input height and width must be multiples of 4."""

    #: Input sides must be multiples of this (two 2x2 poolings).
    size_multiple = 4

    def __init__(self, config: FGUNetConfig):
        super().__init__()
        self.config = config
        self.unet = ChunkUNet(config.chunk_channels, config.unet_widths, config.dropout)
        self.pixel = PixelPath(config.chunk_channels, config.pixel_widths, config.dropout)
        features = config.n_chunks * (config.unet_widths[0] + config.pixel_widths[2])
        self.head = nn.Conv2d(features, config.n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        k, n = self.config.chunk_channels, self.config.n_chunks
        if channels != k * n:
            raise ValueError(f"expected {k * n} channels, got {channels}")
        chunks = x.reshape(batch * n, k, height, width)
        pixel = self._head_share(self.pixel(chunks), 0)
        unet = self._head_share(self.unet(chunks), n * self.config.pixel_widths[2])
        scores = (pixel + unet).reshape(batch, height, width, -1).permute(0, 3, 1, 2)
        return scores + self.head.bias.view(1, -1, 1, 1)

    def _head_share(self, features: torch.Tensor, start: int) -> torch.Tensor:
        """The head's 1x1 convolution over every chunk's `features` (B * n, f, H, W), whose
        head weights begin at input channel `start`, summed over the chunks: (B, H * W, C).
        Equal to the head over the chunks' features concatenated, without copying them into
        one tensor (a matrix product per chunk on the pixels' feature vectors)."""
        n = self.config.n_chunks
        count, channels, height, width = features.shape
        weight = self.head.weight[:, start: start + n * channels, 0, 0]
        weight = weight.reshape(-1, n, channels).permute(1, 2, 0)  # (n, f, C)
        pixels = features.permute(0, 2, 3, 1).reshape(count // n, n, height * width, channels)
        return torch.matmul(pixels, weight).sum(dim=1)
