"""Running an lcfusion ONNX model with onnxruntime, without torch.

The model is read once, its lcfusion metadata verified (`modelfile.header`), and the session
built from those very bytes: onnxruntime then cannot follow a reference to external weight
files, and no custom-operator library is ever registered, so a graph that names an operator
outside ONNX's standard domains is refused rather than run.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LcfusionError
from ..modelfile.header import check_family, parse_onnx_header

#: Where a session runs: CUDA when onnxruntime has it (the onnxruntime-gpu wheel), else CPU.
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise LcfusionError(
            "classifying with an .onnx model needs onnxruntime in the engine's Python; create "
            "the light engine environment (Plugins > Land Cover Fusion > Create Engine "
            "Environment…) or pip install onnxruntime", "MODEL") from exc
    return onnxruntime


def providers(device: str, available: list[str]) -> list[str]:
    """The execution providers for the DEVICE setting: auto takes CUDA when present."""
    name = (device or "auto").lower()
    if name == "cpu":
        return [CPU]
    if name == "auto":
        return [CUDA, CPU] if CUDA in available else [CPU]
    if name.startswith("cuda"):
        if CUDA not in available:
            raise LcfusionError("DEVICE is cuda but onnxruntime has no CUDA provider here "
                                "(install onnxruntime-gpu); use auto or cpu", "DEVICE")
        return [CUDA, CPU]
    raise LcfusionError(f"unknown device {name!r}; use auto, cpu or cuda", "DEVICE")


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
        try:
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
        self.device = "cuda" if self.session.get_providers()[0] == CUDA else "cpu"

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        """Class probabilities of a batch (the inputs as float32, or int64 where the graph
        takes indices)."""
        feed = {name: np.ascontiguousarray(array, dtype=dtype)
                for name, array, dtype in zip(self.inputs, arrays, self.dtypes, strict=True)}
        return self.session.run([self.output], feed)[0]
