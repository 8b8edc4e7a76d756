"""TWINNS (Ienco, Interdonato, Gaetano, Ho Tong Minh, ISPRS J. Photogramm. 158:11-22, 2019).

Per source (Sentinel-1, Sentinel-2) two branches over a small patch of the time series: a CNN
on all dates stacked as channels, and a ConvGRU over the dates whose outputs are pooled by
attention (v = tanh(H W + b), lambda = softmax(v u) over time, feature = sum lambda_t h_t).
The four feature vectors are concatenated for the fusion classifier; an auxiliary linear
classifier on each of them adds alpha times its loss to the fusion loss.

The paper gives no layer widths; these are choices: CNN branches of three 3x3 convolutions
(64, 128, 128; batch norm, ReLU, dropout) averaged over the patch; ConvGRU with 32 hidden
channels and 3x3 gates, each date's state averaged over the patch before the attention; a
fusion classifier with one hidden layer of 256; dropout 0.5 (the group's related code).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

SOURCES = ("both", "s1", "s2")
BRANCHES = ("both", "cnn", "rnn")


@dataclass(frozen=True)
class TWINNSConfig:
    """Dates and channels per date of each source, classes, and the ablation switches."""

    s1_dates: int
    s1_channels: int
    s2_dates: int
    s2_channels: int
    n_classes: int
    patch_size: int = 5
    sources: str = "both"
    branches: str = "both"
    auxiliary: bool = True
    cnn_widths: tuple[int, int, int] = (64, 128, 128)
    rnn_hidden: int = 32
    fusion_hidden: int = 256
    dropout: float = 0.5

    def used_sources(self) -> tuple[str, ...]:
        return ("s1", "s2") if self.sources == "both" else (self.sources,)

    def used_branches(self) -> tuple[str, ...]:
        return ("cnn", "rnn") if self.branches == "both" else (self.branches,)

    def to_json(self) -> dict:
        data = asdict(self)
        data["cnn_widths"] = list(self.cnn_widths)
        return data

    @classmethod
    def from_json(cls, data: dict) -> TWINNSConfig:
        values = dict(data)
        values["cnn_widths"] = tuple(int(w) for w in values.get("cnn_widths", (64, 128, 128)))
        return cls(**values)


class TWINNSOutput(NamedTuple):
    """Fusion scores (B, C), auxiliary scores (B, k, C) or None, attention per source (B, T)."""

    logits: torch.Tensor
    auxiliary: torch.Tensor | None
    attention: dict[str, torch.Tensor]


class CNNBranch(nn.Module):
    """Three 3x3 convolutions (same padding, batch norm, ReLU) over all dates stacked as
    channels, then the average over the patch."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int], dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        for a, b in zip((in_channels, *widths[:2]), widths, strict=True):
            layers += [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
                       nn.Dropout(dropout)]
        self.layers = nn.Sequential(*layers)
        self.features = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).mean(dim=(2, 3))


class ConvGRUCell(nn.Module):
    """A GRU whose gates are 3x3 convolutions over the patch."""

    def __init__(self, in_channels: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(in_channels + hidden, 2 * hidden, 3, padding=1)
        self.candidate = nn.Conv2d(in_channels + hidden, hidden, 3, padding=1)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        update, reset = torch.sigmoid(self.gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        candidate = torch.tanh(self.candidate(torch.cat([x, reset * h], dim=1)))
        return (1 - update) * h + update * candidate


class RNNBranch(nn.Module):
    """ConvGRU over the dates; each date's output averaged over the patch and pooled over
    time by attention."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.channels = channels
        self.cell = ConvGRUCell(channels, hidden)
        self.project = nn.Linear(hidden, hidden)
        self.context = nn.Parameter(torch.randn(hidden) / hidden ** 0.5)
        self.features = hidden

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, _, height, width = x.shape
        dates = x.view(batch, -1, self.channels, height, width)
        h = x.new_zeros(batch, self.cell.hidden, height, width)
        outputs = []
        for t in range(dates.shape[1]):
            h = self.cell(dates[:, t], h)
            outputs.append(h.mean(dim=(2, 3)))
        states = torch.stack(outputs, dim=1)  # (B, T, H)
        scores = torch.tanh(self.project(states)) @ self.context  # (B, T)
        attention = torch.softmax(scores, dim=1)
        return (attention.unsqueeze(2) * states).sum(dim=1), attention


class TWINNS(nn.Module):
    """Class scores from S1 patches (B, T1*C1, p, p) and S2 patches (B, T2*C2, p, p)."""

    def __init__(self, config: TWINNSConfig):
        super().__init__()
        self.config = config
        self.cnn = nn.ModuleDict()
        self.rnn = nn.ModuleDict()
        shapes = {"s1": (config.s1_dates, config.s1_channels),
                  "s2": (config.s2_dates, config.s2_channels)}
        sizes = []
        for source in config.used_sources():
            dates, channels = shapes[source]
            if "cnn" in config.used_branches():
                self.cnn[source] = CNNBranch(dates * channels, config.cnn_widths,
                                             config.dropout)
                sizes.append(self.cnn[source].features)
            if "rnn" in config.used_branches():
                self.rnn[source] = RNNBranch(channels, config.rnn_hidden)
                sizes.append(self.rnn[source].features)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Sequential(
            nn.Linear(sum(sizes), config.fusion_hidden), nn.ReLU(), nn.Dropout(config.dropout),
            nn.Linear(config.fusion_hidden, config.n_classes))
        self.auxiliary = nn.ModuleList(
            nn.Linear(size, config.n_classes) for size in sizes
        ) if config.auxiliary and len(sizes) > 1 else None

    def forward(self, s1: torch.Tensor, s2: torch.Tensor) -> TWINNSOutput:
        inputs = {"s1": s1, "s2": s2}
        features, attention = [], {}
        for source in self.config.used_sources():
            if source in self.cnn:
                features.append(self.cnn[source](inputs[source]))
            if source in self.rnn:
                feature, attention[source] = self.rnn[source](inputs[source])
                features.append(feature)
        logits = self.classifier(self.dropout(torch.cat(features, dim=1)))
        auxiliary = (torch.stack([head(f) for head, f in zip(self.auxiliary, features,
                                                              strict=True)], dim=1)
                     if self.auxiliary is not None else None)
        return TWINNSOutput(logits, auxiliary, attention)


class TWINNSLoss(nn.Module):
    """L = L_fusion + alpha * (sum of the auxiliary classifiers' losses)."""

    def __init__(self, alpha: float, label_smoothing: float = 0.0):
        super().__init__()
        self.alpha, self.label_smoothing = alpha, label_smoothing

    def forward(self, output: TWINNSOutput, target: torch.Tensor) -> torch.Tensor:
        smoothing = self.label_smoothing
        loss = F.cross_entropy(output.logits, target, label_smoothing=smoothing)
        if output.auxiliary is not None and self.alpha:
            for k in range(output.auxiliary.shape[1]):
                loss = loss + self.alpha * F.cross_entropy(output.auxiliary[:, k], target,
                                                           label_smoothing=smoothing)
        return loss
