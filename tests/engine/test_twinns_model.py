"""TWINNS network: branches per source, attention as specified, the loss, the ablations."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from lcfusion.engine.families.twinns.network import TWINNS, RNNBranch, TWINNSConfig, TWINNSLoss

S1, S2 = (12, 2), (9, 16)


def config(**changes) -> TWINNSConfig:
    return TWINNSConfig(s1_dates=S1[0], s1_channels=S1[1], s2_dates=S2[0], s2_channels=S2[1],
                        n_classes=5, **changes)


def inputs(batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(batch, S1[0] * S1[1], 5, 5, generator=generator),
            torch.rand(batch, S2[0] * S2[1], 5, 5, generator=generator))


def test_full_model_has_four_branches_and_four_auxiliary_classifiers():
    model = TWINNS(config()).eval()
    out = model(*inputs())
    assert out.logits.shape == (3, 5)
    assert out.auxiliary.shape == (3, 4, 5)
    assert {k: tuple(v.shape) for k, v in out.attention.items()} == {"s1": (3, 12),
                                                                     "s2": (3, 9)}
    for weights in out.attention.values():
        assert torch.allclose(weights.sum(dim=1), torch.ones(3))
    # Fusion input: CNN (128) + ConvGRU (32) features of each source.
    assert model.classifier[0].in_features == 2 * (128 + 32)


def test_attention_follows_the_formula():
    torch.manual_seed(1)
    branch = RNNBranch(channels=2, hidden=4).eval()
    x = torch.rand(2, 3 * 2, 5, 5)
    feature, attention = branch(x)
    h = torch.zeros(2, 4, 5, 5)
    states = []
    for t in range(3):
        h = branch.cell(x[:, 2 * t: 2 * t + 2], h)
        states.append(h.mean(dim=(2, 3)))
    states = torch.stack(states, dim=1)
    v = torch.tanh(states @ branch.project.weight.T + branch.project.bias)
    expected = torch.softmax(v @ branch.context, dim=1)
    assert torch.allclose(attention, expected, atol=1e-6)
    assert torch.allclose(feature, (expected.unsqueeze(2) * states).sum(dim=1), atol=1e-6)


def test_loss_adds_alpha_times_the_auxiliary_losses():
    model = TWINNS(config()).eval()
    out = model(*inputs())
    target = torch.tensor([0, 3, 4])
    expected = F.cross_entropy(out.logits, target) + 0.3 * sum(
        F.cross_entropy(out.auxiliary[:, k], target) for k in range(4))
    assert TWINNSLoss(0.3)(out, target).item() == pytest.approx(expected.item(), rel=1e-6)
    assert TWINNSLoss(0.0)(out, target).item() == pytest.approx(
        F.cross_entropy(out.logits, target).item(), rel=1e-6)


@pytest.mark.parametrize("changes, features, auxiliary, attention", [
    ({"sources": "s1"}, 128 + 32, 2, {"s1"}),
    ({"sources": "s2"}, 128 + 32, 2, {"s2"}),
    ({"branches": "cnn"}, 2 * 128, 2, set()),
    ({"branches": "rnn"}, 2 * 32, 2, {"s1", "s2"}),
    ({"auxiliary": False}, 2 * (128 + 32), None, {"s1", "s2"}),
    ({"sources": "s2", "branches": "rnn"}, 32, None, {"s2"}),
])
def test_ablations(changes, features, auxiliary, attention):
    model = TWINNS(config(**changes)).eval()
    out = model(*inputs())
    assert model.classifier[0].in_features == features
    assert (None if out.auxiliary is None else out.auxiliary.shape[1]) == auxiliary
    assert set(out.attention) == attention
    if changes.get("sources") == "s1":
        assert all("s2" not in name for name, _ in model.named_parameters())
