"""Faults: a cancel at every stage of a run, the engine killed (kill -9) while it writes, a full
disk, and a killed run beside another run writing the same output.

Whatever happens, an existing output keeps its bytes, nothing partial stays behind, the job
folder goes, and no process of the run survives.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import processing
import pytest
import rasterio
from fault_helpers import (
    CreationWatch,
    fgunet_classify_job,
    fill_disk,
    small_tmpfs,
    start_engine,
    tiled_series,
    wait_for_partial,
)
from helpers import randomforest_train_job, two_rank_profiles, write_raster
from osgeo import gdal
from processing_helpers import (
    STOP_WITHIN,
    TINY_FOREST,
    CancelAtMessage,
    CancelAtStage,
    assert_engine_gone,
    contents,
    engine_children,
    job_folders,
    mrfusion_train_parameters,
    run_and_cancel,
    wait_for_no_processes_in,
    wait_for_no_survivors,
)
from qgis.core import QgsProcessingException, QgsProcessingFeedback, QgsRasterLayer

from lcfusion.engine.io.outputs import partial_files
from lcfusion.engine.modelfile.storage import load_model
from lcfusion.plugin.algorithms.bindings.outputs import remove_partial_files

TRAIN_FGUNET = "lcfusion:trainfgunet"
CLASSIFY_FGUNET = "lcfusion:classifyfgunet"
TRAIN_FOREST = "lcfusion:trainrandomforest"
#: Patch statistics of 9 x 9 pixels over many dates, read in tiles of 16 pixels: reading the
#: training pixels and evaluating take seconds on the small scene.
SLOW_FOREST = {"FEATURES": 2, "PATCH_SIZE": 9, "TILE_SIZE": 16, "SAMPLES_PER_CLASS": 1000,
               "THREADS": 1}
#: Files written before each run, where the run writes its outputs.
OLD_MODEL = b"the previous model, which a failed run must keep" * 20
OLD_REPORT = b"<html>the previous report</html>"
OLD_MAP = b"the previous class map" * 50
#: Keeps the GDAL block cache of the engine small, so that a class map's blocks are written
#: while it classifies (with the default cache they are written when the map is closed).
SMALL_GDAL_CACHE = {"GDAL_CACHEMAX": "1"}


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """The work folder of the two-rank mpirun profile ``two``, the profiles file of the test's
    runs."""
    folder = tmp_path / "work"
    monkeypatch.setenv("LCFUSION_PROFILES",
                       str(two_rank_profiles(tmp_path / "profiles.toml", folder)))
    return folder


@pytest.fixture(scope="module")
def big(tmp_path_factory, scene) -> list[str]:
    """The scene's S2 dates tiled 8 x 8 (768 x 768 pixels)."""
    return tiled_series(scene.s2_paths, tmp_path_factory.mktemp("tiled"), repeat=8)


@pytest.fixture
def in_memory(scene, tmp_path, owned_layer):
    """The dates tiled 32 x 32 (3072 x 3072 pixels) as VRTs in GDAL's in-memory file system:
    layers with no file, which the plugin exports (a second or so each) before the engine
    starts."""
    paths = []
    for index, source in enumerate(tiled_series(scene.s2_paths, tmp_path, repeat=32)):
        path = f"/vsimem/lcfusion_faults_{os.getpid()}_{index}.vrt"
        gdal.FileFromMemBuffer(path, Path(source).read_bytes())
        paths.append(path)
    yield [owned_layer(QgsRasterLayer(path, f"date {i}", "gdal")) for i, path in enumerate(paths)]
    for path in paths:
        gdal.Unlink(path)


# Cancel at every stage --------------------------------------------------------------------

@dataclass(frozen=True)
class Stage:
    """Where to cancel a run: `stop_at` is a progress stage of the engine (a prefix), or with
    `before_engine` a message of the plugin before the engine starts; `parameters` builds the
    run's parameters from the fixtures named in `needs` and the output folder `out`."""

    algorithm: str
    stop_at: str
    parameters: Callable[[SimpleNamespace], dict]
    needs: tuple[str, ...] = ("scene",)
    before_engine: bool = False
    distributed: bool = False


def training_outputs(out: Path) -> dict:
    return {"OUTPUT_MODEL": str(out / "model.lcfusion"), "OUTPUT_REPORT": str(out / "report.html")}


def classification_outputs(out: Path) -> dict:
    return {"OUTPUT": str(out / "map.tif"), "OUTPUT_CONFIDENCE": str(out / "confidence.tif")}


def repeated_series(given: SimpleNamespace, dates: int) -> list[str]:
    """The scene's S2 series repeated to `dates` dates, each repeat a year later: links named
    by their dates, so that no date is given twice."""
    folder = given.out.parent / "series"
    series = []
    for repeat in range(dates // len(given.scene.s2_paths)):
        for path in given.scene.s2_paths:
            year = int(path.name[3:7]) + repeat
            link = folder / f"{path.stem[:3]}{year}{path.stem[7:]}{path.suffix}"
            link.parent.mkdir(exist_ok=True)
            if not link.exists():
                link.symlink_to(path)
            series.append(str(link))
    return series


def forest_training(dates: int, **changes) -> Callable[[SimpleNamespace], dict]:
    """A Random Forest on the scene's S2 series repeated to `dates` dates."""
    def parameters(given: SimpleNamespace) -> dict:
        return {"SOURCE": 0, "S2": repeated_series(given, dates),
                "REFERENCE": str(given.scene.reference_path), "CLASS_FIELD": "class_id",
                **SLOW_FOREST, **changes, **training_outputs(given.out)}
    return parameters


def fgunet_training(dates: int, **changes) -> Callable[[SimpleNamespace], dict]:
    """FG-UNET on the scene's S2 series repeated to `dates` dates; about a minute or more of
    training on two cores, which the cancel cuts short."""
    def parameters(given: SimpleNamespace) -> dict:
        return {"INPUT": repeated_series(given, dates),
                "REFERENCE": str(given.scene.reference_path), "CLASS_FIELD": "class_id",
                "EPOCHS": 40, "PATCHES_PER_EPOCH": 256, "PATCH_SIZE": 32,
                "VALIDATION_PATCHES": 16, "TILE_SIZE": 128, **changes,
                **training_outputs(given.out)}
    return parameters


def fgunet_classification(layers: str) -> Callable[[SimpleNamespace], dict]:
    """FG-UNET classifying the tiled series (768 x 768 pixels), as files or in-memory layers."""
    def parameters(given: SimpleNamespace) -> dict:
        return {"INPUT": getattr(given, layers), "MODEL": str(given.trained[0]),
                "TILE_SIZE": 64, "MARGIN": 8, **classification_outputs(given.out)}
    return parameters


def mrfusion_remote(given: SimpleNamespace) -> dict:
    return mrfusion_train_parameters(given.scene, COMPUTE="two", EPOCHS=30,
                                     SAMPLES_PER_EPOCH=512, **training_outputs(given.out))


STAGES = {
    "export": Stage(CLASSIFY_FGUNET, "is not a local file; exporting it",
                    fgunet_classification("in_memory"), ("trained", "in_memory"),
                    before_engine=True),  # cancelled while the first layer is exported
    "extraction": Stage(TRAIN_FOREST, "reading the training pixels", forest_training(48)),
    "forest": Stage(TRAIN_FOREST, "training the forest", forest_training(6, N_TREES=300)),
    "training": Stage(TRAIN_FGUNET, "epoch ", fgunet_training(6)),
    "evaluation": Stage(TRAIN_FOREST, "evaluating", forest_training(48, N_TREES=5)),
    "inference": Stage(CLASSIFY_FGUNET, "classifying", fgunet_classification("big"),
                       ("trained", "big")),
    "staging": Stage(TRAIN_FGUNET, "packing", fgunet_training(24, COMPUTE="two"),
                     distributed=True),
    "remote run": Stage("lcfusion:trainmrfusion", "epoch ", mrfusion_remote, distributed=True),
}


def old_outputs(out: Path) -> None:
    """The files a previous run left where this run writes."""
    out.mkdir()
    (out / "model.lcfusion").write_bytes(OLD_MODEL)
    (out / "report.html").write_bytes(OLD_REPORT)
    (out / "map.tif").write_bytes(OLD_MAP)
    (out / "map.qml").write_text("<qgis>the previous style</qgis>")


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=[pytest.mark.slow] if stage.distributed else [])
    for name, stage in STAGES.items()])
def test_cancel_at_every_stage_leaves_nothing_behind(lcfusion_provider, work, tmp_path,
                                                     request, name):
    stage = STAGES[name]
    out = tmp_path / "out"
    old_outputs(out)
    before, before_jobs = contents(out), job_folders()
    given = SimpleNamespace(out=out, **{need: request.getfixturevalue(need)
                                        for need in stage.needs})
    feedback = (CancelAtMessage(stage.stop_at, after=0.3) if stage.before_engine
                else CancelAtStage(stage.stop_at))

    message, stop_seconds = run_and_cancel(stage.algorithm, stage.parameters(given), feedback)

    assert message.startswith("Cancelled") and "no output was written" in message, message
    assert stop_seconds < STOP_WITHIN, f"the run took {stop_seconds:.1f} s to stop"
    if stage.before_engine:
        assert feedback.engine == {} and engine_children() == {}
    else:
        assert feedback.stages[-1].startswith(stage.stop_at), (
            f"the run had left {stage.stop_at!r} when the cancel came: {feedback.stages}")
        assert_engine_gone(feedback.engine)
    assert contents(out) == before  # the old files untouched, no partial file
    assert job_folders() == before_jobs
    if stage.distributed:
        left = wait_for_no_processes_in(work)
        assert not left, f"mpirun or rank processes left: {left}"
        assert sorted(work.glob("*")) == [], "the staged job folder was not removed"


# kill -9 while writing --------------------------------------------------------------------

def old_class_map(path: Path) -> bytes:
    """A valid class map where the run writes its map; its bytes."""
    write_raster(path, np.arange(64, dtype=np.uint8).reshape(8, 8), nodata=255)
    return path.read_bytes()


def assert_old_class_map(path: Path, old: bytes) -> None:
    assert path.read_bytes() == old
    with rasterio.open(path) as ds:
        assert ds.read(1).tolist() == np.arange(64).reshape(8, 8).tolist()


def test_kill_9_while_the_class_map_is_written_keeps_the_old_map(scene, trained, big,
                                                                  tmp_path):
    model, _ = trained
    out = tmp_path / "out"
    out.mkdir()
    class_map, confidence = out / "map.tif", out / "confidence.tif"
    old = old_class_map(class_map)
    job = fgunet_classify_job(tmp_path / "job", model, big, class_map, confidence)
    engine = start_engine("classify-fgunet", job, **SMALL_GDAL_CACHE)
    try:
        partial = wait_for_partial(confidence, engine.pid, larger_than=64 << 10,
                                   process=engine)
    finally:
        os.killpg(engine.pid, signal.SIGKILL)
        engine.wait()
        engine.stderr.close()

    assert engine.returncode == -signal.SIGKILL
    assert partial.exists(), "the kill came after the engine had finished writing"
    assert_old_class_map(class_map, old)
    left = partial_files(class_map, engine.pid) + partial_files(confidence, engine.pid)
    assert partial in left
    remove_partial_files([str(class_map), str(confidence), None], engine.pid)
    assert sorted(p.name for p in out.iterdir()) == ["map.tif"]
    assert_old_class_map(class_map, old)
    assert not wait_for_no_survivors(engine.pid, str(job.parent))


class KillWhenWriting(QgsProcessingFeedback):
    """Kills the engine's process group (SIGKILL) once it is classifying and its temporary
    `target` file has grown past `larger_than` bytes; remembers the engine and that file.
    Engine processes started before are not the one Processing runs."""

    def __init__(self, target: Path, larger_than: int) -> None:
        super().__init__()
        self.target, self.larger_than = target, larger_than
        self.earlier = set(engine_children())
        self.engine: dict[int, str] = {}
        self.partial: Path | None = None

    def setProgressText(self, text):  # noqa: N802 - QGIS API
        if text == "classifying" and not self.engine:
            self.engine = {pid: cmdline for pid, cmdline in engine_children().items()
                           if pid not in self.earlier}
            (pid, _), = self.engine.items()
            self.partial = wait_for_partial(self.target, pid, self.larger_than)
            os.killpg(pid, signal.SIGKILL)
        super().setProgressText(text)


def test_kill_9_of_the_engine_in_processing_removes_its_partial_files(
        lcfusion_provider, trained, big, tmp_path, monkeypatch):
    monkeypatch.setenv("GDAL_CACHEMAX", SMALL_GDAL_CACHE["GDAL_CACHEMAX"])
    model, _ = trained
    out = tmp_path / "out"
    out.mkdir()
    old = old_class_map(out / "map.tif")
    before, before_jobs = contents(out), job_folders()
    feedback = KillWhenWriting(out / "confidence.tif", 64 << 10)

    with pytest.raises(QgsProcessingException) as caught:
        processing.run(CLASSIFY_FGUNET, {"INPUT": big, "MODEL": str(model), "TILE_SIZE": 64,
                                         "MARGIN": 8, **classification_outputs(out)},
                       feedback=feedback)

    assert "The lcfusion engine stopped unexpectedly (exit status -9)" in str(caught.value)
    assert feedback.partial is not None and not feedback.partial.exists()
    assert contents(out) == before  # the plugin removed what the killed engine left
    assert_old_class_map(out / "map.tif", old)
    assert job_folders() == before_jobs
    assert_engine_gone(feedback.engine)


#: Attempts at killing the engine between creating and renaming its model file: the kill
#: races with a write of a few milliseconds.
KILL_ATTEMPTS = 5


def kill_at_creation(watch: CreationWatch, prefix: str, engine: subprocess.Popen) -> str:
    """SIGKILL the engine's process group as soon as a name starting with `prefix` appears;
    the name."""
    while engine.poll() is None:
        for name in watch.next_names(0.5):
            if name.startswith(prefix):
                os.killpg(engine.pid, signal.SIGKILL)
                engine.wait()
                return name
    pytest.fail(f"the engine ended (exit {engine.returncode}) before writing {prefix}*: "
                f"{engine.stderr.read()[-2000:]}")


def test_kill_9_while_the_model_file_is_written_keeps_the_old_model(scene, tmp_path):
    """The forest's model file (a few MB) is written in one go after training: the engine is
    killed the moment its temporary file appears, while the bytes go out. A kill that comes
    after the rename is tried again (the new model must then be complete)."""
    out = tmp_path / "out"
    out.mkdir()
    model = out / "model.lcfusion"
    model.write_bytes(OLD_MODEL)
    for attempt in range(KILL_ATTEMPTS):
        job = randomforest_train_job(tmp_path / f"job{attempt}", scene, model, n_trees=300,
                                     samples_per_class=2000, max_depth=0, threads=2)
        watch = CreationWatch(out)
        engine = start_engine("train-randomforest", job)
        try:
            name = kill_at_creation(watch, f"model.lcfusion-partial-{engine.pid}-", engine)
        finally:
            watch.close()
            if engine.poll() is None:
                os.killpg(engine.pid, signal.SIGKILL)
            engine.wait()
            engine.stderr.close()
        left = partial_files(model, engine.pid)
        if model.read_bytes() == OLD_MODEL:
            break
        assert not left
        load_model(model, "randomforest")
        model.write_bytes(OLD_MODEL)
    else:
        pytest.fail(f"no kill out of {KILL_ATTEMPTS} came before the rename")

    assert [p.name for p in left] == [name]
    remove_partial_files([str(model)], engine.pid)
    assert [p.name for p in out.iterdir()] == ["model.lcfusion"]
    assert model.read_bytes() == OLD_MODEL
    assert not wait_for_no_survivors(engine.pid, str(job.parent))


# A full disk ------------------------------------------------------------------------------

def test_a_full_disk_is_a_clear_error_and_keeps_the_existing_map(lcfusion_provider, scene,
                                                                 trained, tmp_path):
    model, _ = trained
    with small_tmpfs(tmp_path / "disk", "256k") as disk:
        old = old_class_map(disk / "map.tif")
        fill_disk(disk, leave=8 << 10)  # room for the map's header, not for its blocks
        before = contents(disk)

        with pytest.raises(QgsProcessingException) as caught:
            processing.run(CLASSIFY_FGUNET, {
                "INPUT": [str(p) for p in scene.s2_paths], "MODEL": str(model),
                "TILE_SIZE": 64, "MARGIN": 8, "OUTPUT": str(disk / "map.tif"),
                "OUTPUT_CONFIDENCE": str(disk / "confidence.tif")})

        assert str(caught.value) == (
            f"Class map [OUTPUT]: no space left on device while writing {disk / 'map.tif'}: "
            "free space or choose another output folder")
        assert contents(disk) == before
        assert_old_class_map(disk / "map.tif", old)


def test_a_full_disk_while_saving_a_model_names_the_model_file(lcfusion_provider, scene,
                                                               tmp_path):
    with small_tmpfs(tmp_path / "disk", "256k") as disk:
        (disk / "model.lcfusion").write_bytes(OLD_MODEL)
        fill_disk(disk, leave=0)
        before = contents(disk)

        with pytest.raises(QgsProcessingException) as caught:
            processing.run(TRAIN_FOREST, {
                "SOURCE": 0, "S2": [str(p) for p in scene.s2_paths],
                "REFERENCE": str(scene.reference_path), "CLASS_FIELD": "class_id",
                **TINY_FOREST, "OUTPUT_MODEL": str(disk / "model.lcfusion"),
                "OUTPUT_REPORT": str(tmp_path / "report.html")})

        assert str(caught.value) == (
            f"Model file [OUTPUT_MODEL]: no space left on device while writing "
            f"{disk / 'model.lcfusion'}: free space or choose another output folder")
        assert contents(disk) == before


# Two runs, one output ---------------------------------------------------------------------

def test_a_killed_run_leaves_the_partial_file_of_another_run_on_the_same_output(
        lcfusion_provider, scene, trained, big, tmp_path, monkeypatch):
    """A run from the command line is writing the map (paused meanwhile, as on a busy machine)
    when a run through Processing, writing the same map, is killed: the plugin removes its own
    engine's files only, and the other run then completes the map."""
    monkeypatch.setenv("GDAL_CACHEMAX", SMALL_GDAL_CACHE["GDAL_CACHEMAX"])
    model, _ = trained
    out = tmp_path / "out"
    out.mkdir()
    class_map, confidence = out / "map.tif", out / "confidence.tif"
    (tmp_path / "tiled").mkdir()
    smaller = tiled_series(scene.s2_paths, tmp_path / "tiled", repeat=2)
    other = start_engine("classify-fgunet",
                         fgunet_classify_job(tmp_path / "job", model, smaller, class_map,
                                             confidence))
    try:
        others = [wait_for_partial(target, other.pid, process=other)
                  for target in (class_map, confidence)]
        os.killpg(other.pid, signal.SIGSTOP)
        feedback = KillWhenWriting(confidence, 64 << 10)
        with pytest.raises(QgsProcessingException, match=r"exit status -9"):
            processing.run(CLASSIFY_FGUNET, {"INPUT": big, "MODEL": str(model),
                                             "TILE_SIZE": 64, "MARGIN": 8,
                                             **classification_outputs(out)},
                           feedback=feedback)
        assert sorted(out.iterdir()) == sorted(others), "the other run's files were touched"
        os.killpg(other.pid, signal.SIGCONT)
        assert other.wait(timeout=600) == 0, other.stderr.read()[-2000:]
    finally:
        if other.poll() is None:
            os.killpg(other.pid, signal.SIGKILL)
        other.wait()
        other.stderr.close()

    assert sorted(p.name for p in out.iterdir()) == ["confidence.tif", "map.tif"]
    with rasterio.open(class_map) as ds:
        assert ds.shape == (192, 192) and ds.read(1).shape == (192, 192)
    assert_engine_gone(feedback.engine)
