"""An ensemble of networks of one architecture (the models of repeated splits) that classifies
as one: its class probabilities are the mean of its members'."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..modelfile.schema import MAX_REPEATS
from ..training.loop import logits_of


def log_mean_probabilities(outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """log(mean of the softmax over dimension 1): scores whose softmax is the members' mean
    probability and whose argmax is the class it ranks first."""
    stacked = torch.stack([F.log_softmax(output.float(), dim=1) for output in outputs])
    return torch.logsumexp(stacked, dim=0) - math.log(len(outputs))


class Ensemble(nn.Module):
    """Members of one architecture; every method a predictor calls (`forward`, and
    `dense_logits` where the members have it) returns the log of the members' mean class
    probabilities, so a predictor's softmax gives that mean. The tensors of member i are named
    ``members.<i>.<name>`` in its state (`modelfile.schema.MEMBER_TENSOR`)."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not 2 <= len(members) <= MAX_REPEATS:
            raise ValueError(f"an ensemble has 2 to {MAX_REPEATS} members, not {len(members)}")
        self.members = nn.ModuleList(members)

    @property
    def config(self) -> Any:
        """The members' architecture (the first member's: they share it)."""
        return self.members[0].config

    @property
    def size_multiple(self) -> int:
        return getattr(self.members[0], "size_multiple", 1)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return log_mean_probabilities([logits_of(member(*inputs)) for member in self.members])

    def dense_logits(self, *inputs: Any) -> torch.Tensor:
        return log_mean_probabilities([member.dense_logits(*inputs) for member in self.members])


def network_from_state(metadata: dict, state: dict[str, torch.Tensor],
                       build: Callable[[], nn.Module]) -> nn.Module:
    """The network of a model file's weights: one `build()` network, or with the metadata entry
    ``ensemble`` an `Ensemble` of that many; the weights must fit exactly."""
    entry = metadata.get("ensemble")
    network = build() if entry is None else Ensemble([build() for _ in range(entry["members"])])
    network.load_state_dict(state)
    return network


def ensemble_state(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The weights of an ensemble file: each member's tensors under ``members.<i>.``."""
    return {f"members.{index}.{name}": tensor for index, state in enumerate(states)
            for name, tensor in state.items()}
