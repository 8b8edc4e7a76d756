"""Model files: self-describing, checksummed, never unpickled."""

import json
import pickle
import struct

import pytest
import torch

from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.modelfile import load_model, save_model
from lcfusion.engine.modelheader import read_metadata

META = {"family": "fgunet", "classes": [{"index": 0, "code": 4, "name": "forêt",
                                         "color": "#00ff00"}]}


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
    with pytest.raises(LcfusionError, match="is a fgunet model, not a mrfusion model"):
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
    def __reduce__(self):
        return (open, ("/tmp/lcfusion-pickle-was-executed", "w"))


def test_a_pickle_is_never_executed(tmp_path):
    path = tmp_path / "evil.lcfusion"
    path.write_bytes(pickle.dumps({"w": Boom()}))
    with pytest.raises(LcfusionError, match="not a valid lcfusion model file"):
        load_model(path)
    torch.save({"w": torch.ones(1)}, tmp_path / "torch.lcfusion")
    with pytest.raises(LcfusionError, match="not a valid lcfusion model file"):
        load_model(tmp_path / "torch.lcfusion")
    assert not (tmp_path / "lcfusion-pickle-was-executed").exists()


def test_missing_file():
    with pytest.raises(LcfusionError, match="does not exist"):
        load_model("/nonexistent/m.lcfusion")
