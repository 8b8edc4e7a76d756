"""Running an lcfusion ONNX model with onnxruntime, without torch.

The model is read once, its lcfusion metadata verified (`modelfile.header`), and the session
built from those very bytes: onnxruntime then cannot follow a reference to external weight
files, and no custom-operator library is ever registered, so a graph that names an operator
outside ONNX's standard domains is refused rather than run.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LcfusionError
from ..modelfile.header import check_family, parse_onnx_header

#: Where a session runs: CUDA when onnxruntime has it (the onnxruntime-gpu wheel), else CPU.
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
#: An execution provider as ``InferenceSession`` takes it: a name, or a name and its options.
Provider = str | tuple[str, dict[str, str]]


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise LcfusionError(
            "classifying with an .onnx model needs onnxruntime in the engine's Python; create "
            "the light engine environment (Plugins > Land Cover Fusion > Create Engine "
            "Environment…) or pip install onnxruntime", "MODEL") from exc
    return onnxruntime


def providers(device: str, available: list[str]) -> list[Provider]:
    """The execution providers for the DEVICE setting, given those onnxruntime has: ``auto``
    takes CUDA first when present, with the CPU as fallback; ``cuda`` (or ``cuda:N``, GPU N)
    requires it; ``cpu`` never uses it."""
    name = (device or "auto").lower()
    if name == "cpu" or (name == "auto" and CUDA not in available):
        return [CPU]
    if name == "auto":
        return [CUDA, CPU]
    gpu = name.removeprefix("cuda").removeprefix(":")
    if not name.startswith("cuda") or not (gpu == "" or gpu.isdigit()):
        raise LcfusionError(f"unknown device {device!r}; use auto, cpu or cuda", "DEVICE")
    if CUDA not in available:
        raise LcfusionError("DEVICE is cuda but onnxruntime has no CUDA provider here (it has "
                            f"{', '.join(available) or 'none'}); install onnxruntime-gpu in "
                            "place of onnxruntime, or use auto or cpu", "DEVICE")
    return [(CUDA, {"device_id": gpu}) if gpu else CUDA, CPU]


def provider_name(provider: Provider) -> str:
    return provider if isinstance(provider, str) else provider[0]


def runs_on(requested: list[Provider], used: list[str]) -> tuple[str, str | None]:
    """Which provider the session runs on, in words, and a warning when it is not the first
    one requested (onnxruntime falls back to the CPU when the CUDA provider cannot start,
    e.g. without the CUDA or cuDNN libraries it was built for)."""
    ran = used[0] if used else CPU
    words = "onnxruntime's CUDA provider (GPU)" if ran == CUDA else (
        "onnxruntime's CPU provider" if ran == CPU else f"onnxruntime's {ran}")
    wanted = provider_name(requested[0])
    if wanted == ran:
        return words, None
    return words, (f"onnxruntime's {wanted} could not start (onnxruntime-gpu needs the CUDA "
                   "and cuDNN libraries it was built for: pip install onnxruntime-gpu[cuda,"
                   f"cudnn] brings them); classifying with {ran} instead")


def preload_cuda_libraries(ort: Any) -> None:
    """Load the CUDA and cuDNN libraries of pip's nvidia packages (``onnxruntime-gpu[cuda,
    cudnn]``), which the CUDA provider does not find on its own on Linux; onnxruntime before
    1.21 has no such function (the libraries must then be on the loader's path)."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        with contextlib.redirect_stdout(sys.stderr):  # it prints; stdout carries the events
            preload()


def thread_count(threads: int) -> int:
    """`threads` CPU threads (0: every core this process may use)."""
    if threads > 0:
        return threads
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


class OnnxModel:
    """An lcfusion ONNX model of one family: its metadata and an onnxruntime session that maps
    the family's input arrays (float32, in the order of ``metadata["onnx"]["inputs"]``) to
    class probabilities."""

    def __init__(self, path: Path, family: str, device: str = "auto", threads: int = 0,
                 parameter: str = "MODEL"):
        ort = import_onnxruntime()
        if not path.is_file():
            raise LcfusionError(f"the model file {path} does not exist", parameter)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise LcfusionError(f"the model file {path} cannot be read: {exc.strerror}",
                                parameter) from exc
        header = parse_onnx_header(io.BytesIO(data), path, parameter)
        check_family(header, family, path, parameter)
        self.metadata = header.metadata
        self.inputs = list(self.metadata["onnx"]["inputs"])
        self.output = str(self.metadata["onnx"]["output"])
        self.threads = thread_count(threads)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.providers = providers(device, ort.get_available_providers())
        if provider_name(self.providers[0]) == CUDA:
            preload_cuda_libraries(ort)
        try:
            with contextlib.redirect_stdout(sys.stderr):  # stdout carries the engine's events
                self.session = ort.InferenceSession(data, sess_options=options,
                                                    providers=self.providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own classes
            raise LcfusionError(
                f"onnxruntime cannot load {path.name} ({type(exc).__name__}: "
                f"{str(exc).strip()[:300]}); export the model again with "
                "lcfusion:exportonnx", parameter) from exc
        names = [each.name for each in self.session.get_inputs()]
        self.dtypes = [np.int64 if each.type == "tensor(int64)" else np.float32
                       for each in self.session.get_inputs()]
        if names != self.inputs:
            raise LcfusionError(
                f"{path.name}'s graph takes the inputs {', '.join(names)}, not the "
                f"{', '.join(self.inputs)} its metadata names; export the model again",
                parameter)
        if self.output not in [each.name for each in self.session.get_outputs()]:
            raise LcfusionError(f"{path.name}'s graph has no output {self.output}, which its "
                                "metadata names; export the model again", parameter)
        used = self.session.get_providers()
        #: Whether the session runs on onnxruntime's CUDA provider (a GPU).
        self.on_gpu = used[:1] == [CUDA]
        #: Which provider runs, in words, and why it is not the one asked for (or None): the
        #: classify commands log both.
        self.runs_on, self.fallback = runs_on(self.providers, used)

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        """Class probabilities of a batch (the inputs as float32, or int64 where the graph
        takes indices)."""
        feed = {name: np.ascontiguousarray(array, dtype=dtype)
                for name, array, dtype in zip(self.inputs, arrays, self.dtypes, strict=True)}
        return self.session.run([self.output], feed)[0]
