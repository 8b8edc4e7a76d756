"""The lcfusion model file format, readable without torch.

A model file is a safetensors file: an 8-byte little-endian header length, a JSON header
(tensor table and ``__metadata__``), then the raw tensor bytes. lcfusion stores its JSON
metadata under ``__metadata__["lcfusion"]`` and a SHA-256 over that JSON and the tensor bytes
under ``__metadata__["sha256"]``. Nothing in the file is ever executed or unpickled.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .errors import LcfusionError

FORMAT_NAME = "lcfusion-model"
FORMAT_VERSION = 1
SUFFIX = ".lcfusion"
MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class ModelHeader:
    """The parsed, verified metadata of a model file."""

    metadata: dict

    @property
    def family(self) -> str:
        return str(self.metadata.get("family", ""))


def corrupt(path: Path, reason: str, parameter: str) -> LcfusionError:
    return LcfusionError(
        f"{path.name} is not a valid lcfusion model file ({reason}); choose a model file "
        "written by an lcfusion training algorithm, or train the model again", parameter)


def read_header(path: str | Path, parameter: str = "MODEL") -> ModelHeader:
    """Parse a model file's header and verify its checksum, reading the file in chunks."""
    path = Path(path)
    if not path.is_file():
        raise LcfusionError(f"the model file {path} does not exist", parameter)
    with path.open("rb") as handle:
        return parse_header(handle, path, parameter)


def parse_header(handle: BinaryIO, path: Path, parameter: str = "MODEL") -> ModelHeader:
    """Parse and verify the model file open as `handle` (positioned at its start)."""
    prefix = handle.read(8)
    if len(prefix) != 8:
        raise corrupt(path, "the file is too short", parameter)
    (length,) = struct.unpack("<Q", prefix)
    if length <= 0 or length > MAX_HEADER_BYTES:
        raise corrupt(path, "the header length is implausible", parameter)
    raw = handle.read(length)
    if len(raw) != length:
        raise corrupt(path, "the file is truncated", parameter)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise corrupt(path, "the header is not valid JSON", parameter) from None
    if not isinstance(header, dict):
        raise corrupt(path, "the header is not a JSON object", parameter)
    extra = header.pop("__metadata__", None)
    if not isinstance(extra, dict) or not isinstance(extra.get("lcfusion"), str):
        raise corrupt(path, "it carries no lcfusion metadata", parameter)
    try:
        metadata = json.loads(extra["lcfusion"])
    except json.JSONDecodeError:
        raise corrupt(path, "its metadata is not valid JSON", parameter) from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise corrupt(path, "the metadata does not describe an lcfusion model", parameter)
    if int(metadata.get("format_version", 0)) > FORMAT_VERSION:
        raise LcfusionError(
            f"{path.name} was written by a newer lcfusion (format version "
            f"{metadata.get('format_version')}); update the plugin", parameter)
    digest = hashlib.sha256(extra["lcfusion"].encode("utf-8"))
    while chunk := handle.read(1 << 20):
        digest.update(chunk)
    if digest.hexdigest() != extra.get("sha256"):
        raise corrupt(path, "the checksum does not match: the file was modified or damaged",
                      parameter)
    _check_tensor_table(path, header, parameter)
    return ModelHeader(metadata)


def _check_tensor_table(path: Path, header: dict, parameter: str) -> None:
    for name, entry in header.items():
        if (not isinstance(entry, dict) or not isinstance(entry.get("shape"), list)
                or not isinstance(entry.get("data_offsets"), list)):
            raise corrupt(path, f"the tensor entry {name!r} is malformed", parameter)


def checksum(metadata_json: str, data: bytes) -> str:
    digest = hashlib.sha256(metadata_json.encode("utf-8"))
    digest.update(data)
    return digest.hexdigest()


def read_metadata(path: str | Path, parameter: str = "MODEL") -> dict:
    """The model's JSON metadata (family, inputs, classes, metrics), checksum verified."""
    return read_header(path, parameter).metadata


def check_family(header: ModelHeader, family: str, path: str | Path,
                 parameter: str = "MODEL") -> None:
    """A clear error when the model belongs to another family."""
    if header.family != family:
        raise LcfusionError(
            f"{Path(path).name} is a {header.family or 'unknown'} model, not a {family} model; "
            "use the classify algorithm of its family", parameter)
