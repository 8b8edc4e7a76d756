"""Model files: self-describing, checksummed (metadata, tensor table and weights), checked
entry by entry, never unpickled."""

import json
import pickle
import struct
from pathlib import Path

import pytest
import torch
from model_mutants import ModelBytes, edit

from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.modelfile.header import read_header, read_metadata
from lcfusion.engine.modelfile.storage import load_model, save_model

#: The smallest complete FG-UNET metadata: one date of two bands, one class.
META = {"family": "fgunet", "classes": [{"index": 0, "code": 4, "name": "forêt",
                                         "color": "#00ff00"}],
        "architecture": {"chunk_channels": 2, "n_chunks": 1, "n_classes": 1},
        "inputs": {"series": {"n_dates": 1, "bands_per_date": 2, "band_names": ["B1", "B2"],
                              "dates": [None], "masked": False, "gapfill": False}},
        "normalization": {"low": [0.0, 0.0], "high": [1.0, 1.0]}}


@pytest.fixture
def model_file(tmp_path):
    state = {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4), "b": torch.ones(2)}
    return save_model(tmp_path / "m.lcfusion", META, state), state


def test_round_trip(model_file):
    path, state = model_file
    metadata, loaded = load_model(path, "fgunet")
    assert metadata["family"] == "fgunet" and metadata["format"] == "lcfusion-model"
    assert metadata["classes"][0]["name"] == "forêt"
    for name, tensor in state.items():
        assert torch.equal(loaded[name], tensor)
    assert read_metadata(path)["classes"] == META["classes"]
    assert [p.name for p in path.parent.iterdir()] == ["m.lcfusion"]


def test_wrong_family(model_file):
    with pytest.raises(LcfusionError,
                       match="is a model of the FG-UNET family, not MRFusion: use Classify with"):
        load_model(model_file[0], "mrfusion")


def test_truncated_file(model_file):
    path = model_file[0]
    data = path.read_bytes()
    for size in (0, 5, 20, len(data) - 7):
        path.write_bytes(data[:size])
        with pytest.raises(LcfusionError, match="not a valid lcfusion model file") as info:
            load_model(path)
        assert info.value.parameter == "MODEL"


def test_flipped_weight_byte_fails_the_checksum(model_file):
    path = model_file[0]
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(LcfusionError, match="checksum does not match"):
        load_model(path)


def test_tampered_metadata_fails_the_checksum(model_file):
    path = model_file[0]
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8: 8 + length])
    inner = json.loads(header["__metadata__"]["lcfusion"])
    inner["classes"][0]["name"] = "water"
    header["__metadata__"]["lcfusion"] = json.dumps(inner)
    raw = json.dumps(header).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length:])
    with pytest.raises(LcfusionError, match="checksum does not match"):
        load_model(path)


class Boom:
    """A pickle that creates `marker` when it is unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_is_never_executed(tmp_path):
    marker = tmp_path / "lcfusion-pickle-was-executed"
    path = tmp_path / "evil.lcfusion"
    path.write_bytes(pickle.dumps({"w": Boom(marker)}))
    with pytest.raises(LcfusionError, match="not a valid lcfusion model file"):
        load_model(path)
    torch.save({"w": torch.ones(1)}, tmp_path / "torch.lcfusion")
    with pytest.raises(LcfusionError, match="not a valid lcfusion model file"):
        load_model(tmp_path / "torch.lcfusion")
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the payload is live: unpickling it leaves the marker
    assert marker.exists()


def test_missing_file():
    with pytest.raises(LcfusionError, match="does not exist"):
        load_model("/nonexistent/m.lcfusion")


def test_a_format_1_file_still_loads(model_file):
    """Format 1 files (checksum without the tensor table) written before format 2 load."""
    path, state = model_file
    model = ModelBytes(path.read_bytes())
    path.write_bytes(model.forge({**model.metadata, "format_version": 1}))
    metadata, loaded = load_model(path, "fgunet")
    assert metadata["format_version"] == 1 and torch.equal(loaded["w"], state["w"])


def test_a_renamed_tensor_fails_the_checksum(model_file):
    path = model_file[0]
    data = path.read_bytes()
    assert data.count(b'"w":{') == 1
    path.write_bytes(data.replace(b'"w":{', b'"v":{'))
    with pytest.raises(LcfusionError, match="checksum does not match"):
        load_model(path)


def test_the_tensor_table_must_fit_the_data(model_file):
    path = model_file[0]
    model = ModelBytes(path.read_bytes())
    table = model.table
    table["w"]["shape"] = [3, 5]
    path.write_bytes(model.forge(model.metadata, table))
    with pytest.raises(LcfusionError) as error:
        load_model(path)
    assert error.value.parameter == "MODEL"
    assert ("(the tensor \"w\" has 48 bytes for a F32 tensor of shape [3, 5] (60 bytes))"
            in error.value.message)


def test_wrong_types_are_refused_naming_the_entry(model_file):
    """A checksum that matches proves nothing about the types: each entry is checked."""
    path = model_file[0]
    model = ModelBytes(path.read_bytes())
    path.write_bytes(model.forge(edit(model.metadata, "inputs.series.n_dates", "1")))
    with pytest.raises(LcfusionError) as error:
        read_header(path, "MODEL_FILE")
    assert error.value.parameter == "MODEL_FILE"
    assert error.value.message == (
        'm.lcfusion is not a valid lcfusion model file (its metadata entry inputs.series.n_dates '
        'must be a whole number from 1 to 10000, not "1"); choose a model file written by an '
        "lcfusion training algorithm, or train the model again")


def test_a_family_needs_all_its_entries_and_their_agreement(model_file):
    """Reading the header checks the entries present; loading for a family also requires the
    entries its readers need, and their agreement (here, one class for two outputs)."""
    path = model_file[0]
    model = ModelBytes(path.read_bytes())
    path.write_bytes(model.forge(edit(model.metadata, "architecture", lambda a: {})))
    assert read_header(path).family == "fgunet"
    with pytest.raises(LcfusionError, match="its metadata entry architecture.chunk_channels is "
                                            "missing"):
        load_model(path, "fgunet")
    path.write_bytes(model.forge(edit(model.metadata, "architecture.n_classes", 2)))
    with pytest.raises(LcfusionError, match="its metadata entries disagree: the number of "
                                            "classes is 1 but architecture.n_classes is 2"):
        load_model(path, "fgunet")
