"""The machine's float32 limit: the best of a large matrix product (MKL's sgemm on the CPU) and
of a large convolution (oneDNN's on the CPU, which beats sgemm there and runs the networks).

Other work on the machine can only slow a measurement down, so the limit of a bench run is the
best of every measurement taken during it (at the start, and just before and just after each
throughput run): a network's throughput over a whole run cannot exceed it unless its FLOPs are
miscounted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch
from torch.nn import functional as F

from benchmarks.config import BenchConfig


def best_gflops(flops: float, compute: Callable[[], object], device: torch.device,
                repeats: int) -> float:
    """GFLOP/s of the fastest of `repeats` calls of `compute` (`flops` each), after a warm-up
    call."""
    best = float("inf")
    for attempt in range(repeats + 1):
        _synchronize(device)
        started = time.perf_counter()
        compute()
        _synchronize(device)
        if attempt:
            best = min(best, time.perf_counter() - started)
    return flops / best / 1e9


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def sgemm_gflops(device: torch.device, size: int, repeats: int) -> float:
    """A `size` x `size` float32 matrix product (2 n^3 FLOPs)."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    return best_gflops(2 * size ** 3, lambda: torch.matmul(a, b), device, repeats)


def convolution_gflops(device: torch.device, channels: int, side: int, repeats: int) -> float:
    """A valid 3x3 float32 convolution of `channels` to `channels` over a `side` x `side` image,
    channels-last on the CPU as the engine runs its networks (2 FLOPs per multiply-add)."""
    layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    image = torch.randn(1, channels, side, side, device=device).contiguous(memory_format=layout)
    weight = torch.randn(channels, channels, 3, 3, device=device).contiguous(
        memory_format=layout)
    flops = 2 * channels * channels * 9 * (side - 2) ** 2
    with torch.inference_mode():
        return best_gflops(flops, lambda: F.conv2d(image, weight), device, repeats)


def measure_peak(device: torch.device, config: BenchConfig) -> dict[str, float]:
    """The sgemm's and the convolution's GFLOP/s now, and the better of the two (`peak`)."""
    sgemm = sgemm_gflops(device, config.matmul_size, config.peak_repeats)
    convolution = convolution_gflops(device, config.conv_channels, config.conv_side,
                                     config.peak_repeats)
    return {"sgemm": sgemm, "convolution": convolution, "peak": max(sgemm, convolution)}


def best_of(measurements: Iterable[dict[str, float]]) -> dict[str, float]:
    """Each figure's best over several `measure_peak` results."""
    measurements = list(measurements)
    return {key: max(m[key] for m in measurements) for key in measurements[0]}
