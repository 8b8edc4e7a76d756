"""Fuzzing the model files of the four families (seeded, so every run tries the same mutants).

Random byte flips (length prefix, tensor table, metadata, tensor data), truncations, forged
metadata with a recomputed checksum (wrong types, missing entries, extra nesting, huge numbers,
NaN), and pickles. Each mutant is refused with an LcfusionError naming MODEL, or loads to exactly
the model it came from; forged metadata that passes the checks is read by every reader (family
loader, training report, classification) without any other exception; nothing is unpickled.
Run with ``-s`` to see the figures per family.
"""

from __future__ import annotations

import os
import pickle
import random
import struct
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import cropped_pair, twinns_inputs
from model_mutants import (
    DELETE,
    INF,
    NAN,
    ModelBytes,
    as_list,
    as_object,
    edit,
    forged_metadata,
    nested,
    pick,
)
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from lcfusion.engine import cli
from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.families.fgunet.commands import load_fgunet
from lcfusion.engine.families.mrfusion.commands import load_mrfusion
from lcfusion.engine.families.mrfusion.network import BRANCHES as MRFUSION_BRANCHES
from lcfusion.engine.families.randomforest.commands import SOURCES as FOREST_SOURCES
from lcfusion.engine.families.randomforest.commands import load_randomforest
from lcfusion.engine.families.randomforest.pixelfeatures import FEATURE_KINDS
from lcfusion.engine.families.twinns.commands import load_twinns
from lcfusion.engine.families.twinns.network import BRANCHES as TWINNS_BRANCHES
from lcfusion.engine.families.twinns.network import SOURCES as TWINNS_SOURCES
from lcfusion.engine.io.sources import S1_SCALES
from lcfusion.engine.jobs import Job, write_job
from lcfusion.engine.modelfile import schema as modelschema
from lcfusion.engine.modelfile.header import read_header
from lcfusion.engine.modelfile.storage import load_model
from lcfusion.engine.progress import NullReporter
from lcfusion.engine.reports.html import training_report_html

SEED = 20240611
FLIPS = 200
RANDOM_FORGERIES = 120
#: Forgeries that pass, of what the classification reads, classified per family (a few seconds
#: each).
CLASSIFIED = 2
#: How the figures name the reasons of the refusals (the first that matches).
REASONS = (("checksum does not match", "checksum"), ("not valid JSON", "not JSON"),
           ("too short", "truncated"), ("truncated", "truncated"),
           ("header length", "header length"), ("no lcfusion metadata", "no lcfusion metadata"),
           ("does not describe", "not lcfusion metadata"), ("format version", "format version"),
           ("newer lcfusion", "format version"), ("the tensor", "tensor table"),
           ("its metadata entr", "metadata entry"), ("inconsistent metadata", "weights"),
           ("is a ", "family"))
#: The reasons a forgery with a matching checksum is refused for.
FORGERY_REFUSALS = ("metadata entry", "not lcfusion metadata", "format version", "family",
                    "not JSON")
#: The reasons a byte flip in each region is refused for: the checks before the schema.
INTEGRITY = ("checksum", "not JSON", "no lcfusion metadata", "not lcfusion metadata",
             "format version")
#: A length prefix flipped a few bytes off can still delimit valid JSON (ending inside the
#: header's trailing blanks, safetensors' padding to 8 bytes, or past it on tensor bytes that
#: happen to be blanks): the checksum, over the bytes then taken as tensors, refuses the file.
FLIP_REFUSALS = {"length prefix": ("header length", "truncated", "not JSON", "checksum"),
                 "metadata": INTEGRITY, "tensor table": INTEGRITY, "tensor data": ("checksum",)}
FIGURES: dict[str, Counter] = {}
CPU = torch.device("cpu")

pytestmark = pytest.mark.timeout(600)


# Outcomes ------------------------------------------------------------------------------------

def reason_of(error: LcfusionError) -> str:
    return next((name for words, name in REASONS if words in error.message), error.message)


def verdict(path: Path, family: str, original: ModelBytes) -> str:
    """The reason the model file is refused for; 'identical' when it loads to the original
    model, 'loaded' when it loads to another one. Any other exception fails the test."""
    try:
        metadata, state = load_model(path, family)
    except LcfusionError as error:
        assert error.parameter == "MODEL", error
        return reason_of(error)
    expected = load_tensors(original.data)
    same = (metadata == original.metadata and state.keys() == expected.keys()
            and all(torch.equal(state[k], expected[k]) for k in state))
    return "identical" if same else "loaded"


def record(family: str, kind: str, outcome: str) -> None:
    figures = FIGURES.setdefault(family, Counter())
    figures[f"{kind}: tried"] += 1
    figures[f"{kind}: {outcome}"] += 1


def show_figures(capsys, family: str, kind: str) -> None:
    with capsys.disabled():
        print(f"\n{family} {kind}: " + ", ".join(
            f"{name.split(': ', 1)[1]} {n}" for name, n in sorted(FIGURES[family].items())
            if name.startswith(f"{kind}: ")))


# Fixtures ------------------------------------------------------------------------------------



@pytest.fixture
def classify(tmp_path, scene, family) -> Callable[[Path], None]:
    """Classifies the small scene with a model file of the family (LcfusionError allowed;
    MRFusion, the slowest, a corner of it)."""
    s2 = twinns_inputs(scene, gapfill=False)
    pan, ms = cropped_pair(tmp_path / "corner", scene) if family == "mrfusion" else (None, None)
    inputs = {"fgunet": {"series": {"paths": s2["s2"]["paths"]}},
              "mrfusion": {"pan": {"paths": [str(pan)]}, "ms": {"paths": [str(ms)]}},
              "twinns": s2, "randomforest": {"s2": s2["s2"]}}[family]

    def run(model_path: Path) -> None:
        folder = tmp_path / "classified"
        folder.mkdir(exist_ok=True)
        job = write_job(folder, f"classify-{family}", inputs={"model": str(model_path), **inputs},
                        settings={"tile_size": 64},
                        outputs={"class_map": str(folder / "map.tif")})
        try:
            cli.job_command(f"classify-{family}")(Job.load(job), NullReporter())
        except LcfusionError:
            pass

    return run


def report(path: Path) -> None:
    """What the engine shows of a model file without loading it (model-info, the training
    report of model-report): readable headers only, and never another exception."""
    try:
        metadata = read_header(path).metadata
    except LcfusionError as error:
        assert error.parameter == "MODEL", error
        return
    cli.run(cli.build_parser().parse_args(["model-info", str(path)]), NullReporter())
    training_report_html(metadata)


def restore(path: Path, family: str) -> None:
    """The family's loader builds the model, or refuses the file naming MODEL."""
    loaders = {"fgunet": partial(load_fgunet, path, CPU),
               "mrfusion": partial(load_mrfusion, path, CPU),
               "twinns": partial(load_twinns, path, CPU),
               "randomforest": partial(load_randomforest, path)}
    try:
        loaders[family]()
    except LcfusionError as error:
        assert error.parameter == "MODEL", error


# Byte flips and truncations ------------------------------------------------------------------

def test_every_byte_flip_is_refused(tmp_path, capsys, family, model):
    """Each flip is refused by the checks that come before the schema (a flip in the header
    padding that turns a space into another blank changes nothing and loads the same model)."""
    rng = random.Random(f"{SEED}-flips-{family}")
    offsets = [("length prefix", i) for i in range(8)]
    for region, share in {"metadata": 0.35, "tensor table": 0.25, "tensor data": 0.4}.items():
        offsets += [(region, pick(rng, model.regions[region]))
                    for _ in range(round((FLIPS - 8) * share))]
    path = tmp_path / "flipped.lcfusion"
    path.write_bytes(model.data)
    with path.open("r+b") as handle:
        for region, offset in offsets:
            mask = rng.randrange(1, 256)
            handle.seek(offset)
            handle.write(bytes([model.data[offset] ^ mask]))
            handle.flush()
            outcome = verdict(path, family, model)
            handle.seek(offset)
            handle.write(model.data[offset: offset + 1])
            handle.flush()
            record(family, "byte flips", outcome)
            if outcome == "identical":
                assert offset in model.padding and chr(model.data[offset] ^ mask) in "\t\n\r"
            else:
                assert outcome in FLIP_REFUSALS[region], (region, offset, mask, outcome)
    assert FIGURES[family]["byte flips: tried"] == FLIPS
    show_figures(capsys, family, "byte flips")


def test_every_truncation_is_refused(tmp_path, capsys, family, model):
    rng = random.Random(f"{SEED}-truncations-{family}")
    end = model.header_end
    sizes = {0, 1, 7, 8, 9, end - 1, end, end + 1, len(model.data) - 1}
    sizes |= {rng.randrange(len(model.data)) for _ in range(25)}
    path = tmp_path / "truncated.lcfusion"
    path.write_bytes(model.data)
    for size in sorted(sizes, reverse=True):
        os.truncate(path, size)
        outcome = verdict(path, family, model)
        assert outcome not in ("identical", "loaded"), size
        record(family, "truncations", outcome)
    assert FIGURES[family]["truncations: tried"] == len(sizes)
    show_figures(capsys, family, "truncations")


# Forged metadata -----------------------------------------------------------------------------

#: Random changes of an entry: wrong types, extra nesting, huge numbers, NaN, deletion.
CHANGES = {"deleted": DELETE, "text": "x", "number": 3.5, "true": True, "null": None,
           "in a list": as_list, "in an object": as_object, "huge": 10 ** 30,
           "largest float": 1e308, "negative": -1, "NaN": NAN, "infinite": -INF,
           "empty list": [], "empty object": {}, "nested 40 deep": nested(40)}


def entry_paths(value: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every entry (of each list, the first two items)."""
    items = (list(value.items()) if isinstance(value, dict)
             else list(enumerate(value[:2])) if isinstance(value, list) else [])
    found = []
    for key, item in items:
        path = f"{prefix}.{key}" if prefix else str(key)
        found += [path, *entry_paths(item, path)]
    return found


def test_forged_metadata_of_the_wrong_types_is_refused(tmp_path, capsys, family, model):
    """Forgeries with a matching checksum: only the checks of the metadata can refuse them."""
    path = tmp_path / "forged.lcfusion"
    for name, data in forged_metadata(model, family).items():
        path.write_bytes(data)
        outcome = verdict(path, family, model)
        assert outcome in FORGERY_REFUSALS, (name, outcome)
        report(path)
        record(family, "forged metadata", outcome)
    show_figures(capsys, family, "forged metadata")


def test_forged_metadata_that_passes_is_read_by_every_reader(tmp_path, capsys, family, model,
                                                             classify):
    """Random forgeries: refused, or read by the loader and the classification without any
    exception but LcfusionError; the report reads every one whose header is readable."""
    rng = random.Random(f"{SEED}-forgeries-{family}")
    original = model.metadata
    paths = entry_paths(original)
    read = [p for p in paths if p.split(".")[0] in ("architecture", "inputs", "normalization",
                                                    "input_ranges", "classes")]
    classified, loaded = 0, Counter()
    for index in range(RANDOM_FORGERIES):
        path = rng.choice(read if index % 2 else paths)
        name, change = rng.choice(list(CHANGES.items()))
        target = tmp_path / "forged.lcfusion"
        target.write_bytes(model.forge(edit(original, path, change)))
        outcome = verdict(target, family, model)
        if outcome == "identical":
            continue  # the change did not change the entry
        assert outcome == "loaded" or outcome in FORGERY_REFUSALS, outcome
        report(target)
        if outcome == "loaded":
            if path in read and classified < CLASSIFIED:
                classify(target)
                classified += 1
            elif path in read:
                restore(target, family)
            loaded[path.split(".")[0]] += 1
        record(family, "random forgeries", outcome)
    with capsys.disabled():
        print(f"\n{family}: forgeries loaded, by entry: {dict(loaded)}; {classified} of them "
              "classified")
    show_figures(capsys, family, "random forgeries")


# Pickles -------------------------------------------------------------------------------------

class Payload:
    """A pickle that creates `marker` when it is unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickles_are_never_executed(tmp_path, family, model):
    marker = tmp_path / "pickle-was-executed"
    payload = pickle.dumps({"weights": Payload(marker)})
    path = tmp_path / "evil.lcfusion"
    torch_save = tmp_path / "torch.lcfusion"
    torch.save({"w": torch.ones(1)}, torch_save)
    metadata_is_pickle = model.forge(payload.decode("latin-1"))
    header_is_pickle = struct.pack("<Q", len(payload)) + payload + model.tensor_data
    for name, data in (("a pickle", payload), ("a torch.save file", torch_save.read_bytes()),
                       ("a pickle as the header", header_is_pickle),
                       ("a pickle as the metadata", metadata_is_pickle)):
        path.write_bytes(data)
        with pytest.raises(LcfusionError) as error:
            load_model(path, family)
        assert error.value.parameter == "MODEL", name
    # A pickle stored as one more tensor (with a checksum that matches) is only ever bytes.
    table = model.table
    end = len(model.tensor_data)
    table["payload"] = {"dtype": "U8", "shape": [len(payload)],
                        "data_offsets": [end, end + len(payload)]}
    path.write_bytes(model.forge(model.metadata, table, model.tensor_data + payload))
    metadata, state = load_model(path, family)
    assert bytes(state["payload"].numpy()) == payload
    assert not marker.exists()


# Forged weights ------------------------------------------------------------------------------

@pytest.mark.parametrize("array, value", [("children_left", 0), ("children_right", -1),
                                          ("feature", 10 ** 6)])
def test_a_forged_forest_that_cannot_reach_a_leaf_is_refused(tmp_path, trained_randomforest,
                                                             array, value):
    """Trees whose root links to itself (a sample would descend forever), to no node, or to a
    feature the forest lacks, with a checksum that matches: the loader refuses them."""
    model = ModelBytes(trained_randomforest[0].read_bytes())
    tensors = load_tensors(model.data)
    tensors[array][0] = value
    weights = ModelBytes(save_tensors(tensors))
    path = tmp_path / "forged.lcfusion"
    path.write_bytes(model.forge(model.metadata, weights.table, weights.tensor_data))
    assert load_model(path, "randomforest")[1][array][0] == value
    with pytest.raises(LcfusionError) as error:
        load_randomforest(path)
    assert error.value.parameter == "MODEL"
    assert "(node 0 of the forest links to a node that is not after it in its tree, or to a " \
           "feature it lacks); train the model again" in error.value.message


# The schema follows the engine -------------------------------------------------------------

def test_the_declared_choices_are_the_engines():
    assert modelschema.MRFUSION_BRANCHES == MRFUSION_BRANCHES
    assert modelschema.TWINNS_SOURCES == TWINNS_SOURCES
    assert modelschema.TWINNS_BRANCHES == TWINNS_BRANCHES
    assert modelschema.S1_SCALES == S1_SCALES
    assert modelschema.FOREST_SOURCES == FOREST_SOURCES
    assert modelschema.FEATURE_KINDS == FEATURE_KINDS

