"""Training shared by the deep families: the loop's stopping rules (epochs are an upper bound,
early stopping on the validation loss, a time limit checked before each epoch) and the
class- and polygon-balanced draw of training pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import RecordingReporter, fgunet_train_job, twinns_train_job
from torch import nn

from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.families.fgunet.commands import FGUNetTrainConfig, train_fgunet
from lcfusion.engine.families.jobsteps import PixelSet
from lcfusion.engine.families.twinns.commands import TWINNSTrainConfig, train_twinns
from lcfusion.engine.jobs import Job
from lcfusion.engine.modelfile.header import read_metadata
from lcfusion.engine.training import loop
from lcfusion.engine.training.loop import FitConfig, fit
from lcfusion.engine.training.sampling import (
    ChannelPerturbation,
    ClassBalancedPatchSampler,
    polygon_balanced,
)

CPU = torch.device("cpu")


def batches(label: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(label)
    return [(torch.randn(16, 4, generator=generator), torch.full((16,), label))
            for _ in range(3)]


def train(config: FitConfig, on_epoch=lambda epoch: None) -> tuple:
    """A linear model taught class 0 and validated on class 1: the validation loss rises from
    the first epoch on."""
    torch.manual_seed(0)
    model = nn.Linear(4, 2)

    def train_batches(epoch: int):
        on_epoch(epoch)
        return batches(0)

    reporter = RecordingReporter()
    result = fit(model, train_batches, 3, lambda: batches(1), nn.CrossEntropyLoss(), config,
                 CPU, reporter)
    return result, reporter


def test_training_stops_after_the_patience_without_a_lower_validation_loss():
    result, reporter = train(FitConfig(epochs=30, learning_rate=0.05, early_stopping=3,
                                       mixed_precision=False))
    assert result.best_epoch == 1
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    assert ("stopped after epoch 4 of 30: the validation loss has not fallen for 3 epochs "
            "(early stopping after 3)") in reporter.lines
    assert "kept the weights of epoch 1 (lowest validation loss" in reporter.text()


def test_without_early_stopping_every_epoch_runs():
    result, reporter = train(FitConfig(epochs=6, learning_rate=0.05, mixed_precision=False))
    assert len(result.history) == 6 and result.best_epoch == 1
    assert "stopped after" not in reporter.text()


class DtypeRecorder(nn.Linear):
    """A linear layer that records the dtype of each output it computes while training."""

    def __init__(self):
        super().__init__(4, 2)
        self.seen: set[torch.dtype] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if self.training:
            self.seen.add(out.dtype)
        return out


def test_training_runs_in_bfloat16_exactly_where_the_cpu_computes_it_natively():
    torch.manual_seed(0)
    model = DtypeRecorder()
    reporter = RecordingReporter()
    fit(model, lambda epoch: batches(0), 3, lambda: batches(1), nn.CrossEntropyLoss(),
        FitConfig(epochs=2, learning_rate=0.05), CPU, reporter)
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert model.seen == ({torch.bfloat16} if native else {torch.float32})
    assert model.weight.dtype == torch.float32
    said = "training in bfloat16 autocast (weights and optimiser in float32)" in reporter.text()
    assert said == native
    model = DtypeRecorder()
    fit(model, lambda epoch: batches(0), 3, None, nn.CrossEntropyLoss(),
        FitConfig(epochs=1, learning_rate=0.05, mixed_precision=False), CPU,
        RecordingReporter())
    assert model.seen == {torch.float32}


def test_batch_norm_statistics_are_the_average_of_the_last_epochs_batches():
    # Inputs centred on 50: after these 6 steps PyTorch's exponential average (momentum 0.1)
    # would still say 50 x (1 - 0.9^6) = 23.4, and validation would see inputs shifted by 27.
    generator = torch.Generator().manual_seed(3)
    data = [(torch.randn(16, 4, generator=generator) * 2 + 50, torch.full((16,), k % 2))
            for k in range(3)]
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 2))
    fit(model, lambda epoch: data, 3, lambda: data, nn.CrossEntropyLoss(),
        FitConfig(epochs=2, learning_rate=0.01, mixed_precision=False), CPU,
        RecordingReporter())
    expected = torch.stack([x.mean(0) for x, _ in data]).mean(0)
    torch.testing.assert_close(model[0].running_mean, expected)
    assert model[0].num_batches_tracked == 3


class Clock:
    """Stands in for the loop's `time` module: each epoch takes 40 seconds."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


@pytest.mark.parametrize(("epoch_seconds", "limit", "stopped"), [
    # 2 minutes: epochs end at 40 s, 80 s, 120 s; a fourth would end at 160 s.
    (40, 2, "the time limit of 2 minutes (2.0 minutes so far)"),
    # 6 seconds, said in seconds: epochs end at 2, 4 and 6 s; a fourth would end at 8 s.
    (2, 0.1, "the time limit of 0.1 minutes (6 s so far)")])
def test_no_epoch_starts_that_would_end_past_the_time_limit(monkeypatch, epoch_seconds, limit,
                                                            stopped):
    clock = Clock()
    monkeypatch.setattr(loop, "time", clock)

    def epoch_takes_its_seconds(epoch: int) -> None:
        clock.now += epoch_seconds

    result, reporter = train(FitConfig(epochs=30, learning_rate=0.05, time_limit=limit,
                                       mixed_precision=False), epoch_takes_its_seconds)
    assert len(result.history) == 3
    assert f"stopped after epoch 3 of 30: another epoch would end past {stopped}" in (
        reporter.lines)


@pytest.mark.parametrize("setting", ["early_stopping", "time_limit"])
def test_a_negative_stopping_setting_is_refused_naming_its_parameter(setting):
    with pytest.raises(LcfusionError) as raised:
        FGUNetTrainConfig(**{setting: -1})
    assert raised.value.parameter == setting.upper()
    assert "cannot be negative, got -1" in raised.value.message


def skewed_pixels() -> PixelSet:
    """Class 0: polygon 1 of 90 pixels and polygon 2 of 10; class 1: polygon 3 of 10 pixels,
    on a row of a 1 x 110 image."""
    objects = np.repeat([1, 2, 3], [90, 10, 10])
    classes = np.repeat([0, 0, 1], [90, 10, 10])
    return PixelSet(np.zeros(110, dtype=np.int64), np.arange(110), classes, objects)


def polygon_shares(pixels: PixelSet, picked: np.ndarray) -> list[float]:
    return [float(np.mean(pixels.objects[picked] == polygon)) for polygon in (1, 2, 3)]


def test_polygon_balanced_draws_each_polygon_of_a_class_equally_often():
    pixels = skewed_pixels()
    rng = np.random.default_rng(0)
    by_polygon = pixels.balanced(40_000, rng, "polygon")
    by_class = pixels.balanced(40_000, rng, "class")
    # A class, then a polygon of it, then a pixel: 1/2 x 1/2 for each polygon of class 0.
    assert polygon_shares(pixels, by_polygon.cols) == pytest.approx([0.25, 0.25, 0.5], abs=0.01)
    # A class, then a pixel: polygon 1 has 90 of class 0's 100 pixels.
    assert polygon_shares(pixels, by_class.cols) == pytest.approx([0.45, 0.05, 0.5], abs=0.01)
    # Within a polygon, every pixel alike (10 pixels of polygon 2, about 1,000 draws each).
    counts = np.bincount(by_polygon.cols[by_polygon.objects == 2] - 90, minlength=10)
    assert counts.min() > 0.8 * counts.mean() and counts.max() < 1.2 * counts.mean()


def test_the_patch_sampler_draws_around_polygons_equally_with_objects():
    pixels = skewed_pixels()
    sampler = ClassBalancedPatchSampler(pixels.rows, pixels.cols, pixels.classes, 1, 0, 1, 110,
                                        objects=pixels.objects)
    corners = sampler.sample(20_000, np.random.default_rng(1))
    assert polygon_shares(pixels, corners[:, 1]) == pytest.approx([0.25, 0.25, 0.5], abs=0.015)
    assert np.array_equal(np.sort(polygon_balanced(pixels.classes, pixels.objects, 5,
                                                   np.random.default_rng(2))),
                          np.sort(polygon_balanced(pixels.classes, pixels.objects, 5,
                                                   np.random.default_rng(2))))


def test_fgunet_stops_at_its_time_limit_and_records_the_settings(tmp_path, scene):
    model = tmp_path / "model.lcfusion"
    job = fgunet_train_job(tmp_path / "job", scene, model, epochs=40, patches_per_epoch=16,
                           validation_patches=4, threads=1, time_limit=0.0001,
                           sampling="polygon")
    reporter = RecordingReporter()
    train_fgunet(Job.load(job), reporter)
    assert ("stopped after epoch 1 of 40: another epoch would end past the time limit of "
            "0.0001 minutes") in reporter.text()
    training = read_metadata(model)["training"]
    assert len(training["history"]) == 1
    assert training["settings"]["sampling"] == "polygon"
    assert training["settings"]["time_limit"] == 0.0001


def test_the_learning_rate_warms_up_linearly_then_follows_the_plateau_rule():
    result, _ = train(FitConfig(epochs=4, learning_rate=0.04, warmup_epochs=2,
                                mixed_precision=False))
    # 3 steps per epoch: the last step of epoch 1 is step 3 of 6 (half the rate).
    assert [row["learning_rate"] for row in result.history[:2]] == pytest.approx([0.02, 0.04])


def test_the_cosine_schedule_falls_from_the_full_rate_to_zero_over_the_epochs():
    # The validation loss rises from epoch 1, which would cut a plateau rate after 3 epochs;
    # the cosine ignores it. The rate logged is the last step's: step 3k of 12 after warm-up.
    result, _ = train(FitConfig(epochs=5, learning_rate=0.04, warmup_epochs=1,
                                schedule="cosine", plateau_patience=0, mixed_precision=False))
    expected = [0.04] + [0.02 * (1 + np.cos(np.pi * (3 * k - 1) / 12)) for k in (1, 2, 3, 4)]
    assert [row["learning_rate"] for row in result.history] == pytest.approx(expected)


def test_the_cosine_ends_with_the_time_limit_when_it_comes_first():
    # 10 of 100 steps, then 90 s of a 2-minute limit: the larger part of the budget counts.
    by_steps, by_time = 0.05 * (1 + np.cos(0.1 * np.pi)), 0.05 * (1 + np.cos(0.75 * np.pi))
    assert loop.cosine_rate(0.1, 10, 100, 0.0) == pytest.approx(by_steps)
    assert loop.cosine_rate(0.1, 10, 100, 90.0 / 120) == pytest.approx(by_time)
    assert loop.cosine_rate(0.1, 10, 100, 500.0 / 120) == 0.0


def test_the_time_limit_binds_the_cosine_only_where_the_pace_after_the_first_epoch_would():
    """A first epoch of 10 s for 10 steps (the warm-up), then 0.1 s a step: 1,000 steps end
    at 12 + 0.1 x 970 = 109 s, inside a 3-minute limit, so the limit does not bind (the pace
    since the start, 0.4 s a step, would have projected 400 s). At 0.5 s a step after the
    first epoch they would end at 20 + 0.5 x 970 = 505 s: then the limit binds, and its part
    at step 40 is (20 + 0.5 x 10) / 180."""
    first = (10.0, 10)
    assert loop.time_limit_pace(12.0, 30, 1000, first, 3.0) is None
    assert loop.time_limit_pace(20.0, 30, 1000, first, 3.0) == pytest.approx(0.5)
    assert loop.time_limit_used(20.0, 30, 0.5, 40, 3.0) == pytest.approx(25 / 180)
    # Without a limit, within the first epoch or before its end is known: the steps alone.
    assert loop.time_limit_pace(20.0, 30, 1000, first, 0.0) is None
    assert loop.time_limit_pace(10.0, 10, 1000, first, 3.0) is None
    assert loop.time_limit_pace(10.0, 10, 1000, None, 3.0) is None


def cosine(steps_part: float) -> float:
    return 0.02 * (1 + np.cos(np.pi * steps_part))


def test_a_slow_first_epoch_leaves_the_cosine_to_the_steps(monkeypatch):
    """A first epoch of 50 s, then 1 s each: 10 epochs end at 59 s, inside 2 minutes, so the
    rate of every step is the cosine over the 30 steps alone, whatever the clock said."""
    clock = Clock()
    monkeypatch.setattr(loop, "time", clock)

    def epoch_takes(epoch: int) -> None:
        clock.now += 50 if epoch == 1 else 1

    result, _ = train(FitConfig(epochs=10, learning_rate=0.04, schedule="cosine",
                                time_limit=2, mixed_precision=False), epoch_takes)
    assert [row["learning_rate"] for row in result.history] == pytest.approx(
        [cosine((3 * k - 1) / 30) for k in range(1, 11)])


def test_a_binding_time_limit_drives_the_cosine_from_the_agreed_pace(monkeypatch):
    """Epochs of 20 s (the clock moves as each starts) under a 1-minute limit: after epoch 2
    the pace since the first epoch, 20 s / 3 steps, would end 30 steps at 200 s, so epoch 3's
    steps 6, 7 and 8 count (40 + 20 / 3 x (step - 6)) / 60 of the limit; the rate logged is
    the last step's. Epoch 3 is the last: a fourth would end past the limit."""
    clock = Clock()
    monkeypatch.setattr(loop, "time", clock)

    def epoch_takes(epoch: int) -> None:
        clock.now += 20

    result, _ = train(FitConfig(epochs=10, learning_rate=0.04, schedule="cosine",
                                time_limit=1, mixed_precision=False), epoch_takes)
    assert [row["learning_rate"] for row in result.history] == pytest.approx(
        [cosine(2 / 30), cosine(5 / 30), cosine((40 + 20 / 3 * 2) / 60)])


def test_adamw_weight_decay_shrinks_the_weights():
    norms = {}
    for optimizer, decay in (("adam", 0.0), ("adamw", 0.5)):
        torch.manual_seed(0)
        model = nn.Linear(4, 2)
        fit(model, lambda epoch: batches(0), 3, None, nn.CrossEntropyLoss(),
            FitConfig(epochs=5, learning_rate=0.05, optimizer=optimizer, weight_decay=decay,
                      mixed_precision=False), CPU, RecordingReporter())
        norms[optimizer] = float(model.weight.detach().norm())
    assert norms["adamw"] < 0.9 * norms["adam"]


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("optimizer", "sgd", "unknown optimizer 'sgd'; use one of adam, adamw"),
    ("label_smoothing", 1.0, "must lie in [0, 1), got 1.0"),
    ("sampling", "pixel", "unknown sampling 'pixel'; use one of class, polygon"),
    ("warmup_epochs", -2, "cannot be negative, got -2"),
    ("schedule", "step", "unknown schedule 'step'; use one of plateau, cosine"),
])
def test_loop_settings_are_checked_naming_their_parameter(setting, value, message):
    with pytest.raises(LcfusionError) as raised:
        FGUNetTrainConfig(**{setting: value})
    assert raised.value.parameter == setting.upper()
    assert message in raised.value.message


def test_channel_jitter_changes_gain_and_offset_per_channel_only():
    x = np.stack([np.full((4, 4), 1.0, np.float32), np.full((4, 4), 3.0, np.float32)])
    out = ChannelPerturbation(0.1, 0.0, 2).apply(x.copy(), np.random.default_rng(1))
    rng = np.random.default_rng(1)
    gain = 1 + 0.1 * rng.standard_normal(2, dtype=np.float32)
    offset = 0.1 * rng.standard_normal(2, dtype=np.float32)
    assert np.allclose(out[:, 0, 0], [1.0 * gain[0] + offset[0], 3.0 * gain[1] + offset[1]],
                       atol=1e-6)
    assert np.ptp(out, axis=(1, 2)).max() == 0  # the same change over a channel's pixels


def test_date_dropout_zeroes_whole_dates_and_never_every_date():
    rng = np.random.default_rng(0)
    dropout = ChannelPerturbation(0.0, 0.5, 3)
    counts = np.zeros(4)
    for _ in range(400):
        out = dropout.apply(np.ones((12, 2, 2), np.float32), rng)
        per_date = out.reshape(4, 3, 2, 2)
        kept = per_date.reshape(4, -1).all(axis=1)
        assert np.array_equal(kept, per_date.reshape(4, -1).any(axis=1))  # whole dates
        assert kept.any()
        counts += ~kept
    assert np.allclose(counts / 400, 0.5 - 0.5 ** 4 / 4, atol=0.06)


def test_fgunet_records_its_value_augmentation(tmp_path, scene):
    model = tmp_path / "model.lcfusion"
    path = fgunet_train_job(tmp_path, scene, model, epochs=1, patches_per_epoch=8,
                            validation_patches=4, jitter=0.05, date_dropout=0.2)
    train_fgunet(Job.load(path), RecordingReporter())
    settings = read_metadata(model)["training"]["settings"]
    assert settings["jitter"] == 0.05 and settings["date_dropout"] == 0.2
    with pytest.raises(LcfusionError) as error:
        FGUNetTrainConfig(date_dropout=1.0)
    assert error.value.parameter == "DATE_DROPOUT"


def test_twinns_drops_dates_of_each_source_and_records_it(tmp_path, scene):
    model = tmp_path / "model.lcfusion"
    path = twinns_train_job(tmp_path, scene, model, epochs=1, samples_per_epoch=64,
                            validation_samples=16, jitter=0.02, date_dropout=0.3)
    train_twinns(Job.load(path), RecordingReporter())
    settings = read_metadata(model)["training"]["settings"]
    assert settings["jitter"] == 0.02 and settings["date_dropout"] == 0.3
    with pytest.raises(LcfusionError) as error:
        TWINNSTrainConfig(jitter=-0.1)
    assert error.value.parameter == "JITTER"


class Scripted(nn.Module):
    """Answers each epoch's scripted logits: epoch 1 gets half the validation pixels right
    with little confidence, epoch 2 three quarters but one very confidently wrong."""

    LOGITS = {1: [[0.2, 0.0], [0.2, 0.0], [0.0, 0.2], [0.0, 0.2]],
              2: [[5.0, 0.0], [5.0, 0.0], [5.0, 0.0], [0.0, 20.0]]}

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.epoch = 1

    def forward(self, x):
        return torch.tensor(self.LOGITS[self.epoch]) + 0 * self.weight


@pytest.mark.parametrize(("monitor", "kept", "message"), [
    ("loss", 1, "kept the weights of epoch 1 (lowest validation loss"),
    ("accuracy", 2, "kept the weights of epoch 2 (highest validation OA 0.7500)")])
def test_the_monitored_quantity_picks_the_kept_epoch(monitor, kept, message):
    model = Scripted()
    data = [(torch.zeros(4, 1), torch.zeros(4, dtype=torch.int64))]

    def train_batches(epoch):
        model.epoch = epoch
        return data

    reporter = RecordingReporter()
    result = fit(model, train_batches, 1, lambda: data, nn.CrossEntropyLoss(),
                 FitConfig(epochs=2, learning_rate=0.01, mixed_precision=False,
                           monitor=monitor), CPU, reporter)
    assert result.best_epoch == kept
    assert [row["val_accuracy"] for row in result.history] == [0.5, 0.75]
    assert message in reporter.text()


@pytest.mark.parametrize(("keep", "kept", "last", "message"), [
    ("best", 1, None, "kept the weights of epoch 1 (lowest validation loss"),
    ("last", 2, None, "kept the weights of the last epoch, 2"),
    ("best-or-last", 1, 2, "the best epoch is 1 (lowest validation loss 0.")])
def test_the_last_epochs_weights_are_kept_when_asked(keep, kept, last, message):
    """Each epoch sets the weight to its number: the model leaves `fit` with the kept
    epoch's, which is the lowest validation loss's (epoch 1) or the last's; "best-or-last"
    returns the last epoch's beside the best's, for the choice on the validation polygons."""
    model = Scripted()
    data = [(torch.zeros(4, 1), torch.zeros(4, dtype=torch.int64))]

    def train_batches(epoch):
        model.epoch = epoch
        with torch.no_grad():
            model.weight.fill_(epoch)
        return data

    reporter = RecordingReporter()
    result = fit(model, train_batches, 1, lambda: data, nn.CrossEntropyLoss(),
                 FitConfig(epochs=2, learning_rate=0.01, mixed_precision=False, keep=keep),
                 CPU, reporter)
    assert result.best_epoch == kept
    assert model.weight.item() == result.best_state["weight"].item() == kept
    assert (None if result.last_state is None else result.last_state["weight"].item()) == last
    assert message in reporter.text()
    # Only a choice to come says so; the epoch it names is then the best one, not yet kept.
    assert ("kept the last epoch's weights too (epoch 2), to choose between the two on the "
            "validation polygons" in reporter.text()) == (keep == "best-or-last")
    assert ("kept the weights of epoch" in reporter.text()) == (keep == "best")


def test_best_or_last_has_nothing_to_choose_when_the_last_epoch_is_the_best():
    scripted = Scripted()
    scripted.LOGITS = {1: [[0.0, 1.0]] * 4, 2: [[1.0, 0.0]] * 4}
    data = [(torch.zeros(4, 1), torch.zeros(4, dtype=torch.int64))]

    def improving(epoch):
        scripted.epoch = epoch
        return data

    reporter = RecordingReporter()
    result = fit(scripted, improving, 1, lambda: data, nn.CrossEntropyLoss(),
                 FitConfig(epochs=2, learning_rate=0.01, mixed_precision=False,
                           keep="best-or-last"), CPU, reporter)
    assert result.best_epoch == result.last_epoch == 2 and result.last_state is None
    assert "kept the weights of epoch 2 (lowest validation loss" in reporter.text()


def test_keeping_the_last_epoch_refuses_early_stopping():
    with pytest.raises(LcfusionError) as error:
        FGUNetTrainConfig(keep="last", early_stopping=4)
    assert error.value.parameter == "EARLY_STOPPING"
    assert "set the early stopping patience to 0, or keep the best epoch" in str(error.value)
    with pytest.raises(LcfusionError) as error:
        FGUNetTrainConfig(keep="first")
    assert error.value.parameter == "KEEP"
