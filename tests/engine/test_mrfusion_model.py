"""MRFusion network: parameter counts by hand, sizes, and dense = per-patch evaluation."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from lcfusion.engine.families.mrfusion.network import (
    MRFusion,
    MRFusionConfig,
    default_patch_size,
    ms_final_size,
    pan_final_size,
    smallest_patch,
    window_max,
)


def conv(cin: int, cout: int) -> int:
    """A 3x3 convolution with bias followed by batch norm (weight and bias)."""
    return cin * 9 * cout + cout + 2 * cout


# c = 4 MS bands, C = 13 classes (MODELS.md: about 7.4 M parameters).
PAN_BRANCH = conv(1, 128) + conv(128, 256) + conv(256, 512)
MS_BRANCH = conv(4, 256) + conv(256, 512) + conv(512, 1024)
HEAD = (512 + 1024) * 13 + 13


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_count_matches_the_hand_count():
    assert (PAN_BRANCH, MS_BRANCH, HEAD) == (1_478_400, 5_912_832, 19_981)
    model = MRFusion(MRFusionConfig(ms_channels=4, ratio=4, patch_size=32, n_classes=13))
    assert count(model) == PAN_BRANCH + MS_BRANCH + HEAD == 7_411_213


@pytest.mark.parametrize("branches, expected", [
    ("pan", PAN_BRANCH + 512 * 13 + 13),
    ("ms", MS_BRANCH + 1024 * 13 + 13),
])
def test_ablations_drop_a_branch(branches, expected):
    config = MRFusionConfig(ms_channels=4, ratio=4, patch_size=32, n_classes=13,
                            branches=branches)
    assert count(MRFusion(config)) == expected


def test_feature_map_sizes_follow_the_paper():
    assert pan_final_size(32) == 4  # 32 -> 30 -> 15 -> 13 -> 6 -> 4
    assert ms_final_size(8) == 2  # 8 -> 6 -> 4 -> 2
    assert smallest_patch(4) == 28  # the MS patch needs 7 pixels
    assert smallest_patch(2) == 18  # the PAN branch needs 18 pixels
    assert smallest_patch(4, "pan") == 20


def randomized(config: MRFusionConfig, seed: int = 0) -> MRFusion:
    """A model in eval mode whose batch norms are not the identity."""
    torch.manual_seed(seed)
    model = MRFusion(config)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(-1.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


def test_default_patch_size_keeps_the_papers_at_ratio_4_and_a_small_ms_patch_elsewhere():
    sizes = {ratio: default_patch_size(ratio) for ratio in range(1, 9)}
    assert sizes == {1: 20, 2: 20, 3: 21, 4: 32, 5: 35, 6: 42, 7: 49, 8: 56}
    for ratio, size in sizes.items():
        assert size % ratio == 0 and size >= smallest_patch(ratio)
        model = MRFusion(MRFusionConfig(ms_channels=2, ratio=ratio, patch_size=size,
                                        n_classes=3)).eval()
        pan, ms = torch.zeros(1, 1, size, size), torch.zeros(1, 2, size // ratio, size // ratio)
        assert model(pan, ms).shape == (1, 3)


@pytest.mark.parametrize("ratio, patch, branches", [
    (4, 32, "both"), (2, 32, "both"), (3, 30, "both"), (2, 22, "pan"), (4, 28, "ms"),
])
def test_dense_logits_equal_patch_by_patch(ratio, patch, branches):
    config = MRFusionConfig(ms_channels=3, ratio=ratio, patch_size=patch, n_classes=5,
                            branches=branches)
    model = randomized(config)
    h, w, m = 13, 17, config.ms_patch_size
    generator = torch.Generator().manual_seed(1)
    pan = torch.rand(1, 1, h + patch - 1, w + patch - 1, generator=generator)
    rows = torch.tensor([(2 * i + ratio) // (2 * ratio) for i in range(h)])
    cols = torch.tensor([(2 * j + ratio) // (2 * ratio) for j in range(w)])
    ms = torch.rand(1, 3, int(rows[-1]) + m, int(cols[-1]) + m, generator=generator)
    with torch.inference_mode():
        dense = model.dense_logits(pan, ms, rows, cols, h, w)[0]
        for i, j in [(0, 0), (h - 1, w - 1), (5, 11), (12, 3), (7, 7)]:
            single = model(pan[:, :, i: i + patch, j: j + patch],
                           ms[:, :, rows[i]: rows[i] + m, cols[j]: cols[j] + m])[0]
            assert torch.allclose(dense[:, i, j], single, atol=1e-5)


@pytest.mark.parametrize("size, dilation", [(2, 1), (3, 2), (4, 4)])
def test_window_max_is_max_pooling(size, dilation):
    x = torch.randn(2, 3, 23, 19)
    torch.testing.assert_close(window_max(x, size, dilation),
                               F.max_pool2d(x, size, stride=1, dilation=dilation))
