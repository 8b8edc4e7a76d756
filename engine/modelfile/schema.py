"""What a model file must hold before anything reads it: the types and ranges of its metadata,
per family, and a tensor table that fits its data.

The checksum proves that a file holds what its writer wrote, not that the writer wrote sense: a
faulty writer, or anyone who recomputes the checksum, can put text where a number belongs. Every
metadata entry that the plugin or the engine reads is declared here; `check_metadata` refuses a
file that breaks a declaration, naming the entry, so no reader meets a value it does not expect.
Pure Python: the plugin imports it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..io.alignment import ALIGN_METHODS
from ..io.indices import INDICES as INDEX_ROLES
from ..io.indices import S2_ROLES

FAMILIES = ("fgunet", "mrfusion", "twinns", "randomforest")
#: Choices of the engine (families/*/network.py, io/sources.py, families/randomforest/),
#: which import torch or rasterio; tests/engine/test_modelfile_fuzz.py checks that they agree.
MRFUSION_BRANCHES = ("both", "pan", "ms")
TWINNS_SOURCES = ("both", "s1", "s2")
TWINNS_BRANCHES = ("both", "cnn", "rnn")
S1_SCALES = ("db", "linear")
FOREST_SOURCES = ("s2", "s1s2", "panms")
FEATURE_KINDS = ("pixel", "patch_flat", "patch_stats")
#: safetensors dtypes a model file may hold, with their sizes in bytes.
DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "F16": 2, "BF16": 2, "I32": 4, "F32": 4,
               "I64": 8, "F64": 8}

MAX_CODE = 65534  # class maps are uint16 at most, 65535 being nodata
MAX_CLASSES = MAX_CODE + 1
MAX_DATES = 10_000
MAX_BANDS = 10_000
MAX_WIDTH = 8192
MAX_PATCH = 1024
MAX_RATIO = 64
MAX_COUNT = 2 ** 53
MAX_DEPTH = 12
MAX_TENSORS = 100_000
MAX_DIMENSIONS = 8
#: The most seeded splits a training repeats over (families/repeats.py), so the most members
#: an ensemble has.
MAX_REPEATS = 100
#: The tensors of an ensemble's member i (0 to 99) are named ``members.<i>.<the member's
#: name>``, i without leading zeros (as torch names the modules of a list).
MEMBER_TENSOR = re.compile(r"members\.(0|[1-9][0-9]?)\.(.+)", re.DOTALL)


class Invalid(Exception):
    """`where` (an entry) breaks its declaration: `what` says how."""

    def __init__(self, where: str, what: str):
        super().__init__(f"{where} {what}")
        self.where, self.what = where, what


class Disagreement(Invalid):
    """Entries that are each valid but do not fit together."""

    def __init__(self, what: str):
        super().__init__("its metadata entries disagree:", what)


#: A check of one value at `where`; `complete` also requires the entries a reader needs.
Check = Callable[[Any, str, bool], None]


def shown(value: Any) -> str:
    """A value as a message quotes it: short, printable, containers by their size."""
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return f"an object of {len(value)} entries"
    text = json.dumps(value, ensure_ascii=False).encode("utf-8", "backslashreplace").decode()
    return text if len(text) <= 40 else text[:37] + "..."


def refuse(where: str, expected: str, value: Any) -> None:
    raise Invalid(where, f"must be {expected}, not {shown(value)}")


def child(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


def integer(low: int = 0, high: int = MAX_COUNT, odd: bool = False) -> Check:
    def check(value, where, complete):
        if (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high
                or (odd and value % 2 == 0)):
            refuse(where, f"{'an odd' if odd else 'a'} whole number from {low} to {high}", value)
    return check


def number(low: float = -1e300, high: float = 1e300, nonfinite: bool = False) -> Check:
    """A number in [low, high] (NaN and infinities only with `nonfinite`)."""
    def check(value, where, complete):
        if nonfinite and isinstance(value, float) and not math.isfinite(value):
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                low <= value <= high):
            refuse(where, f"a number from {low:g} to {high:g}", value)
    return check


def text(pattern: str | None = None, expected: str = "text") -> Check:
    compiled = re.compile(pattern) if pattern else None

    def check(value, where, complete):
        if not isinstance(value, str) or (compiled and not compiled.fullmatch(value)):
            refuse(where, expected, value)
    return check


def boolean(value, where, complete):
    if not isinstance(value, bool):
        refuse(where, "true or false", value)


def anything(value, where, complete):
    return None


def one_of(*choices: str) -> Check:
    def check(value, where, complete):
        if not isinstance(value, str) or value not in choices:
            refuse(where, f"one of {', '.join(choices)}", value)
    return check


def nullable(item: Check) -> Check:
    def check(value, where, complete):
        if value is not None:
            item(value, where, complete)
    return check


def array(item: Check, low: int = 0, high: int = MAX_COUNT) -> Check:
    """A list of `low` to `high` items."""
    def check(value, where, complete):
        if not isinstance(value, list):
            refuse(where, "a list", value)
        if not low <= len(value) <= high:
            raise Invalid(where, f"must hold {low} to {high} items, not {len(value)}")
        for index, entry in enumerate(value):
            item(entry, child(where, index), complete)
    return check


def matrix(item: Check) -> Check:
    """A list of rows (lists of `item`) of one length."""
    rows = array(array(item))

    def check(value, where, complete):
        rows(value, where, complete)
        if len({len(row) for row in value}) > 1:
            raise Invalid(where, "must have rows of one length")
    return check


def mapping(item: Check) -> Check:
    """An object whose every value is an `item`."""
    def check(value, where, complete):
        if not isinstance(value, dict):
            refuse(where, "an object", value)
        for key, entry in value.items():
            item(entry, child(where, key), complete)
    return check


def record(required: dict[str, Check], optional: dict[str, Check] | None = None,
           closed: bool = False, always: bool = False) -> Check:
    """An object with the `required` entries (missing ones refused when `complete`, or
    `always`) and the `optional` ones; other entries are ignored, or refused when `closed`."""
    fields = {**required, **(optional or {})}

    def check(value, where, complete):
        if not isinstance(value, dict):
            refuse(where, "an object", value)
        for key, item in fields.items():
            if key in value:
                item(value[key], child(where, key), complete)
            elif (complete or always) and key in required:
                raise Invalid(child(where, key), "is missing")
        unknown = sorted(set(value) - set(fields)) if closed else []
        if unknown:
            raise Invalid(child(where, unknown[0]), "is not an entry lcfusion knows")
    return check


def variant(key: str, options: dict[str, Check]) -> Check:
    """An object whose `key` entry chooses its declaration among `options`."""
    def check(value, where, complete):
        if not isinstance(value, dict):
            refuse(where, "an object", value)
        if key in value:
            one_of(*options)(value[key], child(where, key), complete)
            options[value[key]](value, where, complete)
        elif complete:
            raise Invalid(child(where, key), "is missing")
    return check


# Rules across entries (checked on complete metadata) -----------------------------------------

def lookup(metadata: dict, path: str) -> Any:
    """The entry at a dotted path; KeyError when it (or an object above it) is absent."""
    value: Any = metadata
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise KeyError(path)
        value = value[key]
    return value


@dataclass(frozen=True)
class Quantity:
    """A value derived from the metadata, named in messages."""

    name: str
    of: Callable[[dict], Any]


def entry(path: str) -> Quantity:
    return Quantity(path, lambda metadata: lookup(metadata, path))


def count(path: str) -> Quantity:
    return Quantity(f"the number of {path}", lambda metadata: len(lookup(metadata, path)))


def product(first: str, second: str) -> Quantity:
    return Quantity(f"{first} x {second}",
                    lambda metadata: lookup(metadata, first) * lookup(metadata, second))


def channels(source: str) -> Quantity:
    """Channels per date of a series: its bands, plus the spectral indices for Sentinel-2."""
    def of(metadata: dict) -> int:
        bands = lookup(metadata, f"inputs.{source}.bands_per_date")
        indices = (metadata["inputs"].get("indices") or {}).get("indices", [])
        return bands + (len(indices) if source == "s2" else 0)
    return Quantity(f"the bands per date of inputs.{source} plus its indices", of)


Rule = Callable[[dict], None]


def agree(first: Quantity, second: Quantity) -> Rule:
    """Both quantities must be equal; a rule on an absent optional entry does not apply."""
    def rule(metadata: dict) -> None:
        try:
            a, b = first.of(metadata), second.of(metadata)
        except KeyError:
            return
        if a != b:
            raise Disagreement(f"{first.name} is {shown(a)} but {second.name} is {shown(b)}")
    return rule


def class_table(metadata: dict) -> None:
    """Indices 0..n-1 in order (the network's outputs) and unique codes."""
    seen: set[int] = set()
    for position, item in enumerate(metadata["classes"]):
        if item["index"] != position:
            raise Invalid(f"classes[{position}].index", f"must be {position}, not "
                                                        f"{item['index']}")
        if item["code"] in seen:
            raise Invalid(f"classes[{position}].code", f"repeats the code {item['code']}")
        seen.add(item["code"])


def index_roles(metadata: dict) -> None:
    """The band of each role the indices need is a Sentinel-2 band name or number."""
    try:
        indices = lookup(metadata, "inputs.indices.indices")
        bands = lookup(metadata, "inputs.s2.band_names")
    except KeyError:
        return
    roles = {**S2_ROLES, **metadata["inputs"]["indices"].get("roles", {})}
    for role in sorted({role for name in indices for role in INDEX_ROLES[name]}):
        band = roles[role].strip()
        number = int(band) if re.fullmatch(r"[0-9]{1,8}", band) else 0
        if band not in bands and not 1 <= number <= len(bands):
            raise Invalid(f"inputs.indices.roles.{role}", f"names the band {shown(band)}, "
                                                          "which is not in inputs.s2")


def mrfusion_patch(metadata: dict) -> None:
    """The patch is a whole number of MS pixels, large enough for each branch used."""
    architecture = metadata["architecture"]
    size, ratio = architecture["patch_size"], architecture["ratio"]
    branches = architecture.get("branches", "both")
    if (size % ratio or (branches != "ms" and size < 18)
            or (branches != "pan" and size // ratio < 7)):
        raise Invalid("architecture.patch_size", f"must be a multiple of the ratio {ratio}, at "
                  "least 18 for the PAN branch and 7 MS pixels for the MS branch, not "
                  f"{size}")


# Declarations --------------------------------------------------------------------------------

NAMES = array(text())
DATES = array(nullable(text()))
WIDTHS = array(integer(1, MAX_WIDTH), 3, 3)
DROPOUT = number(0.0, 1.0)
RATE = nullable(number())
LOSS = nullable(number(nonfinite=True))
SEED = integer(-(2 ** 63), 2 ** 64)
PERCENTILES = record({"low": array(number()), "high": array(number())},
                     {"method": one_of("percentile"), "percentiles": array(number(0, 100), 2, 2)})
SERIES_FIELDS = {"n_dates": integer(1, MAX_DATES), "bands_per_date": integer(1, MAX_BANDS),
                 "band_names": NAMES, "dates": DATES, "masked": boolean, "gapfill": boolean}
SERIES = record(SERIES_FIELDS, {"features": NAMES, "dates_per_chunk": integer(0, MAX_DATES)})
FEATURE_SERIES = record({**SERIES_FIELDS, "features": NAMES})
INDEX_CONFIG = nullable(record({"indices": array(one_of(*INDEX_ROLES))},
                              {"roles": mapping(text())}))
PAN = record({"band_names": array(text(), 1, 1)}, {"dates": DATES})
MS = record({"bands": integer(1, MAX_BANDS), "band_names": NAMES}, {"dates": DATES})
ALIGNMENT = record({"ratio": integer(1, MAX_RATIO)},
                   {"offset_rows": integer(-MAX_COUNT, MAX_COUNT),
                    "offset_cols": integer(-MAX_COUNT, MAX_COUNT),
                    "exact_ratio": number(), "misalignment": number()})
PAN_MS = {"pan": PAN, "ms": MS, "alignment": ALIGNMENT}
ALIGN_MS = {"align_ms": one_of(*ALIGN_METHODS)}
CLASS = record({"index": integer(0, MAX_CLASSES), "code": integer(0, MAX_CODE), "name": text(),
                "color": text("#[0-9A-Fa-f]{6}", "a colour #rrggbb")}, always=True)
PER_CLASS = record({}, {"code": integer(0, MAX_CODE), "name": text(), "precision": RATE,
                        "recall": RATE, "f1": RATE, "support": integer(),
                        "in_reference": boolean})
METRICS = nullable(record({}, {
    "overall_accuracy": RATE, "kappa": RATE, "mean_f1": RATE, "n_pixels": integer(),
    "confusion": matrix(integer()), "confusion_axes": text(),
    "per_class": array(PER_CLASS)}))
SPLIT_ROW = record({}, {"code": integer(0, MAX_CODE), "name": text(),
                        **{f"{part}_{kind}": integer()
                           for part in ("train", "validation", "test")
                           for kind in ("objects", "pixels")}})
EPOCH = record({}, {"epoch": integer(0, 10 ** 6), "train_loss": LOSS, "val_loss": LOSS,
                    "val_accuracy": nullable(number(0.0, 1.0)),
                    "learning_rate": nullable(number(0.0))})
#: How keep "best-or-last" chose the kept epoch: the OA of each candidate on the validation
#: polygons' pixels.
KEPT = nullable(record({"rule": one_of("best-or-last"), "epoch": integer(0, 10 ** 6),
                        "candidates": array(record({"epoch": integer(0, 10 ** 6),
                                                    "validation_oa": number(0.0, 1.0)},
                                                   always=True), 2, 2)}, always=True))
TRAINING = nullable(record({}, {
    "settings": mapping(anything), "split": mapping(anything), "split_summary": array(SPLIT_ROW),
    "history": array(EPOCH), "best_epoch": nullable(integer(0, 10 ** 6)), "kept": KEPT,
    "device": text(),
    "threads": integer(), "seconds": nullable(number(0.0)),
    "samples_per_second": nullable(number(0.0))}))
REPEATS = record({}, {"runs": array(record({}, {"seed": SEED, "overall_accuracy": RATE,
                                                 "kappa": RATE, "mean_f1": RATE})),
                      "mean": mapping(RATE), "std": mapping(RATE)})
ENSEMBLE_ENTRIES = record({"members": integer(2, MAX_REPEATS),
                           "seeds": array(SEED, 2, MAX_REPEATS)}, always=True, closed=True)


def ensemble(value: Any, where: str, complete: bool) -> None:
    """The members of an ensemble of repeated splits and the split seed of each."""
    ENSEMBLE_ENTRIES(value, where, complete)
    if len(value["seeds"]) != value["members"]:
        raise Invalid(child(where, "seeds"), f"must hold one seed per member "
                                             f"({value['members']}), not {len(value['seeds'])}")


ATTENTION = mapping(record({}, {"dates": DATES,
                                "by_class": mapping(array(number(nonfinite=True))),
                                "pixels": mapping(integer()), "pixels_from": text()}))
#: An ONNX export's graph: the names of its inputs, in the order the family feeds them, and
#: of its output (class probabilities).
ONNX = record({"inputs": array(text(), 1, 8), "output": text()}, always=True)
#: A prior shift of the class probabilities (`inference.priors`): its strength, and per class
#: the log of (share of the training polygons' pixels / share of the training sample).
CLASS_PRIORS = record({"strength": number(0.0, 10.0),
                       "log_ratio": array(number(-1e3, 1e3), 1, MAX_CLASSES)},
                      always=True, closed=True)
COMMON = {"created": text(), "lcfusion_version": text(), "metrics": METRICS,
          "training": TRAINING, "repeats": nullable(REPEATS), "attention": nullable(ATTENTION),
          "ensemble": ensemble, "onnx": ONNX, "class_priors": nullable(CLASS_PRIORS)}

FAMILY_ENTRIES: dict[str, dict[str, Check]] = {
    "fgunet": {
        "architecture": record(
            {"chunk_channels": integer(1, MAX_DATES * MAX_BANDS),
             "n_chunks": integer(1, MAX_DATES), "n_classes": integer(1, MAX_CLASSES)},
            {"unet_widths": WIDTHS, "pixel_widths": WIDTHS, "dropout": DROPOUT}),
        "inputs": record({"series": SERIES}),
        "normalization": PERCENTILES},
    "mrfusion": {
        "architecture": record(
            {"ms_channels": integer(1, MAX_BANDS), "ratio": integer(1, MAX_RATIO),
             "patch_size": integer(1, MAX_PATCH), "n_classes": integer(1, MAX_CLASSES)},
            {"branches": one_of(*MRFUSION_BRANCHES), "pan_widths": WIDTHS,
             "ms_widths": WIDTHS, "dropout": DROPOUT}),
        "inputs": record({"pan": PAN, "ms": MS}, {"alignment": ALIGNMENT, **ALIGN_MS}),
        "normalization": record({"pan": PERCENTILES, "ms": PERCENTILES})},
    "twinns": {
        "architecture": record(
            {"s1_dates": integer(1, MAX_DATES), "s1_channels": integer(1, MAX_BANDS),
             "s2_dates": integer(1, MAX_DATES), "s2_channels": integer(1, MAX_BANDS),
             "n_classes": integer(1, MAX_CLASSES)},
            {"patch_size": integer(1, MAX_PATCH, odd=True),
             "sources": one_of(*TWINNS_SOURCES), "branches": one_of(*TWINNS_BRANCHES),
             "auxiliary": boolean, "cnn_widths": WIDTHS, "rnn_hidden": integer(1, MAX_WIDTH),
             "fusion_hidden": integer(1, MAX_WIDTH), "dropout": DROPOUT}, closed=True),
        "inputs": record({"s1": FEATURE_SERIES, "s2": FEATURE_SERIES, "indices": INDEX_CONFIG,
                          "s1_scale": one_of(*S1_SCALES)}),
        "normalization": record({"s1": PERCENTILES, "s2": PERCENTILES})},
    "randomforest": {
        "architecture": record(
            {"source": one_of(*FOREST_SOURCES), "features": one_of(*FEATURE_KINDS),
             "patch_size": integer(1, MAX_PATCH, odd=True), "n_features": integer(1),
             "feature_names": NAMES, "n_classes": integer(1, MAX_CLASSES),
             "ratio": nullable(integer(1, MAX_RATIO))},
            {"n_trees": integer(1), "max_depth": nullable(integer()),
             "max_features": text(), "depth_reached": integer()}),
        "inputs": variant("source", {
            "s2": record({"s2": FEATURE_SERIES, "indices": INDEX_CONFIG}),
            "s1s2": record({"s1": FEATURE_SERIES, "s2": FEATURE_SERIES, "indices": INDEX_CONFIG,
                            "s1_scale": one_of(*S1_SCALES)}),
            "panms": record(PAN_MS, ALIGN_MS)}),
        "normalization": mapping(anything)},
}


def series_rules(source: str) -> list[Rule]:
    prefix = f"inputs.{source}"
    return [agree(count(f"{prefix}.band_names"), entry(f"{prefix}.bands_per_date")),
            agree(count(f"{prefix}.dates"), entry(f"{prefix}.n_dates")),
            agree(count(f"{prefix}.features"), channels(source))]


def normalization_rules(prefix: str, channel_count: Quantity) -> list[Rule]:
    return [agree(count(f"{prefix}.{bound}"), channel_count) for bound in ("low", "high")]


def twinns_rules() -> list[Rule]:
    rules = []
    for source in ("s1", "s2"):
        rules += [*series_rules(source),
                  agree(entry(f"architecture.{source}_dates"), entry(f"inputs.{source}.n_dates")),
                  agree(entry(f"architecture.{source}_channels"),
                        count(f"inputs.{source}.features")),
                  *normalization_rules(f"normalization.{source}", product(
                      f"architecture.{source}_dates", f"architecture.{source}_channels"))]
    return rules


FAMILY_RULES: dict[str, list[Rule]] = {
    "fgunet": [*series_rules("series"),
               agree(product("architecture.chunk_channels", "architecture.n_chunks"),
                     product("inputs.series.n_dates", "inputs.series.bands_per_date")),
               *normalization_rules("normalization", product(
                   "inputs.series.n_dates", "inputs.series.bands_per_date"))],
    "mrfusion": [agree(count("inputs.ms.band_names"), entry("inputs.ms.bands")),
                 agree(entry("architecture.ms_channels"), entry("inputs.ms.bands")),
                 agree(entry("architecture.ratio"), entry("inputs.alignment.ratio")),
                 mrfusion_patch,
                 *normalization_rules("normalization.pan", count("inputs.pan.band_names")),
                 *normalization_rules("normalization.ms", entry("inputs.ms.bands"))],
    "twinns": [*twinns_rules(), index_roles],
    "randomforest": [agree(entry("architecture.source"), entry("inputs.source")),
                     agree(count("architecture.feature_names"), entry("architecture.n_features")),
                     agree(entry("architecture.ratio"), entry("inputs.alignment.ratio")),
                     agree(count("inputs.ms.band_names"), entry("inputs.ms.bands")),
                     *series_rules("s1"), *series_rules("s2"), index_roles],
}
COMMON_RULES: list[Rule] = [agree(count("classes"), entry("architecture.n_classes")),
                            agree(count("class_priors.log_ratio"), count("classes")),
                            class_table]


def nesting(value: Any, where: str = "", depth: int = 0) -> None:
    """Refuse objects and lists nested deeper than any reader goes."""
    if depth > MAX_DEPTH:
        raise Invalid(where, f"is nested more than {MAX_DEPTH} levels deep")
    items = (value.items() if isinstance(value, dict)
             else enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        nesting(item, child(where, key), depth + 1)


def check_metadata(metadata: dict, complete: bool) -> None:
    """Raise `Invalid` when an entry has the wrong type or range. `complete` also requires
    every entry the family's readers need and the agreement between entries (lengths, counts);
    otherwise only the entries present are checked."""
    try:
        nesting(metadata)
        family = metadata.get("family")
        one_of(*FAMILIES)(family, "family", True)
        required = {"classes": array(CLASS, 1, MAX_CLASSES), **FAMILY_ENTRIES[family]}
        record(required, COMMON)(metadata, "", complete)
        if complete:
            for rule in (*COMMON_RULES, *FAMILY_RULES[family]):
                rule(metadata)
    except Disagreement:
        raise
    except Invalid as exc:
        raise Invalid(f"its metadata entry {exc.where}", exc.what) from None


TENSOR = record({"dtype": one_of(*DTYPE_SIZES),
                 "shape": array(integer(0, MAX_COUNT), 0, MAX_DIMENSIONS),
                 "data_offsets": array(integer(0, MAX_COUNT), 2, 2)}, closed=True)


def check_tensor_table(table: dict, data_size: int) -> None:
    """Each tensor's dtype and shape give its byte count; together the tensors tile the
    `data_size` bytes after the header, in order, without gaps or overlaps."""
    if len(table) > MAX_TENSORS:
        raise Invalid("the tensor table", f"lists more than {MAX_TENSORS} tensors")
    spans = []
    for name, tensor in table.items():
        where = f"the tensor {shown(name)}"
        TENSOR(tensor, where, True)
        start, end = tensor["data_offsets"]
        size = math.prod(tensor["shape"]) * DTYPE_SIZES[tensor["dtype"]]
        if end - start != size:
            raise Invalid(where, f"has {end - start} bytes for a {tensor['dtype']} tensor of "
                                 f"shape {tensor['shape']} ({size} bytes)")
        spans.append((start, end, where))
    position = 0
    for start, end, where in sorted(spans):
        if start != position:
            raise Invalid(where, f"starts at byte {start} of the data, not {position}")
        position = end
    if position != data_size:
        raise Invalid("the tensor table", f"covers {position} bytes but the file holds "
                                          f"{data_size} bytes of tensor data")


def check_member_tensors(metadata: dict, names: Iterable[str]) -> None:
    """An ensemble's tensors (metadata entry ``ensemble``) are its members' (`MEMBER_TENSOR`):
    each member from 0 to members - 1 has tensors, all of the same names. Call it on metadata
    that passed `check_metadata`."""
    if "ensemble" not in metadata:
        return
    members = metadata["ensemble"]["members"]
    found: dict[int, set[str]] = {}
    for name in names:
        match = MEMBER_TENSOR.fullmatch(name)
        if match is None:
            raise Invalid(f"the tensor {shown(name)}", "belongs to no member of the ensemble")
        found.setdefault(int(match[1]), set()).add(match[2])
    if sorted(found) != list(range(members)):
        raise Invalid("the tensor table", f"holds the tensors of {_members(found)} but the "
                                          f"metadata entry ensemble.members says {members}")
    if any(tensors != found[0] for tensors in found.values()):
        raise Invalid("the tensor table", "holds members with different tensors")


def _members(found: dict[int, set[str]]) -> str:
    """'3 members' when they are numbered 0, 1, 2, else their numbers."""
    numbers = sorted(found)
    if numbers == list(range(len(numbers))):
        return f"{len(numbers)} members"
    return "members " + ", ".join(str(n) for n in numbers[:10])
