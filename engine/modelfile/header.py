"""The lcfusion model file format, readable without torch.

A model file is a safetensors file: an 8-byte little-endian header length, a JSON header
(tensor table and ``__metadata__``), then the raw tensor bytes. lcfusion stores its JSON
metadata under ``__metadata__["lcfusion"]`` and under ``__metadata__["sha256"]`` a SHA-256 over
that JSON, the tensor table (names, dtypes, shapes, offsets; from format version 2) and the
tensor bytes. A file that passes the checksum must also pass `modelschema`: metadata of the
right types and ranges, a tensor table that fits the data (and, for an ensemble, its members).
Nothing in the file is ever executed or unpickled.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import LcfusionError
from ..wording import FAMILY_NAMES
from .onnxfile import DIGEST_KEY, METADATA_KEY, Malformed, is_onnx, read_props
from .schema import Invalid, check_member_tensors, check_metadata, check_tensor_table

FORMAT_NAME = "lcfusion-model"
#: 1: the checksum covers the metadata and the tensor bytes; 2: also the tensor table.
FORMAT_VERSION = 2
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
    """Parse a model file's header and verify it (see `parse_header`), reading the file in
    chunks."""
    path = Path(path)
    if not path.is_file():
        raise LcfusionError(f"the model file {path} does not exist", parameter)
    try:
        with path.open("rb") as handle:
            if is_onnx(path):
                return parse_onnx_header(handle, path, parameter)
            return parse_header(handle, path, parameter)
    except OSError as exc:
        raise LcfusionError(f"the model file {path} cannot be read: {exc.strerror}",
                            parameter) from exc


def parse_header(handle: BinaryIO, path: Path, parameter: str = "MODEL") -> ModelHeader:
    """Parse and verify the model file open as `handle` (positioned at its start): checksum,
    tensor table and the types of the metadata entries present."""
    prefix = handle.read(8)
    if len(prefix) != 8:
        raise corrupt(path, "the file is too short", parameter)
    (length,) = struct.unpack("<Q", prefix)
    if length <= 0 or length > MAX_HEADER_BYTES:
        raise corrupt(path, "the header length is implausible", parameter)
    raw = handle.read(length)
    if len(raw) != length:
        raise corrupt(path, "the file is truncated", parameter)
    header = _json(raw, path, "the header", parameter)
    if not isinstance(header, dict):
        raise corrupt(path, "the header is not a JSON object", parameter)
    extra = header.pop("__metadata__", None)
    if not isinstance(extra, dict) or not isinstance(extra.get("lcfusion"), str):
        raise corrupt(path, "it carries no lcfusion metadata", parameter)
    metadata = _json(extra["lcfusion"], path, "its metadata", parameter)
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise corrupt(path, "the metadata does not describe an lcfusion model", parameter)
    version = metadata.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise corrupt(path, f"its format version {version!r} is not a version number",
                      parameter)
    if version > FORMAT_VERSION:
        raise LcfusionError(
            f"{path.name} was written by a newer lcfusion (format version {version}); update "
            "the plugin", parameter)
    try:
        digest = hashlib.sha256(_checked_text(extra["lcfusion"],
                                              header if version > 1 else None))
    except RecursionError:
        raise corrupt(path, "the header is nested too deeply", parameter) from None
    data_size = 0
    while chunk := handle.read(1 << 20):
        digest.update(chunk)
        data_size += len(chunk)
    if digest.hexdigest() != extra.get("sha256"):
        raise corrupt(path, "the checksum does not match: the file was modified or damaged",
                      parameter)
    try:
        check_tensor_table(header, data_size)
    except Invalid as exc:
        raise corrupt(path, str(exc), parameter) from None
    _check_metadata(metadata, False, path, parameter)
    try:
        check_member_tensors(metadata, header)
    except Invalid as exc:
        raise corrupt(path, str(exc), parameter) from None
    return ModelHeader(metadata)


def foreign_onnx(path: Path, reason: str, parameter: str) -> LcfusionError:
    return LcfusionError(
        f"{path.name} is not an ONNX model exported by lcfusion ({reason}); lcfusion classifies "
        "only the ONNX files its Export Model to ONNX algorithm (lcfusion:exportonnx) writes: "
        "export the .lcfusion model file again", parameter)


def parse_onnx_header(handle: BinaryIO, path: Path, parameter: str = "MODEL") -> ModelHeader:
    """The lcfusion metadata of an ONNX model open as `handle`, verified as a model file's is
    (checksum over the metadata and the graph, the schema, and an ``onnx`` entry naming the
    graph's inputs)."""
    try:
        found = read_props(handle)
    except Malformed as exc:
        raise foreign_onnx(path, f"it is not a well-formed ONNX file: {exc}", parameter) from None
    text = found.props.get(METADATA_KEY)
    if text is None:
        raise foreign_onnx(path, "it carries no lcfusion metadata", parameter)
    metadata = _json(text, path, "its metadata", parameter)
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise foreign_onnx(path, "its metadata does not describe an lcfusion model", parameter)
    if found.digest() != found.props.get(DIGEST_KEY):
        raise corrupt(path, "the checksum does not match: the file was modified or damaged",
                      parameter)
    _check_metadata(metadata, False, path, parameter)
    if not isinstance(metadata.get("onnx"), dict):
        raise foreign_onnx(path, "its metadata names no ONNX inputs", parameter)
    return ModelHeader(metadata)


def _json(raw: bytes | str, path: Path, what: str, parameter: str):
    """Parsed JSON; a clear error for bytes that are not JSON, numbers of thousands of digits
    and nesting deeper than the parser goes."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise corrupt(path, f"{what} is not valid JSON", parameter) from None


def _check_metadata(metadata: dict, complete: bool, path: Path, parameter: str) -> None:
    try:
        check_metadata(metadata, complete)
    except Invalid as exc:
        raise corrupt(path, str(exc), parameter) from None


def _checked_text(metadata_json: str, table: dict | None) -> bytes:
    """What the checksum covers before the tensor bytes: the metadata JSON, then (format 2)
    the tensor table as canonical JSON."""
    text = metadata_json
    if table is not None:
        text += json.dumps(table, sort_keys=True, separators=(",", ":"))
    return text.encode("utf-8", "surrogatepass")


def checksum(metadata_json: str, data: bytes, table: dict | None = None) -> str:
    """The SHA-256 of a model file: over its metadata JSON, its tensor `table` (without
    ``__metadata__``; None for format version 1) and its tensor bytes."""
    digest = hashlib.sha256(_checked_text(metadata_json, table))
    digest.update(data)
    return digest.hexdigest()


def read_metadata(path: str | Path, parameter: str = "MODEL") -> dict:
    """The model's JSON metadata (family, inputs, classes, metrics), checksum verified."""
    return read_header(path, parameter).metadata


def check_family(header: ModelHeader, family: str, path: str | Path,
                 parameter: str = "MODEL", complete: bool = True) -> None:
    """A clear error when the model belongs to another family, or, when it must be
    `complete` (a model to classify with, not the bare weights of a remote training), lacks
    an entry its family's readers need or has entries that disagree (lengths, counts)."""
    if header.family != family:
        own = FAMILY_NAMES.get(header.family or "")
        raise LcfusionError(
            f"{Path(path).name} is a model of the {own or 'unknown'} family, not "
            f"{FAMILY_NAMES.get(family, family)}: "
            f"{f'use Classify with {own}' if own else 'use the classify algorithm of its family'}",
            parameter)
    if complete:
        _check_metadata(header.metadata, True, Path(path), parameter)
