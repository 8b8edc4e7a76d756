"""Where torch runs: the device and the number of CPU threads."""

from __future__ import annotations

import contextlib
import os

import torch

from ..errors import LcfusionError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else the CPU; ``cuda`` without a GPU is an error."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LcfusionError("DEVICE is cuda but torch sees no GPU here; use auto or cpu",
                            "DEVICE")
    if name != "cpu" and not name.startswith("cuda"):
        raise LcfusionError(f"unknown device {name!r}; use auto, cpu or cuda", "DEVICE")
    return torch.device(name)


def configure_threads(threads: int = 0) -> int:
    """Use `threads` CPU threads for torch (0: every core this process may use)."""
    if threads <= 0:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    torch.set_num_threads(threads)
    return threads


def autocast(device: torch.device, enabled: bool = True):
    """bfloat16 autocast on GPUs (tensor cores, no loss scaling needed); nothing on the CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
