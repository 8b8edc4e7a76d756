"""bfloat16 autocast in classification only where the check tile keeps its classes, and a GPU
out of memory on a tile named as TILE_SIZE. There is no GPU here, so the check runs with the
CPU's bfloat16 autocast (`bfloat16 = None` asks for it, as a predictor on a GPU starts): a real
reduced-precision pass of the trained FG-UNET, whose head is changed so that the classes either
cannot change or must change."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from helpers import RecordingReporter
from rasterio.windows import Window

from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.families.fgunet.commands import load_fgunet
from lcfusion.engine.families.mapsteps import report_precision
from lcfusion.engine.inference.precision import PrecisionCheck
from lcfusion.engine.inference.priors import ClassPriors, with_priors
from lcfusion.engine.inference.tiling import TiledPredictor
from lcfusion.engine.io.series import SeriesSpec, TimeSeries

CPU = torch.device("cpu")


def predictor_with_head(trained, near_tie: bool) -> TiledPredictor:
    """The trained FG-UNET with its head changed (64-pixel tiles): class 0 leads every other by
    30, which no rounding changes, or (`near_tie`) class 1's weights are class 0's times 1.001
    and the other classes' zero, so that wherever class 0 scores above 0 class 1 wins by 0.1 %
    in float32, less than bfloat16 resolves (0.4 %), whatever the trained weights."""
    _, model, _, normalizer = load_fgunet(trained[0], CPU)
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.head.bias.zero_()
        if near_tie:
            model.head.weight[2:] = 0.0
            model.head.weight[1] = model.head.weight[0] * 1.001
        else:
            model.head.bias[0] = 30.0
    return TiledPredictor(model, normalizer, CPU, tile_size=64, margin=12)


def run(predictor: TiledPredictor, reader, cores: list[Window], bfloat16: bool | None
        ) -> list[tuple[np.ndarray, np.ndarray]]:
    predictor.bfloat16 = bfloat16
    return [predictor.predict(reader, core) for core in cores]


@pytest.mark.parametrize("keeps", [True, False],
                         ids=["a clear lead keeps bfloat16", "near ties go back to float32"])
def test_the_first_tile_decides_the_precision_of_the_rest(scene, trained, keeps):
    predictor = predictor_with_head(trained, near_tie=not keeps)
    series = TimeSeries(SeriesSpec(tuple(str(p) for p in scene.s2_paths)))
    cores = list(predictor.cores(series.height, series.width))[:2]
    with series.open() as reader:
        full = run(predictor, reader, cores, False)
        half = run(predictor, reader, cores, True)
        checked = run(predictor, reader, cores, None)
    (probs, valid), _ = full
    changed = int(((probs.argmax(0) != half[0][0].argmax(0)) & valid).sum())
    assert (changed == 0) == keeps, "the changed head gives the intended case"
    assert predictor.precision_check == PrecisionCheck(int(valid.sum()), changed)
    assert predictor.bfloat16 is keeps
    np.testing.assert_array_equal(checked[0][0], full[0][0])  # the check tile: float32's
    expected = half if keeps else full  # the next tile: in the chosen precision
    np.testing.assert_array_equal(checked[1][0], expected[1][0])
    assert not np.array_equal(half[1][0], full[1][0]), "bfloat16 really ran"

    log = RecordingReporter()
    report_precision(predictor, log)
    assert log.text() == (
        f"bfloat16 autocast: the classes of the check tile's {valid.sum():,} pixels are those "
        "of float32, so the map is computed in bfloat16" if keeps else
        f"bfloat16 autocast changed the class of {changed:,} of the check tile's "
        f"{valid.sum():,} pixels against float32, so the map is computed in float32")


def test_the_check_compares_the_classes_the_class_priors_give(scene, trained):
    """With class priors the map's classes are those of the shifted probabilities: the near
    ties between classes 0 and 1 that bfloat16 flips are no ties once class 0's probability
    counts 100 times, so the check counts the shifted classes that changed, not the raw."""
    inner = predictor_with_head(trained, near_tie=True)
    priors = ClassPriors(1.0, (math.log(100),) + (0.0,) * 7)
    shifted = with_priors(inner, priors)
    series = TimeSeries(SeriesSpec(tuple(str(p) for p in scene.s2_paths)))
    core = next(inner.cores(series.height, series.width))
    with series.open() as reader:
        (full, valid), = run(inner, reader, [core], False)
        (half, _), = run(inner, reader, [core], True)
        inner.bfloat16 = None
        checked, _ = shifted.predict(reader, core)
    raw = int(((full.argmax(0) != half.argmax(0)) & valid).sum())
    by_hand = int(((priors.apply(full).argmax(0) != priors.apply(half).argmax(0))
                   & valid).sum())
    assert raw > 0 and by_hand < raw, "the priors resolve the near ties bfloat16 flips"
    assert inner.precision_check == PrecisionCheck(int(valid.sum()), by_hand)
    assert inner.bfloat16 is (by_hand == 0)
    np.testing.assert_allclose(checked, priors.apply(full), rtol=1e-6)
    # Unwrapped again (priors that shift nothing), it ranks by its own probabilities.
    assert with_priors(inner, ClassPriors(0.0, priors.log_ratio)) is inner
    assert inner.class_priors is None


def test_the_cpu_classifies_in_float32_without_a_check(trained):
    _, model, _, normalizer = load_fgunet(trained[0], CPU)
    predictor = TiledPredictor(model, normalizer, CPU)
    assert predictor.bfloat16 is False and predictor.precision_check is None
    log = RecordingReporter()
    report_precision(predictor, log)
    assert log.text() == ""


def test_a_gpu_out_of_memory_on_a_tile_names_the_tile_size(scene, trained, monkeypatch):
    predictor = predictor_with_head(trained, near_tie=False)

    def out_of_memory(*inputs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(predictor, "model", out_of_memory)
    series = TimeSeries(SeriesSpec(tuple(str(p) for p in scene.s2_paths)))
    with series.open() as reader, pytest.raises(LcfusionError) as error:
        predictor.predict(reader, next(predictor.cores(series.height, series.width)))
    assert error.value.parameter == "TILE_SIZE"
    assert error.value.message == "the GPU ran out of memory; lower the tile size"
