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


def native_cpu_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX): there oneDNN's
    bfloat16 kernels train the families' networks 1.2 to 1.8 times faster than float32; on
    other CPUs they would be emulated, slower."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes
        return False


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bfloat16 where `device` computes it natively (a GPU's tensor cores, a CPU with AVX-512
    BF16 or AMX; no loss scaling needed); None (float32) elsewhere."""
    if device.type == "cuda" or (device.type == "cpu" and native_cpu_bfloat16()):
        return torch.bfloat16
    return None


def autocast(device: torch.device, enabled: bool = True):
    """Training's autocast (`autocast_dtype`), or nothing."""
    dtype = autocast_dtype(device) if enabled else None
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
