"""The training loop shared by the deep families: Adam, reduce-on-plateau, best weights, and
when several ranks train together, DistributedDataParallel with checkpoints every epoch."""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..compute.devices import autocast, autocast_dtype
from ..compute.distributed import Ranks
from ..errors import LcfusionError
from ..jobs import check_settings
from ..progress import Reporter
from ..wording import counted
from .choices import KEEPS, MONITORS, OPTIMIZERS, PRIOR_SETTINGS, SAMPLINGS, SCHEDULES

#: Inputs (one tensor, or a tuple of tensors for a multi-input model) and labels.
Batch = tuple[torch.Tensor | tuple[torch.Tensor, ...], torch.Tensor]
CHECKPOINT_VERSION = 1


def _inputs(x: torch.Tensor | tuple[torch.Tensor, ...], device: torch.device
            ) -> tuple[torch.Tensor, ...]:
    return tuple(t.to(device) for t in x) if isinstance(x, tuple | list) else (x.to(device),)




@dataclass(frozen=True)
class LoopSettings:
    """The job settings of the training loop that every deep family shares (its training
    settings extend them): when to stop, how pixels are drawn, the optimiser, the warm-up and
    label smoothing. Every one is recorded in the model file with the family's settings."""

    early_stopping: int = 0
    time_limit: float = 0.0
    sampling: str = "class"
    optimizer: str = "adam"
    weight_decay: float = 0.0
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    monitor: str = "loss"
    schedule: str = "plateau"
    keep: str = "best"
    class_priors: str = "validation"
    #: bfloat16 autocast where the device computes it natively (a GPU, a CPU with AVX-512
    #: BF16 or AMX); false trains in float32 everywhere.
    mixed_precision: bool = True

    def __post_init__(self) -> None:
        check_settings(self, non_negative=("early_stopping", "time_limit", "weight_decay",
                                           "warmup_epochs", "label_smoothing"),
                       choices={"sampling": SAMPLINGS, "optimizer": OPTIMIZERS,
                                "monitor": MONITORS, "schedule": SCHEDULES,
                                "keep": KEEPS, "class_priors": PRIOR_SETTINGS})
        if self.label_smoothing >= 1:
            raise LcfusionError(f"must lie in [0, 1), got {self.label_smoothing}",
                                "LABEL_SMOOTHING")
        if self.keep == "last" and self.early_stopping:
            raise LcfusionError(
                "keeping the last epoch's weights needs a training that runs to its end: "
                f"early stopping after {counted(self.early_stopping, 'epoch')} without a "
                "better validation score would keep weights that many epochs past the best; "
                "set the early stopping patience to 0, or keep the best epoch",
                "EARLY_STOPPING")


@dataclass(frozen=True)
class FitConfig:
    """`epochs` is an upper bound: the run stops early after `early_stopping` epochs without a
    lower validation loss (0: never), and before an epoch that would end past `time_limit`
    minutes (0: no limit)."""

    epochs: int
    learning_rate: float
    plateau_factor: float = 0.2
    plateau_patience: int = 3
    mixed_precision: bool = True
    early_stopping: int = 0
    time_limit: float = 0.0
    optimizer: str = "adam"
    weight_decay: float = 0.0
    warmup_epochs: int = 0
    monitor: str = "loss"
    schedule: str = "plateau"
    keep: str = "best"

    @classmethod
    def of(cls, settings: Any) -> FitConfig:
        """The loop's part of a family's training settings (a `LoopSettings`)."""
        return cls(settings.epochs, settings.learning_rate, settings.plateau_factor,
                   settings.plateau_patience, early_stopping=settings.early_stopping,
                   time_limit=settings.time_limit, optimizer=settings.optimizer,
                   weight_decay=settings.weight_decay, warmup_epochs=settings.warmup_epochs,
                   monitor=settings.monitor, schedule=settings.schedule, keep=settings.keep,
                   mixed_precision=settings.mixed_precision)


@dataclass
class FitResult:
    """The weights kept (of the best validation score, or training loss without validation,
    or of the last epoch) and their epoch. With keep "best-or-last", the last epoch's weights
    too, when they are another epoch's, for `choose_kept_weights` to choose between; `kept`
    records that choice once it is made."""

    best_state: dict[str, torch.Tensor]
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int = 0
    samples_per_second: float = 0.0
    last_state: dict[str, torch.Tensor] | None = None
    last_epoch: int = 0
    kept: dict | None = None


@dataclass
class RunContext:
    """How a run is spread and kept: the ranks, the numpy generator that draws the training
    samples (saved with each checkpoint), and the checkpoint file (None: no checkpoints)."""

    ranks: Ranks = field(default_factory=Ranks)
    rng: np.random.Generator | None = None
    checkpoint: Path | None = None


def scaled_learning_rate(rate: float, ranks: int) -> float:
    """The linear scaling rule: each step of `ranks` ranks sees `ranks` times the samples of a
    single-rank step, so the learning rate is multiplied by `ranks`."""
    return rate * ranks


def logits_of(output: Any) -> torch.Tensor:
    """The class scores of a model output (a tensor, or a named tuple with `logits`, as a
    model with auxiliary parts gives)."""
    return output.logits if hasattr(output, "logits") else output


def _correct(output: Any, y: torch.Tensor) -> tuple[float, float]:
    """Right and labelled pixels of a batch (labels below 0 are unlabelled)."""
    labelled = y >= 0
    right = (logits_of(output).argmax(dim=1) == y) & labelled
    return float(right.sum()), float(labelled.sum())


def evaluate(model: nn.Module, batches: Iterable[Batch], loss_fn: Callable,
             device: torch.device, ranks: Ranks | None = None,
             mixed_precision: bool = False) -> tuple[float, float]:
    """Mean loss and overall accuracy over the batches; with several ranks each takes every
    n-th batch and the sums are added over the ranks, so every rank gets the same values."""
    ranks = ranks or Ranks()
    model.eval()
    total, count, right, labelled = 0.0, 0, 0.0, 0.0
    with torch.inference_mode(), autocast(device, mixed_precision):
        for index, (x, y) in enumerate(batches):
            if index % ranks.size != ranks.rank:
                continue
            y = y.to(device)
            output = model(*_inputs(x, device))
            total += float(loss_fn(output, y)) * y.shape[0]
            count += y.shape[0]
            batch_right, batch_labelled = _correct(output, y)
            right, labelled = right + batch_right, labelled + batch_labelled
    total, count, right, labelled = ranks.all_sum([total, float(count), right, labelled])
    return total / max(count, 1), right / max(labelled, 1)


def _save_checkpoint(path: Path, state: dict) -> None:
    temporary = path.with_name(f".{path.name}.partial")
    torch.save(state, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint's state, loaded without unpickling code (``weights_only``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is reported the same
        raise LcfusionError(f"the checkpoint {path} cannot be read ({exc}); delete it to "
                            "start the training afresh", "COMPUTE") from exc
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise LcfusionError(f"{path} is not an lcfusion checkpoint; delete it to start the "
                            "training afresh", "COMPUTE")
    return state


def _warm_up(optimizer: torch.optim.Optimizer, rate: float, config: FitConfig, step: int,
             steps_per_epoch: int) -> None:
    """The learning rate of a warm-up step: rising linearly to `rate` over the warm-up epochs."""
    fraction = min(1.0, step / (config.warmup_epochs * max(steps_per_epoch, 1)))
    _set_rate(optimizer, rate * fraction)


def _set_rate(optimizer: torch.optim.Optimizer, rate: float) -> None:
    """Every parameter group's learning rate set to `rate`."""
    for group in optimizer.param_groups:
        group["lr"] = rate


def cosine_rate(rate: float, steps_done: int, total_steps: int, time_used: float) -> float:
    """The cosine schedule's learning rate: `rate` times (1 + cos(pi p)) / 2, where p is the
    part of the budget used, the larger of the steps' part and `time_used`, the time limit's
    part where it binds (`time_limit_used`), so the rate reaches zero when either budget
    ends."""
    used = max(steps_done / max(total_steps, 1), time_used)
    return rate * 0.5 * (1 + math.cos(math.pi * min(used, 1.0)))


def time_limit_pace(seconds: float, steps_done: int, total_steps: int,
                    first_epoch: tuple[float, int] | None, time_limit: float) -> float | None:
    """The seconds a step takes since the first epoch (`first_epoch`: its seconds and steps;
    it holds the warm-up of memory and kernels) where at that pace the `total_steps` would end
    past the time limit (minutes, 0: none); None where they would not, or before the pace is
    known. Where the limit does not bind, the cosine follows the steps alone, so a seed trains
    the same model however busy the machine is."""
    if time_limit <= 0 or first_epoch is None or steps_done <= first_epoch[1]:
        return None
    first_seconds, first_steps = first_epoch
    pace = (seconds - first_seconds) / (steps_done - first_steps)
    return pace if seconds + pace * (total_steps - steps_done) > 60 * time_limit else None


def time_limit_used(seconds: float, steps_done: int, pace: float, step: int,
                    time_limit: float) -> float:
    """The part of the time limit used at `step`, extrapolated at `pace` (seconds a step) from
    `seconds` at `steps_done` (the end of the last epoch, agreed by the ranks), so every rank
    steps with the same rate without reading its own clock."""
    return (seconds + pace * (step - steps_done)) / (60 * time_limit)


def _elapsed(seconds: float) -> str:
    """A training time in words: seconds under a minute (a short limit), else minutes."""
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} minutes"


def _stop_reason(config: FitConfig, epoch: int, best_epoch: int, validated: bool,
                 seconds: float, epochs_run: int, ranks: Ranks) -> str:
    """Why training ends after `epoch` before `config.epochs` ("" to go on). Every rank takes
    the same decision: the validation loss is summed over the ranks, and the time limit is
    reached when it is on any rank."""
    if epoch >= config.epochs:
        return ""
    if validated and config.early_stopping and epoch - best_epoch >= config.early_stopping:
        waited = counted(epoch - best_epoch, "epoch", "epochs")
        what = ("validation OA has not risen" if config.monitor == "accuracy"
                else "validation loss has not fallen")
        return (f"the {what} for {waited} "
                f"(early stopping after {config.early_stopping})")
    if config.time_limit > 0:
        limit = 60 * config.time_limit
        next_end = seconds + seconds / epochs_run
        if ranks.all_sum([float(next_end > limit)])[0] > 0:
            return (f"another epoch would end past the time limit of "
                    f"{config.time_limit:g} minutes ({_elapsed(seconds)} so far)")
    return ""


#: The normalisation layers whose running statistics are used at evaluation.
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def restart_batch_statistics(model: nn.Module) -> None:
    """Make every BatchNorm layer's running statistics the plain average of the coming
    epoch's training batches. PyTorch's exponential average (momentum 0.1) still holds much of
    its starting values (mean 0, variance 1) after the few steps of a short epoch, so the
    network would be validated, chosen and saved with statistics that fit no input."""
    for layer in model.modules():
        if isinstance(layer, BATCH_NORMS):
            layer.reset_running_stats()
            layer.momentum = None


def fit(model: nn.Module, train_batches: Callable[[int], Iterable[Batch]],
        steps_per_epoch: int, val_batches: Callable[[], Iterable[Batch]] | None,
        loss_fn: Callable, config: FitConfig, device: torch.device,
        reporter: Reporter, context: RunContext | None = None) -> FitResult:
    """Train for `config.epochs`; `train_batches(epoch)` yields that epoch's batches (this
    rank's share) and `val_batches()` the validation batches (read anew each time, so memory
    stays bounded). With a checkpoint path, the state after each epoch is saved there (rank 0)
    and a run finds it and goes on from it."""
    context = context or RunContext()
    ranks = context.ranks
    module = model
    if ranks.distributed:
        model = DistributedDataParallel(
            module, device_ids=[device] if device.type == "cuda" else None)
    rate = scaled_learning_rate(config.learning_rate, ranks.size)
    if config.mixed_precision and autocast_dtype(device) is not None:
        reporter.info("training in bfloat16 autocast (weights and optimiser in float32), "
                      + ("which the GPU computes natively" if device.type == "cuda" else
                         "which this CPU computes natively (AVX-512 BF16 or AMX); maps and "
                         "held-out polygons are classified in float32"))
    if ranks.size > 1:
        reporter.info(f"{ranks.size} ranks ({ranks.backend}): learning rate "
                      f"{config.learning_rate:g} x {ranks.size} = {rate:g} (linear scaling)")
    optimizer_type = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_type(model.parameters(), lr=rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=config.plateau_factor, patience=config.plateau_patience)
    best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(module.state_dict())
    history: list[dict] = []
    first_epoch = 1
    if context.checkpoint is not None and context.checkpoint.is_file():
        saved = load_checkpoint(context.checkpoint)
        if saved["world"] != ranks.size:
            raise LcfusionError(
                f"the checkpoint {context.checkpoint} was written by "
                f"{counted(saved['world'], 'rank')} "
                f"but this run has {ranks.size}; use the same number of ranks to resume, or "
                "delete the checkpoint to start afresh", "COMPUTE")
        module.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        best_loss, best_epoch = saved["best_loss"], saved["best_epoch"]
        best_state, history = saved["best_state"], json.loads(saved["history"])
        own = ranks.scatter(saved["rng"] if ranks.leader else None)
        if context.rng is not None:
            context.rng.bit_generator.state = json.loads(own[0])
        torch.set_rng_state(own[1])
        first_epoch = saved["epoch"] + 1
        reporter.info(f"resuming from the checkpoint of epoch {saved['epoch']}/{config.epochs}")
    started = time.monotonic()
    total_steps = max(1, (config.epochs - first_epoch + 1) * steps_per_epoch)
    warmup_steps = config.warmup_epochs * steps_per_epoch
    step, trained = 0, 0
    # The time limit's part of a cosine schedule: from the pace agreed by the ranks after each
    # epoch, where it binds (`time_limit_pace`); never lower than at the step before.
    time_used, first_epoch_end, pace, epoch_end = 0.0, None, None, (0.0, 0)
    for epoch in range(first_epoch, config.epochs + 1):
        model.train()
        restart_batch_statistics(module)
        running, seen = 0.0, 0
        for batch, (x, y) in enumerate(train_batches(epoch)):
            inputs, y = _inputs(x, device), y.to(device)
            done = (epoch - 1) * steps_per_epoch + batch
            if epoch <= config.warmup_epochs:
                _warm_up(optimizer, rate, config, done + 1, steps_per_epoch)
            elif config.schedule == "cosine":
                if pace is not None:
                    time_used = max(time_used, time_limit_used(*epoch_end, pace, step,
                                                               config.time_limit))
                _set_rate(optimizer, cosine_rate(
                    rate, done - warmup_steps, config.epochs * steps_per_epoch - warmup_steps,
                    time_used))
            optimizer.zero_grad(set_to_none=True)
            try:
                with autocast(device, config.mixed_precision):
                    loss = loss_fn(model(*inputs), y)
                loss.backward()
            except torch.cuda.OutOfMemoryError as exc:
                raise LcfusionError(
                    "the GPU ran out of memory; lower the batch size or the patch size",
                    "BATCH_SIZE") from exc
            if not torch.isfinite(loss):
                raise LcfusionError(
                    f"the training loss became {float(loss)} in epoch {epoch}; lower the "
                    "learning rate", "LEARNING_RATE")
            optimizer.step()
            running += loss.item() * y.shape[0]
            seen += y.shape[0]
            step += 1
            reporter.progress(step / total_steps, f"epoch {epoch}/{config.epochs}")
        running, seen_all = ranks.all_sum([running, float(seen)])
        trained += int(seen_all)
        train_loss = running / max(seen_all, 1)
        val_loss = val_accuracy = None
        if val_batches:
            val_loss, val_accuracy = evaluate(module, val_batches(), loss_fn, device, ranks,
                                              config.mixed_precision)
        monitored = train_loss if val_loss is None else (
            -val_accuracy if config.monitor == "accuracy" else val_loss)
        if epoch >= config.warmup_epochs and config.schedule == "plateau":
            scheduler.step(monitored)
        if config.schedule == "cosine" and config.time_limit > 0:
            seconds = ranks.all_sum([time.monotonic() - started])[0] / ranks.size
            first_epoch_end = first_epoch_end or (seconds, step)
            pace = time_limit_pace(seconds, step, total_steps, first_epoch_end,
                                   config.time_limit)
            epoch_end = (seconds, step)
        if monitored < best_loss:
            best_loss, best_epoch = monitored, epoch
            if config.keep != "last":
                best_state = copy.deepcopy(module.state_dict())
        lr = optimizer.param_groups[0]["lr"]
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                        "val_accuracy": val_accuracy, "learning_rate": lr})
        val_text = (f", validation loss {val_loss:.4f}, validation OA {val_accuracy:.3f}"
                    if val_loss is not None else "")
        reporter.info(f"epoch {epoch}/{config.epochs}: training loss {train_loss:.4f}"
                      f"{val_text}, learning rate {lr:.2e}")
        stop = _stop_reason(config, epoch, best_epoch, val_batches is not None,
                            time.monotonic() - started, epoch - first_epoch + 1, ranks)
        if context.checkpoint is not None:
            rng_state = (json.dumps(context.rng.bit_generator.state) if context.rng is not None
                         else "")
            states = ranks.gather((rng_state, torch.get_rng_state()))
            if ranks.leader:
                _save_checkpoint(context.checkpoint, {
                    "version": CHECKPOINT_VERSION, "epoch": epoch, "world": ranks.size,
                    "model": module.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "best_loss": best_loss,
                    "best_epoch": best_epoch, "best_state": best_state,
                    "history": json.dumps(history), "rng": states})
            ranks.barrier()
        if stop:
            reporter.info(f"stopped after epoch {epoch} of {config.epochs}: {stop}")
            break
    seconds = time.monotonic() - started
    last_epoch = history[-1]["epoch"] if history else 0
    choosing = config.keep == "best-or-last" and last_epoch != best_epoch
    # With a choice to come, this epoch is the best one, not yet the one kept.
    best = f"the best epoch is {best_epoch}" if choosing else \
        f"kept the weights of epoch {best_epoch}"
    if config.keep == "last":
        best_epoch, best_state = last_epoch, module.state_dict()
        reporter.info(f"kept the weights of the last epoch, {best_epoch}")
    elif val_batches and config.monitor == "accuracy":
        reporter.info(f"{best} (highest validation OA {-best_loss:.4f})")
    else:
        reporter.info(f"{best} (lowest {'validation' if val_batches else 'training'} loss "
                      f"{best_loss:.4f})")
    last_state = None
    if choosing:
        last_state = copy.deepcopy(module.state_dict())
        reporter.info(f"kept the last epoch's weights too (epoch {last_epoch}), to choose "
                      "between the two on the validation polygons")
    module.load_state_dict(best_state)
    speed = trained / max(seconds, 1e-9)
    if trained:
        reporter.info(f"trained on {counted(trained, 'sample', thousands=True)} in "
                      f"{seconds:.1f} s ({counted(round(speed), 'sample', thousands=True)} per "
                      f"second on {counted(ranks.size, 'rank')}, {device.type})")
    return FitResult(best_state, best_epoch, history, seconds, first_epoch - 1, speed,
                     last_state, last_epoch)
