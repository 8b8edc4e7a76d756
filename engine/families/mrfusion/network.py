"""MRFusion (Gaetano, Ienco, Ose, Cresson, Remote Sensing 10(11):1746, 2018).

Two convolutional branches, one per resolution: a PAN patch of d x d pixels and the MS patch of
d/r x d/r pixels over the same ground. Each branch ends with a global max over space; the two
feature vectors (after dropout) are concatenated and a linear layer gives the class scores.

Besides the per-patch `forward`, the model computes the same answer for every pixel of a tile
at once (`dense_logits`): pooling with stride 1 and dilated convolutions after it, then a
windowed max, share the convolutional work between the overlapping patches.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

BRANCHES = ("both", "pan", "ms")


@dataclass(frozen=True)
class MRFusionConfig:
    """Architecture parameters; widths and dropout default to the paper's values.

    `branches` selects the paper's network (``both``) or a one-branch ablation (``pan`` or
    ``ms``).
    """

    ms_channels: int
    ratio: int
    patch_size: int
    n_classes: int
    branches: str = "both"
    pan_widths: tuple[int, int, int] = (128, 256, 512)
    ms_widths: tuple[int, int, int] = (256, 512, 1024)
    dropout: float = 0.4

    @property
    def ms_patch_size(self) -> int:
        return self.patch_size // self.ratio

    @property
    def uses_pan(self) -> bool:
        return self.branches in ("both", "pan")

    @property
    def uses_ms(self) -> bool:
        return self.branches in ("both", "ms")

    def to_json(self) -> dict:
        data = asdict(self)
        data["pan_widths"] = list(self.pan_widths)
        data["ms_widths"] = list(self.ms_widths)
        return data

    @classmethod
    def from_json(cls, data: dict) -> MRFusionConfig:
        return cls(
            ms_channels=int(data["ms_channels"]),
            ratio=int(data["ratio"]),
            patch_size=int(data["patch_size"]),
            n_classes=int(data["n_classes"]),
            branches=str(data.get("branches", "both")),
            pan_widths=tuple(int(w) for w in data.get("pan_widths", (128, 256, 512))),
            ms_widths=tuple(int(w) for w in data.get("ms_widths", (256, 512, 1024))),
            dropout=float(data.get("dropout", 0.4)),
        )


def pan_final_size(patch_size: int) -> int:
    """Side of the PAN branch's last feature map: three valid 3x3 convs, two 2x2 poolings."""
    size = patch_size
    for pooled in (True, True, False):
        size -= 2
        if pooled:
            size //= 2
    return size


def ms_final_size(ms_patch_size: int) -> int:
    """Side of the MS branch's last feature map: three valid 3x3 convs."""
    return ms_patch_size - 6


def smallest_patch(ratio: int, branches: str = "both") -> int:
    """The smallest PAN patch side both used branches accept at this ratio."""
    size = ratio
    while True:
        pan_ok = branches == "ms" or pan_final_size(size) >= 1
        ms_ok = branches == "pan" or ms_final_size(size // ratio) >= 1
        if pan_ok and ms_ok:
            return size
        size += ratio


def default_patch_size(ratio: int) -> int:
    """The PAN patch side used when none is given: the paper's 32 at ratio 4 (an MS patch of
    8 x 8); at other ratios the smallest multiple of the ratio of at least 20 PAN pixels that
    the network takes, so the MS patch stays near the paper's (at ratio 2, 20 x 20 with an MS
    patch of 10 x 10, where 32 would make it 16 x 16 and the MS branch 4 times as costly)."""
    if ratio == 4:
        return 32
    side = max(20, smallest_patch(ratio))
    return -(-side // ratio) * ratio


def window_max(x: torch.Tensor, size: int, dilation: int) -> torch.Tensor:
    """The max over every `size` x `size` window (stride 1, `dilation`), as a max over rows then
    over columns: 2 * size comparisons per output instead of size ** 2."""
    x = F.max_pool2d(x, (size, 1), stride=1, dilation=(dilation, 1))
    return F.max_pool2d(x, (1, size), stride=1, dilation=(1, dilation))


class ConvReluBN(nn.Module):
    """A valid 3x3 convolution, ReLU, then batch normalisation (the published order)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, dilation: int = 1) -> torch.Tensor:
        y = F.conv2d(x, self.conv.weight, self.conv.bias, dilation=dilation)
        return self.bn(F.relu(y, inplace=True))


class PanBranch(nn.Module):
    """conv 128 -> pool 2 -> conv 256 -> pool 2 -> conv 512 -> global max."""

    def __init__(self, widths: tuple[int, int, int], patch_size: int):
        super().__init__()
        self.layers = nn.ModuleList(
            ConvReluBN(a, b) for a, b in zip((1, *widths[:2]), widths, strict=True))
        self.final_size = pan_final_size(patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < 2:
                x = F.max_pool2d(x, 2)
        return x.amax(dim=(2, 3))

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """Features of the patch starting at every position (stride 1) of `x`."""
        dilation = 1
        for i, layer in enumerate(self.layers):
            x = layer(x, dilation)
            if i < 2:
                x = F.max_pool2d(x, 2, stride=1, dilation=dilation)
                dilation *= 2
        return window_max(x, self.final_size, dilation)


class MSBranch(nn.Module):
    """conv 256 -> conv 512 -> conv 1024 -> global max (no pooling)."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int], ms_patch_size: int):
        super().__init__()
        self.layers = nn.ModuleList(
            ConvReluBN(a, b) for a, b in zip((in_channels, *widths[:2]), widths, strict=True))
        self.final_size = ms_final_size(ms_patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x.amax(dim=(2, 3))

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return window_max(x, self.final_size, 1)


class MRFusion(nn.Module):
    """Class scores from a PAN patch (B, 1, d, d) and an MS patch (B, c, d/r, d/r)."""

    def __init__(self, config: MRFusionConfig):
        super().__init__()
        self.config = config
        features = 0
        self.pan = self.ms = None
        if config.uses_pan:
            self.pan = PanBranch(config.pan_widths, config.patch_size)
            features += config.pan_widths[-1]
        if config.uses_ms:
            self.ms = MSBranch(config.ms_channels, config.ms_widths, config.ms_patch_size)
            features += config.ms_widths[-1]
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(features, config.n_classes)

    def forward(self, pan: torch.Tensor, ms: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.pan is not None:
            parts.append(self.dropout(self.pan(pan)))
        if self.ms is not None:
            parts.append(self.dropout(self.ms(ms)))
        return self.classifier(torch.cat(parts, dim=1))

    def _head(self, features: torch.Tensor, start: int) -> torch.Tensor:
        """The classifier's share for one branch's dense features (B, F, h, w) -> (B, C, h, w);
        `start` is where that branch's features begin in the classifier's input."""
        weight = self.classifier.weight[:, start: start + features.shape[1]]
        return F.conv2d(features, weight[:, :, None, None])

    def dense_logits(self, pan: torch.Tensor, ms: torch.Tensor, ms_rows: torch.Tensor,
                     ms_cols: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Class scores (B, C, height, width) of the patches starting at every PAN position.

        `pan` holds the PAN pixels of all those patches (at least height + d - 1 rows); `ms`
        the MS pixels of all their MS patches; `ms_rows` / `ms_cols` give, per output row /
        column, the MS patch's start in `ms`.
        """
        logits = self.classifier.bias.view(1, -1, 1, 1)
        start = 0
        if self.pan is not None:
            features = self.pan.dense(pan)[:, :, :height, :width]
            logits = logits + self._head(features, 0)
            start = features.shape[1]
        if self.ms is not None:
            scores = self._head(self.ms.dense(ms), start)
            logits = logits + scores[:, :, ms_rows][:, :, :, ms_cols]
        return logits
