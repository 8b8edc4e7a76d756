"""The training loop shared by the deep families: Adam, reduce-on-plateau, best checkpoint."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import LcfusionError
from .progress import Reporter

#: Inputs (one tensor, or a tuple of tensors for a multi-input model) and labels.
Batch = tuple[torch.Tensor | tuple[torch.Tensor, ...], torch.Tensor]


def _inputs(x: torch.Tensor | tuple[torch.Tensor, ...], device: torch.device
            ) -> tuple[torch.Tensor, ...]:
    return tuple(t.to(device) for t in x) if isinstance(x, tuple | list) else (x.to(device),)


@dataclass(frozen=True)
class FitConfig:
    epochs: int
    learning_rate: float
    plateau_factor: float = 0.2
    plateau_patience: int = 3


@dataclass
class FitResult:
    """The best weights (lowest validation loss, or training loss without validation)."""

    best_state: dict[str, torch.Tensor]
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def evaluate_loss(model: nn.Module, batches: Iterable[Batch], loss_fn: Callable,
                  device: torch.device) -> float:
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for x, y in batches:
            total += loss_fn(model(*_inputs(x, device)), y.to(device)).item() * y.shape[0]
            count += y.shape[0]
    return total / max(count, 1)


def fit(model: nn.Module, train_batches: Callable[[int], Iterable[Batch]],
        steps_per_epoch: int, val_batches: Callable[[], Iterable[Batch]] | None,
        loss_fn: Callable, config: FitConfig, device: torch.device,
        reporter: Reporter) -> FitResult:
    """Train for `config.epochs`; `train_batches(epoch)` yields that epoch's batches and
    `val_batches()` the validation batches (read anew each time, so memory stays bounded)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=config.plateau_factor, patience=config.plateau_patience)
    best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(model.state_dict())
    history: list[dict] = []
    started = time.monotonic()
    total_steps = max(1, config.epochs * steps_per_epoch)
    step = 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        running, seen = 0.0, 0
        for x, y in train_batches(epoch):
            inputs, y = _inputs(x, device), y.to(device)
            optimizer.zero_grad(set_to_none=True)
            try:
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
        train_loss = running / max(seen, 1)
        val_loss = (evaluate_loss(model, val_batches(), loss_fn, device) if val_batches
                    else None)
        monitored = val_loss if val_loss is not None else train_loss
        scheduler.step(monitored)
        if monitored < best_loss:
            best_loss, best_epoch = monitored, epoch
            best_state = copy.deepcopy(model.state_dict())
        lr = optimizer.param_groups[0]["lr"]
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                        "learning_rate": lr})
        val_text = f", validation loss {val_loss:.4f}" if val_loss is not None else ""
        reporter.info(f"epoch {epoch}/{config.epochs}: training loss {train_loss:.4f}"
                      f"{val_text}, learning rate {lr:.2e}")
    model.load_state_dict(best_state)
    reporter.info(f"kept the weights of epoch {best_epoch} (lowest "
                  f"{'validation' if val_batches else 'training'} loss {best_loss:.4f})")
    return FitResult(best_state, best_epoch, history, time.monotonic() - started)
