"""Saving and loading model files: safetensors weights plus JSON metadata, never pickle."""

from __future__ import annotations

import datetime
import io
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from .. import __version__
from ..errors import LcfusionError
from ..io.outputs import atomic_output
from .header import FORMAT_NAME, FORMAT_VERSION, check_family, checksum, corrupt, parse_header

T = TypeVar("T")


def save_model(path: str | Path, metadata: dict, state: dict[str, torch.Tensor],
               parameter: str = "OUTPUT_MODEL") -> Path:
    """Write weights and metadata atomically; returns the path."""
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
            "lcfusion_version": __version__,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    meta.update(metadata)
    text = json.dumps(meta, ensure_ascii=False, sort_keys=True)
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in state.items()}
    draft = save_tensors(tensors, metadata={"lcfusion": text})
    (length,) = struct.unpack("<Q", draft[:8])
    table = json.loads(draft[8: 8 + length])
    table.pop("__metadata__")
    digest = checksum(text, draft[8 + length:], table)
    final = save_tensors(tensors, metadata={"lcfusion": text, "sha256": digest})
    path = Path(path)
    with atomic_output(path, parameter) as temporary:
        try:
            temporary.write_bytes(final)
        except OSError as exc:
            raise LcfusionError(f"could not write the model file {path}: {exc.strerror}",
                                parameter) from exc
    return path


def load_model(path: str | Path, family: str | None = None, parameter: str = "MODEL",
               complete: bool = True) -> tuple[dict, dict[str, torch.Tensor]]:
    """Metadata and weights of a verified model file (checksum, family, tensor table, and with
    `complete` every entry the family's readers need); the file is read once, so the weights
    are the bytes that were verified."""
    path = Path(path)
    if not path.is_file():
        raise LcfusionError(f"the model file {path} does not exist", parameter)
    data = path.read_bytes()
    header = parse_header(io.BytesIO(data), path, parameter)
    if family is not None:
        check_family(header, family, path, parameter, complete)
    try:
        state = load_tensors(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise corrupt(path, f"the weights cannot be read: {exc}", parameter) from exc
    return header.metadata, state


def restore_model(path: str | Path, family: str, build: Callable[[dict, dict], T],
                  parameter: str = "MODEL") -> tuple[dict, T]:
    """Load a verified model file and `build(metadata, weights)` from it; metadata that does not
    fit the weights (or the family's expectations) is a clear error."""
    metadata, state = load_model(path, family, parameter)
    try:
        return metadata, build(metadata, state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise LcfusionError(f"{Path(path).name} has inconsistent metadata or weights ({exc}); "
                            "train the model again", parameter) from exc
