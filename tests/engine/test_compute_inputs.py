"""Where a classification's inputs are on a compute target: passed through (GDAL network
paths), mapped onto the target's shared storage by the profile's path_map, or uploaded once
into the target's input cache (over a real sshd on 127.0.0.1) and reused by later jobs."""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import RecordingReporter

from lcfusion.engine.compute.inputs import (
    INPUT_CACHE,
    DigestCache,
    InputPlacer,
    is_remote_dataset,
    mapped_path,
)
from lcfusion.engine.compute.launcher import SshShell
from lcfusion.engine.compute.profiles import ComputeProfile
from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.families.blockjobs import InputStager, stage_classification
from lcfusion.engine.families.mapsteps import MapOutputs
from lcfusion.engine.jobs import Job, write_job

pytest_plugins = ["services"]

VSICURL = "/vsicurl/https://example.org/cog/s2-2020.tif"


@pytest.mark.parametrize(("value", "remote"), [
    (VSICURL, True),
    ("/vsis3/bucket/s2.tif", True),
    ("/vsigs/bucket/s2.tif", True),
    ("/vsiaz/container/s2.tif", True),
    ("/vsizip//vsicurl/https://example.org/s2.zip/b04.tif", True),
    ("https://example.org/s2.tif", True),
    ("/vsimem/s2.tif", False),
    ("/vsizip//data/s2.zip/b04.tif", False),
    ("/data/vsicurl/s2.tif", False),
    ("https.tif", False),
])
def test_gdal_network_paths_are_recognised(value, remote):
    assert is_remote_dataset(value) == remote


def test_the_longest_whole_prefix_maps_a_path():
    pairs = (("/data", "/shared/data"), ("/data/s2", "/fast/s2"), ("/dat", "/wrong"))
    assert mapped_path(pairs, Path("/data/s2/2020/b04.tif")) == "/fast/s2/2020/b04.tif"
    assert mapped_path(pairs, Path("/data/s1.tif")) == "/shared/data/s1.tif"
    assert mapped_path(pairs, Path("/database/s1.tif")) is None
    assert mapped_path(pairs, Path("/data")) == "/shared/data"


def place(job: Job, shell: SshShell, digests: Path) -> tuple[dict, RecordingReporter]:
    """The job's inputs as a classification on the shell's profile stages them, after the
    transfer."""
    log = RecordingReporter()
    placer = InputPlacer(shell.profile, log, DigestCache(digests))
    inputs = InputStager(job, placer).value(job.section("inputs"))
    placer.transfer(shell)
    return inputs, log


@pytest.fixture
def ssh_shell(ssh_server, tmp_path) -> Iterator[SshShell]:
    """A shell on the sshd with the profile ``gpu``: its work folder is ``work``, and it maps
    ``here/models`` to ``shared/models``."""
    here, shared = tmp_path / "here", tmp_path / "shared"
    shell = SshShell(ComputeProfile(
        "gpu", "ssh", host=ssh_server.host, port=ssh_server.port, user=ssh_server.user,
        identity_file=str(ssh_server.identity_file), known_hosts_file=str(ssh_server.known_hosts),
        work_dir=str(tmp_path / "work"), python=sys.executable,
        path_map=((str(here / "models"), str(shared / "models")),)))
    yield shell
    shell.close()


def test_the_staged_job_names_each_input_as_the_target_reads_it(tmp_path):
    """On this machine's mpirun: a file as it is here, a mapped one on the shared storage, a
    network path untouched; a changed input is a new job."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.lcfusion").write_bytes(b"weights")
    (tmp_path / "s2.tif").write_bytes(b"s2 pixels")
    job = Job.load(write_job(tmp_path, "classify-randomforest", inputs={
        "model": "models/model.lcfusion", "s2": {"paths": ["s2.tif", VSICURL]}}))
    profile = ComputeProfile("two", "mpi", path_map=((str(tmp_path / "models"),
                                                      "/shared/models"),))

    def staged() -> tuple[str, dict]:
        stage = Path(tempfile.mkdtemp(dir=tmp_path))
        placer = InputPlacer(profile, RecordingReporter(), DigestCache(tmp_path / "d.json"))
        job_id = stage_classification(job, placer, MapOutputs(tmp_path / "map.tif"), stage)
        return job_id, json.loads((stage / "job.json").read_text(encoding="utf-8"))["inputs"]

    job_id, inputs = staged()
    assert inputs == {"model": "/shared/models/model.lcfusion",
                      "s2": {"paths": [str(tmp_path / "s2.tif"), VSICURL]}}
    assert staged()[0] == job_id
    (tmp_path / "s2.tif").write_bytes(b"new pixels")
    assert staged()[0] != job_id


def on_target(work: Path, staged: str) -> Path:
    """A cached input's path as the job refers to it, from its folder in `work`."""
    return work / Path(staged).relative_to("..")


def test_inputs_are_uploaded_once_mapped_or_passed_through(tmp_path, ssh_shell):
    here, shared, work = tmp_path / "here", tmp_path / "shared", tmp_path / "work"
    (here / "series").mkdir(parents=True)
    (here / "s2.tif").write_bytes(b"s2 pixels" * 1000)
    (here / "s2.tif.aux.xml").write_text("<PAMDataset/>")
    (here / "series" / "b04.tif").write_bytes(b"band 4")
    (shared / "models").mkdir(parents=True)  # the target's view of here/models
    (here / "models").symlink_to(shared / "models")
    (shared / "models" / "model.lcfusion").write_bytes(b"weights")
    job = Job.load(write_job(here, "classify-randomforest", inputs={
        "model": "models/model.lcfusion", "s2": {"paths": ["s2.tif", VSICURL],
                                                 "masks": ["https://example.org/mask.tif"]},
        "folder": str(here / "series"), "band_roles": "nir=4"}))
    digests = tmp_path / "digests.json"

    inputs, log = place(job, ssh_shell, digests)
    assert inputs["model"] == str(shared / "models" / "model.lcfusion")
    assert inputs["s2"]["paths"][1] == VSICURL
    assert inputs["s2"]["masks"] == ["https://example.org/mask.tif"]
    assert inputs["band_roles"] == "nir=4"
    cached = on_target(work, inputs["s2"]["paths"][0])
    assert cached.read_bytes() == (here / "s2.tif").read_bytes()
    assert cached.with_name("s2.tif.aux.xml").read_text() == "<PAMDataset/>"
    assert (on_target(work, inputs["folder"]) / "b04.tif").read_bytes() == b"band 4"
    assert sorted(path.name for path in work.iterdir()) == [INPUT_CACHE]
    assert len(list((work / INPUT_CACHE).iterdir())) == 2, "no partial upload left"
    text = log.text()
    assert f"uploading {here / 's2.tif'} (0.0 MB)" in text and "series" in text
    assert not [line for line in log.lines if line.startswith("uploading") and "model" in line]
    assert f"input {here / 'models' / 'model.lcfusion'} is on gpu's storage" in text

    again, log = place(job, ssh_shell, digests)  # a later job: nothing hashed, nothing uploaded
    assert again == inputs
    assert "uploading" not in log.text()
    assert log.text().count("reusing staged input") == 2
    assert not [stage for stage in log.stages if stage.startswith("hashing")]

    series = on_target(work, inputs["folder"]) / "b04.tif"
    series.write_bytes(b"band")  # a broken copy is replaced
    (here / "s2.tif").write_bytes(b"other pixels")  # a changed input is uploaded again
    changed, log = place(job, ssh_shell, digests)
    assert f"uploading {here / 'series'} (0.0 MB) to " in log.text()
    assert "(replacing an incomplete copy)" in log.text()
    assert series.read_bytes() == b"band 4"
    assert changed["s2"]["paths"][0] != inputs["s2"]["paths"][0]
    assert f"uploading {here / 's2.tif'}" in log.text()
    assert on_target(work, changed["s2"]["paths"][0]).read_bytes() == b"other pixels"
    assert cached.exists(), "the earlier copy stays for jobs on the old input"
    assert str(here / "s2.tif") in json.loads(digests.read_text())
    assert sorted(path.name for path in work.iterdir()) == [INPUT_CACHE]
    assert len(list((work / INPUT_CACHE).iterdir())) == 3, "no partial upload left"

    (shared / "models" / "model.lcfusion").unlink()
    (here / "models").unlink()
    (here / "models").mkdir()
    (here / "models" / "model.lcfusion").write_bytes(b"weights")
    with pytest.raises(LcfusionError) as raised:
        place(job, ssh_shell, digests)
    assert raised.value.parameter == "COMPUTE"
    assert "the path_map of compute profile 'gpu' maps the input" in raised.value.message
    assert "which is missing on the target" in raised.value.message
