"""FG-UNET architecture: the paper's parameter count, shapes and shared chunk weights."""

import pytest
import torch

from lcfusion.engine.families.fgunet.network import FGUNet, FGUNetConfig


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_of_the_paper():
    model = FGUNet(FGUNetConfig(chunk_channels=30, n_chunks=11, n_classes=17))
    assert count(model) == 525_997
    assert count(model.unet) == 479_296
    assert count(model.pixel) == 31_350
    assert count(model.head) == 15_351


def test_hand_computed_count_for_another_shape():
    # k = 20 input channels per chunk, 4 chunks, 5 classes: only the first convolutions
    # and the head depend on k, T and C.
    k, t, c = 20, 4, 5
    unet = (k * 9 * 32 + 32) + 9248 + 18496 + 36928 + 73856 + 147584 + 110656 + 36928 \
        + 27680 + 9248
    pixel = (k * 200 + 200) + 20100 + 5050
    head = t * (32 + 50) * c + c
    assert count(FGUNet(FGUNetConfig(k, t, c))) == unet + pixel + head


def test_output_shape_and_channel_check():
    model = FGUNet(FGUNetConfig(chunk_channels=6, n_chunks=2, n_classes=3)).eval()
    with torch.inference_mode():
        assert model(torch.zeros(2, 12, 16, 20)).shape == (2, 3, 16, 20)
    with pytest.raises(ValueError, match="expected 12 channels"):
        model(torch.zeros(1, 10, 16, 16))


def test_chunks_share_weights():
    """Swapping two chunks of the input swaps their features: the same sub-networks."""
    torch.manual_seed(0)
    model = FGUNet(FGUNetConfig(chunk_channels=3, n_chunks=2, n_classes=4)).eval()
    x = torch.rand(1, 6, 8, 8)
    swapped = torch.cat([x[:, 3:], x[:, :3]], dim=1)
    with torch.inference_mode():
        a = model.unet(x.reshape(2, 3, 8, 8))
        b = model.unet(swapped.reshape(2, 3, 8, 8))
    assert torch.allclose(a[0], b[1]) and torch.allclose(a[1], b[0])


def test_config_round_trip():
    config = FGUNetConfig(30, 11, 17)
    assert FGUNetConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize("channels_last", [False, True])
def test_head_equals_one_convolution_over_the_concatenated_chunk_features(channels_last):
    torch.manual_seed(0)
    model = FGUNet(FGUNetConfig(chunk_channels=3, n_chunks=4, n_classes=5)).eval()
    x = torch.randn(2, 12, 16, 20)
    with torch.no_grad():
        chunks = x.reshape(8, 3, 16, 20)
        features = torch.cat([model.pixel(chunks).reshape(2, -1, 16, 20),
                              model.unet(chunks).reshape(2, -1, 16, 20)], dim=1)
        expected = model.head(features)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        got = model(x)
    assert got.shape == (2, 5, 16, 20)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
