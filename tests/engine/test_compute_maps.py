"""Classification on compute targets with real parts: 2 mpirun ranks here, over sshd on
127.0.0.1 and in the test Slurm cluster. Each run cuts the map into blocks shared out over the
ranks, brings the blocks back and merges them; the maps must equal a local run's pixel for pixel.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import MPIRUN_ARGS, RecordingReporter, processes_in, twinns_inputs, with_compute

from lcfusion.engine import cli
from lcfusion.engine.errors import CancelledError, LcfusionError
from lcfusion.engine.families.fgunet.commands import classify_fgunet
from lcfusion.engine.families.mrfusion.commands import classify_mrfusion
from lcfusion.engine.families.randomforest.commands import classify_randomforest
from lcfusion.engine.families.twinns.commands import classify_twinns
from lcfusion.engine.jobs import Job, write_job

pytestmark = pytest.mark.slow
pytest_plugins = ["services"]

#: Per family: the trained model's fixture, the classify function, the inputs of the scene
#: and settings giving a few cores (one thread, so that runs are comparable bit for bit).
FAMILIES = {
    "randomforest": ("trained_randomforest", classify_randomforest,
                     lambda scene: {"s2": twinns_inputs(scene, gapfill=False)["s2"]},
                     {"tile_size": 40}),
    "fgunet": ("trained", classify_fgunet,
               lambda scene: {"series": {"paths": [str(p) for p in scene.s2_paths]}},
               {"tile_size": 64, "margin": 12}),
    "mrfusion": ("trained_mrfusion", classify_mrfusion,
                 lambda scene: {"pan": {"paths": [str(scene.pan_path)]},
                                "ms": {"paths": [str(scene.ms_path)]}},
                 {"tile_size": 128}),
    "twinns": ("trained_twinns", classify_twinns, twinns_inputs, {"tile_size": 40}),
}


@pytest.fixture
def model(request, family) -> Path:
    """The session's trained model of `family` (trained, if needed, in the setup)."""
    return request.getfixturevalue(FAMILIES[family][0])[0]


def classify_job(family: str, model: Path, folder: Path, scene) -> Path:
    """A classify job of `family` writing ``map.tif`` and ``confidence.tif`` in `folder`, with
    blocks of one core each on a target."""
    _, _, inputs, settings = FAMILIES[family]
    folder.mkdir(parents=True)
    return write_job(folder, f"classify-{family}", inputs={"model": str(model), **inputs(scene)},
                     settings={**settings, "threads": 1},
                     outputs={"class_map": str(folder / "map.tif"),
                              "confidence": str(folder / "confidence.tif"),
                              "block_pixels": 1})


def classify(family: str, job: Path, log: RecordingReporter | None = None) -> dict:
    return FAMILIES[family][1](Job.load(job), log or RecordingReporter())


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read(1)


def assert_same_maps(expected: Path, got: Path) -> None:
    for name in ("map.tif", "confidence.tif"):
        np.testing.assert_array_equal(read(got / name), read(expected / name), err_msg=name)
    with rasterio.open(expected / "map.tif") as want, rasterio.open(got / "map.tif") as have:
        assert have.transform == want.transform and have.crs == want.crs
        assert have.colormap(1) == want.colormap(1)
        assert have.tags()["LCFUSION_CLASSES"] == want.tags()["LCFUSION_CLASSES"]
        assert have.tags()["LCFUSION_FAMILY"] == want.tags()["LCFUSION_FAMILY"]
        assert have.overviews(1) == want.overviews(1)


def local_maps(family: str, model: Path, folder: Path, scene,
               log: RecordingReporter | None = None) -> Path:
    """Classify the family's job here; the folder of its maps."""
    job = classify_job(family, model, folder, scene)
    classify(family, job, log)
    return job.parent


def assert_maps_named(log: RecordingReporter, line_start: str, folder: Path) -> None:
    """The log line that starts with `line_start` names both maps and, only for a map over
    256 pixels across, the overviews (a progress stage of theirs too)."""
    line = next(line for line in log.lines if line.startswith(line_start))
    assert f", confidence {folder / 'confidence.tif'} (" in line
    with rasterio.open(folder / "map.tif") as written:
        small = max(written.width, written.height) <= 256
        size = f"{written.width} x {written.height} pixels"
    assert line.endswith(f"; no overviews at {size})") == small, line
    assert ("overviews" in log.stages) != small


def mpi_profile(work: Path, **extra) -> dict:
    return {"ranks": 2, "mpirun_args": list(MPIRUN_ARGS), "python": sys.executable,
            "work_dir": str(work), **extra}


@pytest.mark.parametrize("family", ["fgunet", "mrfusion", "twinns"])
def test_two_mpi_ranks_classify_the_local_map(tmp_path, scene, family, model):
    local_log = RecordingReporter()
    expected = local_maps(family, model, tmp_path / "local", scene, local_log)
    work = tmp_path / "work"
    job = with_compute(classify_job(family, model, tmp_path / "mpi", scene), "two", "mpi",
                       **mpi_profile(work))
    log = RecordingReporter()
    outputs = classify(family, job, log)
    assert_same_maps(expected, job.parent)
    assert_maps_named(local_log, "class map written to", expected)
    assert_maps_named(log, "class map merged from", job.parent)
    with rasterio.open(job.parent / "map.tif") as merged:  # MRFusion's: the 384-pixel PAN grid
        assert bool(merged.overviews(1)) == (max(merged.width, merged.height) > 256), \
            "overviews over 256 pixels"
    text = log.text()
    assert "to classify on 2 ranks" in text and "2 ranks, each on cpu" in text
    assert "class map merged from" in text
    assert any(stage == "classifying blocks" for stage in log.stages), "progress relayed"
    assert outputs["OUTPUT"] == str(job.parent / "map.tif")
    assert not list(work.iterdir()), "the job folder is removed after the run"
    assert not list(job.parent.glob("stage-*"))


def test_the_progress_of_the_ranks_follows_their_tiles(tmp_path, scene, trained_twinns):
    """Blocks of a row of 3 TWINNS tiles each (3 blocks over 2 ranks; a tile takes longer
    than the 0.2 s between two progress events): rank 0 reports the tiles every rank has
    finished, not only the finished blocks (at most 4 values, with the start)."""
    job = with_compute(classify_job("twinns", trained_twinns[0], tmp_path / "mpi", scene),
                       "two", "mpi", **mpi_profile(tmp_path / "work"))
    sections = json.loads(job.read_text(encoding="utf-8"))
    sections["outputs"]["block_pixels"] = 3 * 40 * 40
    job.write_text(json.dumps(sections), encoding="utf-8")
    log = RecordingReporter()
    classify("twinns", job, log)
    assert "3 blocks of at most 4,800 pixels; 3 to classify on 2 ranks" in log.text()
    fractions = [fraction for fraction, stage in zip(log.fractions, log.stages, strict=True)
                 if stage == "classifying blocks"]
    assert len(set(fractions)) > 4, fractions


def test_a_rerun_on_slurm_classifies_only_the_missing_blocks(tmp_path, scene,
                                                              trained_randomforest,
                                                              slurm_cluster):
    """A first run on 2 mpirun ranks keeps its folder, which then lacks most of its blocks as
    a killed job's would; the rerun, a Slurm job with the same work folder, finds the folder
    and classifies only the missing blocks."""
    forest = trained_randomforest[0]
    expected = local_maps("randomforest", forest, tmp_path / "local", scene)
    work = tmp_path / "work"
    job = with_compute(classify_job("randomforest", forest, tmp_path / "rerun", scene), "two",
                       "mpi", **mpi_profile(work, keep_work_dir=True))
    classify("randomforest", job)
    assert_same_maps(expected, job.parent)
    [folder] = work.iterdir()
    blocks = sorted((folder / "result").glob("block-?????.tif"))
    assert len(blocks) == 9
    for lost in blocks[3:]:
        lost.unlink()
        lost.with_name(lost.stem + "-confidence.tif").unlink()
    with rasterio.open(blocks[0], "r+") as kept:  # a kept block is not computed again
        marked = kept.read(1)
        marked[:] = 99
        kept.write(marked, 1)
    with_compute(job, "cluster", "slurm", partition=slurm_cluster.partition, ranks=2,
                 time_limit="10:00", python=sys.executable, mpirun_args=list(MPIRUN_ARGS),
                 work_dir=str(work), env={"SLURM_CONF": str(slurm_cluster.conf)})
    log = RecordingReporter()
    classify("randomforest", job, log)
    text = log.text()
    assert "submitted Slurm job" in text
    assert ("9 blocks of at most 1 pixel; 3 already written by an earlier run, 6 to classify "
            "on 2 ranks") in text
    got, want = read(job.parent / "map.tif"), read(expected / "map.tif")
    rows, cols = np.nonzero(got != want)
    assert (got[rows, cols] == 99).all() and rows.max() < 40 and cols.max() < 40
    np.testing.assert_array_equal(got[40:], want[40:])
    assert not list(work.iterdir()), "the Slurm profile does not keep the folder"


def test_a_killed_rank_fails_the_run_and_the_rerun_classifies_only_the_missing_blocks(
        tmp_path, scene, trained_twinns):
    """Two mpirun ranks share TWINNS blocks of 16 x 16 pixels; once a few are written, one rank
    is killed (SIGKILL, as the kernel's OOM killer or a lost node does): the run fails naming
    COMPUTE and keeps its folder; the same run again classifies only the blocks that are
    missing, and the merged map equals the local one."""
    model = trained_twinns[0]

    def small_blocks(folder: Path) -> Path:
        job = classify_job("twinns", model, folder, scene)
        data = json.loads(job.read_text(encoding="utf-8"))
        data["settings"]["tile_size"] = 16
        job.write_text(json.dumps(data), encoding="utf-8")
        return job

    expected = small_blocks(tmp_path / "local")
    classify("twinns", expected)
    work = tmp_path / "work"
    job = with_compute(small_blocks(tmp_path / "mpi"), "two", "mpi", **mpi_profile(work))
    failures: list[LcfusionError] = []

    def first_run() -> None:
        try:
            classify("twinns", job)
        except LcfusionError as exc:
            failures.append(exc)

    running = threading.Thread(target=first_run)
    running.start()
    deadline = time.monotonic() + 300
    while len(list(work.glob("lcfusion-*/result/block-?????.tif"))) < 2:
        assert time.monotonic() < deadline and running.is_alive(), "no block was written"
        time.sleep(0.05)
    ranks = [pid for pid in (int(line.split()[0]) for line in processes_in(work)
                             if "classify-twinns" in line)
             if Path(f"/proc/{pid}/exe").resolve() == Path(sys.executable).resolve()]
    assert len(ranks) == 2, processes_in(work)
    os.kill(max(ranks), signal.SIGKILL)
    running.join(300)
    [failure] = failures
    assert failure.parameter == "COMPUTE"
    assert "the classification on this machine failed" in failure.message
    assert re.search(r"It finished [0-9]+ of [0-9]+ blocks, kept in ", failure.message)
    [folder] = work.iterdir()
    kept = len(list((folder / "result").glob("block-?????.tif")))

    log = RecordingReporter()
    classify("twinns", job, log)
    written = re.search(r"(\d+) blocks of at most 1 pixel; (\d+) already written by an earlier "
                        r"run, (\d+) to classify on 2 ranks", log.text())
    assert written, log.text()
    total, done, left = map(int, written.groups())
    assert done == kept and 2 <= done < total and left == total - done
    assert_same_maps(expected.parent, job.parent)
    assert not list(work.iterdir())


def test_an_ssh_target_stages_the_inputs_once(tmp_path, scene, trained_randomforest,
                                              ssh_server, monkeypatch):
    """The first run uploads the inputs into the target's input cache; a second run on the
    same inputs uploads nothing, and reads the model, whose folder the profile maps onto the
    target's storage, where it is. One rank each (the mpi tests share blocks over two)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the digests kept here
    forest = trained_randomforest[0]
    expected = local_maps("randomforest", forest, tmp_path / "local", scene)
    remote, shared = tmp_path / "remote", tmp_path / "shared"
    shared.symlink_to(forest.parent)  # the target's view of the model's folder
    values = {**mpi_profile(remote, ranks=1), "host": ssh_server.host, "port": ssh_server.port,
              "user": ssh_server.user, "identity_file": str(ssh_server.identity_file),
              "known_hosts_file": str(ssh_server.known_hosts)}
    logs = []
    for run, path_map in (("first", []), ("second", [[str(forest.parent), str(shared)]])):
        job = with_compute(classify_job("randomforest", forest, tmp_path / run, scene), "gpu",
                           "ssh", **values, path_map=path_map)
        logs.append(RecordingReporter())
        classify("randomforest", job, logs[-1])
        assert_same_maps(expected, job.parent)
    first, second = (log.text() for log in logs)
    inputs = len(scene.s2_paths) + 1  # the dates and the cloud mask
    assert f"staging the job to {ssh_server.host}:{ssh_server.port}" in first
    assert first.count("uploading ") == inputs + 1, "the inputs and the model"
    assert "uploading" not in second and second.count("reusing staged input") == inputs
    assert f"input {forest} is on gpu's storage as {shared / forest.name}" in second
    assert [path.name for path in remote.iterdir()] == ["lcfusion-inputs"], "jobs removed"


def test_cancel_stops_the_ranks_and_leaves_nothing(tmp_path, scene, trained):
    work = tmp_path / "work"
    job = with_compute(classify_job("fgunet", trained[0], tmp_path / "mpi", scene), "two", "mpi",
                       **mpi_profile(work))
    with pytest.raises(CancelledError):
        classify("fgunet", job, RecordingReporter(stop_at="classifying blocks"))
    assert not processes_in(work), "no rank left running"
    assert not list(work.iterdir()), "the job folder on the target is removed"
    assert sorted(path.name for path in job.parent.iterdir()) == ["job.json"]


@pytest.mark.parametrize(("model_name", "outputs", "parameter"), [
    ("model.onnx", {}, "COMPUTE"),
    ("model.lcfusion", {"attention": "attention.tif"}, "OUTPUT_ATTENTION"),
])
def test_what_a_target_cannot_write_is_refused_before_any_work(tmp_path, model_name, outputs,
                                                              parameter):
    """An ONNX model classifies here only, and the attention map comes from a local run: on a
    compute profile each is refused, naming its parameter, before a model is read."""
    job = write_job(tmp_path, "classify-twinns", inputs={"model": str(tmp_path / model_name)},
                    outputs={"class_map": str(tmp_path / "map.tif"), **outputs})
    with_compute(job, "two", "mpi", **mpi_profile(tmp_path / "work"))
    with pytest.raises(LcfusionError) as raised:
        cli.run(argparse.Namespace(command="classify-twinns", job=str(job)), RecordingReporter())
    assert raised.value.parameter == parameter
    assert "this machine only" in raised.value.message
    assert not (tmp_path / "work").exists() and not (tmp_path / "map.tif").exists()
