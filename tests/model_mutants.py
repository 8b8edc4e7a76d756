"""Mutants of real model files for the fuzz tests (engine and plugin): a model file taken apart
and forged with a checksum that matches, byte flips, and forged metadata (wrong types, missing
entries, extra nesting, huge numbers, NaN) that every reader must refuse."""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from lcfusion.engine.modelfile.header import checksum

#: The session fixture of a trained model of each family (tests/conftest.py).
FAMILY_FIXTURES = {"fgunet": "trained", "mrfusion": "trained_mrfusion",
                   "twinns": "trained_twinns", "randomforest": "trained_randomforest"}
DELETE = object()
NAN, INF = float("nan"), float("inf")


@dataclass(frozen=True)
class ModelBytes:
    """A model file's bytes: length prefix, JSON header (tensor table, metadata), tensor data."""

    data: bytes

    @cached_property
    def header_end(self) -> int:
        return 8 + struct.unpack("<Q", self.data[:8])[0]

    @cached_property
    def header(self) -> dict:
        return json.loads(self.data[8: self.header_end])

    @property
    def table(self) -> dict:
        return {k: v for k, v in self.header.items() if k != "__metadata__"}

    @property
    def tensor_data(self) -> bytes:
        return self.data[self.header_end:]

    @property
    def metadata_text(self) -> str:
        return self.header["__metadata__"]["lcfusion"]

    @property
    def metadata(self) -> dict:
        return json.loads(self.metadata_text)

    @cached_property
    def regions(self) -> dict[str, tuple[range, ...]]:
        """Byte offsets of the length prefix, the metadata JSON, the rest of the header (tensor
        table, checksum, padding) and the tensor data."""
        raw = self.data[8: self.header_end]
        quoted = json.dumps(self.metadata_text, ensure_ascii=False)[1:-1].encode()
        start = 8 + raw.index(b'"lcfusion":"') + len(b'"lcfusion":"')
        end = start + len(quoted)
        assert self.data[start:end] == quoted
        return {"length prefix": (range(8),), "metadata": (range(start, end),),
                "tensor table": (range(8, start), range(end, self.header_end)),
                "tensor data": (range(self.header_end, len(self.data)),)}

    @property
    def padding(self) -> range:
        """The spaces safetensors pads its header with."""
        return range(8 + len(self.data[8: self.header_end].rstrip(b" ")), self.header_end)

    def flipped(self, offset: int, mask: int) -> bytes:
        return self.data[:offset] + bytes([self.data[offset] ^ mask]) + self.data[offset + 1:]

    def forge(self, metadata: dict | str, table: dict | None = None,
              tensor_data: bytes | None = None) -> bytes:
        """This file with other metadata (or tensors) and a checksum that matches them: what a
        faulty writer, or anyone who recomputes the checksum, can produce."""
        text = metadata if isinstance(metadata, str) else json.dumps(metadata)
        table = self.table if table is None else table
        data = self.tensor_data if tensor_data is None else tensor_data
        version_1 = isinstance(metadata, dict) and metadata.get("format_version") == 1
        digest = checksum(text, data, None if version_1 else table)
        raw = json.dumps({"__metadata__": {"lcfusion": text, "sha256": digest}, **table}).encode()
        raw += b" " * (-len(raw) % 8)
        return struct.pack("<Q", len(raw)) + raw + data


def pick(rng: random.Random, ranges: tuple[range, ...]) -> int:
    """A random offset, uniform over the ranges together."""
    index = rng.randrange(sum(len(r) for r in ranges))
    for span in ranges:
        if index < len(span):
            return span[index]
        index -= len(span)
    raise AssertionError("unreachable")


def edit(metadata: dict, path: str, change: Any) -> dict:
    """A copy of `metadata` whose entry at the dotted `path` is deleted (`DELETE`), replaced, or
    transformed (a callable of the old value)."""
    copy = json.loads(json.dumps(metadata))
    *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
    container = copy
    for key in parents:
        container = container[key]
    if change is DELETE:
        del container[last]
    else:
        container[last] = change(container[last]) if callable(change) else change
    return copy


def nested(depth: int) -> Callable[[Any], Any]:
    def wrap(value: Any) -> Any:
        for _ in range(depth):
            value = [value]
        return value
    return wrap


def shorten(value: list) -> list:
    return value[:-1]


def as_list(value: Any) -> list:
    return [value]


def as_object(value: Any) -> dict:
    return {"value": value}


#: Forgeries every family must refuse: (dotted path, DELETE, new value or change of the value).
COMMON_FORGERIES = [
    ("family", 7), ("family", "resnet"), ("family", DELETE), ("format_version", "2"),
    ("format_version", 2.0), ("format_version", True), ("format_version", 0),
    ("format_version", 10 ** 30), ("format", DELETE), ("classes", DELETE), ("classes", "water"),
    ("classes", []), ("classes", as_object), ("classes.0", as_list), ("classes.0.code", "1"),
    ("classes.0.code", -1), ("classes.0.code", 65535), ("classes.0.code", 10 ** 30),
    ("classes.0.code", NAN), ("classes.0.code", 1.5), ("classes.0.name", None),
    ("classes.0.name", as_list), ("classes.0.color", "red"), ("classes.0.color", 255),
    ("classes.0.color", DELETE), ("classes.0.index", 5), ("classes.1.code", 1),
    ("metrics", []), ("metrics.per_class", as_object), ("metrics.confusion", [["1"]]),
    ("metrics.confusion.1", shorten),
    ("metrics.kappa", "high"), ("training", "fast"), ("training.history", [{"epoch": "1"}]),
    ("training.history", [{"epoch": 1, "val_loss": "low"}]), ("training.seconds", INF),
    ("training.seconds", 10 ** 400), ("training.best_epoch", -1),
    ("training.settings", nested(40)), ("training.split_summary", as_object),
    ("training.kept", "last"), ("training.kept", {"rule": "best-or-last", "epoch": 2}),
    ("training.kept", {"candidates": [{"epoch": 2, "validation_oa": 1.5}] * 2,
                       "rule": "best-or-last", "epoch": 2}),
    ("training.kept", {"candidates": [{"validation_oa": 0.5, "epoch": 2}],
                       "rule": "best-or-last", "epoch": 2}),
    ("created", 2024),
]
FAMILY_FORGERIES = {
    "fgunet": [
        ("architecture", DELETE), ("inputs", DELETE), ("normalization", DELETE),
        ("architecture.n_classes", "8"), ("architecture.n_classes", 10 ** 30),
        ("architecture.n_classes", 7), ("architecture.chunk_channels", -30),
        ("architecture.n_chunks", 3), ("architecture.unet_widths", [1e308] * 3),
        ("architecture.unet_widths", shorten), ("architecture.dropout", NAN),
        ("inputs.series", as_list), ("inputs.series.n_dates", "6"),
        ("inputs.series.n_dates", 0), ("inputs.series.bands_per_date", 2 ** 70),
        ("inputs.series.band_names", "B02"), ("inputs.series.band_names", shorten),
        ("inputs.series.dates", shorten), ("inputs.series.gapfill", "no"),
        ("normalization.low", shorten), ("normalization.high", as_object),
        ("normalization.low.0", NAN), ("normalization.high.0", INF),
        ("normalization.low.0", "291"), ("normalization.percentiles", [3])],
    "mrfusion": [
        ("architecture.ratio", "4"), ("architecture.ratio", 0), ("architecture.ratio", 2),
        ("architecture.patch_size", 8), ("architecture.patch_size", 34),
        ("architecture.ms_channels", 5), ("architecture.branches", "all"),
        ("architecture.ms_widths", [256, 512, -1]), ("inputs.ms.bands", "4"),
        ("inputs.ms.band_names", [1, 2, 3, 4]), ("inputs.ms", DELETE), ("inputs.pan", DELETE),
        ("inputs.alignment.ratio", 2), ("normalization.ms.low", shorten),
        ("normalization.pan", as_list), ("normalization.ms.high.3", NAN)],
    "twinns": [
        ("architecture.sources", "s3"), ("architecture.patch_size", 4),
        ("architecture.patch_size", "5"), ("architecture.auxiliary", "yes"),
        ("architecture.cnn_widths", as_object), ("architecture.layers", 12),
        ("architecture.s2_channels", 17), ("architecture.s1_dates", 7),
        ("inputs.s1_scale", "dB"), ("inputs.indices.indices", ["NDXI"]),
        ("inputs.indices.indices", shorten), ("inputs.indices", "NDVI"),
        ("inputs.indices.roles.nir", "B99"), ("inputs.s2.features", shorten),
        ("inputs.s1", DELETE), ("inputs.s2.masked", 1), ("normalization.s2.low", shorten),
        ("normalization.s1", [])],
    "randomforest": [
        ("architecture.source", "s1"), ("architecture.source", "panms"),
        ("architecture.features", "voxels"), ("architecture.patch_size", 4),
        ("architecture.n_features", 95), ("architecture.feature_names", shorten),
        ("architecture.ratio", "none"), ("inputs.source", 2), ("inputs.source", DELETE),
        ("inputs.s2.gapfill", None), ("inputs.s2", DELETE), ("inputs.indices.indices", [NAN]),
        ("inputs.indices.roles.red", "²"), ("inputs.s2.features", shorten),
        ("inputs.s2.n_dates", 5)],
}
#: Metadata texts that are not what an lcfusion writer writes.
TEXT_FORGERIES = {
    "a list": "[]", "null": "null", "text": '"lcfusion-model"', "cut JSON": '{"format": "lc',
    "a 5000-digit number": '{"format": "lcfusion-model", "format_version": ' + "9" * 5000 + "}",
    "nesting beyond the parser": "[" * 100_000 + "]" * 100_000,
    "NaN": "NaN", "a lone surrogate": '{"format": "\\ud800"}',
}


def forgery_name(path: str, change: Any) -> str:
    shown = ("deleted" if change is DELETE else change.__name__ if callable(change)
             else json.dumps(change)[:20])
    return f"{path} {shown}"


def forged_metadata(model: ModelBytes, family: str) -> dict[str, bytes]:
    """Name -> model file, for every forgery the family must refuse."""
    forgeries = COMMON_FORGERIES + FAMILY_FORGERIES[family]
    mutants = {forgery_name(path, change): model.forge(edit(model.metadata, path, change))
               for path, change in forgeries}
    assert len(mutants) == len(forgeries), "two forgeries have the same name"
    mutants.update({f"metadata text: {name}": model.forge(text)
                    for name, text in TEXT_FORGERIES.items()})
    return mutants


def damaged(model: ModelBytes, seed: str, flips: int, truncations: int) -> dict[str, bytes]:
    """Name -> model file: random byte flips in each region, random truncations."""
    rng = random.Random(seed)
    mutants = {}
    for region, ranges in model.regions.items():
        for _ in range(flips):
            offset = pick(rng, ranges)
            mutants[f"{region} byte {offset} flipped"] = model.flipped(offset,
                                                                       rng.randrange(1, 256))
    for _ in range(truncations):
        size = rng.randrange(len(model.data))
        mutants[f"cut at byte {size}"] = model.data[:size]
    return mutants
