"""The lcfusion metadata of an ONNX model, read without onnx, onnxruntime or torch.

An ONNX file is a protobuf ``ModelProto``. lcfusion's export puts the model file's JSON metadata
under the ``metadata_props`` key ``lcfusion`` (with an ``onnx`` entry: the graph's input and
output names) and under ``lcfusion_sha256`` a SHA-256 over that JSON and the serialized graph,
so that a file whose weights or metadata were changed is refused as a model file is. This
module walks the protobuf's top-level fields itself (a few dozen lines, so that QGIS's Python,
which has no onnx package, can check a model); nothing in the file is executed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

SUFFIX = ".onnx"
METADATA_KEY = "lcfusion"
DIGEST_KEY = "lcfusion_sha256"
#: ModelProto's field numbers: graph (a GraphProto) and metadata_props (StringStringEntry).
GRAPH_FIELD, METADATA_FIELD = 7, 14
MAX_ENTRY_BYTES = 100 * 1024 * 1024
MAX_ENTRIES = 1000


class Malformed(Exception):
    """The bytes are not a well-formed ONNX protobuf (the reason)."""


def is_onnx(path: str | Path) -> bool:
    """Whether a model path names an ONNX file (by its suffix)."""
    return Path(path).suffix.lower() == SUFFIX


@dataclass(frozen=True)
class OnnxProps:
    """The metadata properties of an ONNX model and the SHA-256 of its serialized graph."""

    props: dict[str, str]
    graph_sha256: str | None

    def digest(self) -> str | None:
        """The SHA-256 over the lcfusion JSON and the graph, which ``lcfusion_sha256`` must
        hold; None without either."""
        text = self.props.get(METADATA_KEY)
        if text is None or self.graph_sha256 is None:
            return None
        return metadata_digest(text, self.graph_sha256)


def metadata_digest(metadata_json: str, graph_sha256: str) -> str:
    return hashlib.sha256((metadata_json + graph_sha256).encode("utf-8", "surrogatepass")
                          ).hexdigest()


def _varint(handle: BinaryIO) -> int | None:
    """The next varint, or None at the end of the file."""
    value, shift = 0, 0
    while True:
        byte = handle.read(1)
        if not byte:
            if shift:
                raise Malformed("the file ends inside a number")
            return None
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
        if shift > 63:
            raise Malformed("a number is longer than 10 bytes")


def _read(handle: BinaryIO, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise Malformed("the file is truncated")
    return data


def _entry(data: bytes) -> tuple[str, str]:
    """The key and value of a serialized StringStringEntryProto."""
    handle, fields = BytesIO(data), {}
    while (tag := _varint(handle)) is not None:
        number, wire = tag >> 3, tag & 7
        if wire != 2:
            raise Malformed("a metadata entry holds a field that is not text")
        size = _varint(handle)
        if size is None:
            raise Malformed("the file is truncated")
        fields[number] = _read(handle, size)
    try:
        return fields.get(1, b"").decode("utf-8"), fields.get(2, b"").decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("a metadata entry is not UTF-8 text") from None


def read_props(handle: BinaryIO) -> OnnxProps:
    """The metadata properties of the ModelProto open as `handle` and its graph's SHA-256,
    reading the graph in chunks; `Malformed` for bytes that are not one."""
    props: dict[str, str] = {}
    graph = None
    end = handle.seek(0, 2)
    handle.seek(0)
    while (tag := _varint(handle)) is not None:
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise Malformed("a field number is 0")
        if wire == 0:
            if _varint(handle) is None:
                raise Malformed("the file is truncated")
        elif wire in (1, 5):
            _read(handle, 8 if wire == 1 else 4)
        elif wire == 2:
            size = _varint(handle)
            if size is None:
                raise Malformed("the file is truncated")
            if number == METADATA_FIELD:
                if size > MAX_ENTRY_BYTES or len(props) >= MAX_ENTRIES:
                    raise Malformed("its metadata is implausibly large")
                key, value = _entry(_read(handle, size))
                props[key] = value
            elif number == GRAPH_FIELD:
                graph = hashlib.sha256()
                while size:
                    chunk = _read(handle, min(size, 1 << 20))
                    graph.update(chunk)
                    size -= len(chunk)
            else:
                if handle.tell() + size > end:
                    raise Malformed("the file is truncated")
                handle.seek(size, 1)
        else:
            raise Malformed(f"wire type {wire} is not one ONNX uses")
    if graph is None:
        raise Malformed("it holds no graph")
    return OnnxProps(props, graph.hexdigest())
