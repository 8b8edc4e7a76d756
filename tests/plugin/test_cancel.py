"""Cancelling a running algorithm stops the engine child process at once and leaves nothing
behind: no model or map, no partial file, no job folder, no engine process."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from pathlib import Path

import processing
import pytest
import rasterio
from qgis.core import QgsProcessingException, QgsProcessingFeedback, QgsProcessingUtils

TRAIN = "lcfusion:trainfgunet"
CLASSIFY = "lcfusion:classifyfgunet"

#: Seconds from cancel() to processing.run returning. The plugin sends SIGTERM and falls back
#: to SIGKILL after 10 s; a bound below that shows the engine stopped on SIGTERM.
STOP_WITHIN = 8.0
#: Seconds allowed for processes to disappear after the run returned.
GRACE = 3.0
#: Seconds after cancel() at which the test itself kills the engine it saw, so that a broken
#: cancel fails the test instead of letting the engine train on (the plugin's own SIGKILL
#: fallback comes at 10 s).
WATCHDOG = 20.0


def engine_children() -> dict[int, str]:
    """pid -> command line of this process's children that run the lcfusion engine."""
    found = {}
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as handle:
                ppid = next(line.split()[1] for line in handle if line.startswith("PPid:"))
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, StopIteration):
            continue
        if ppid == me and "lcfusion.engine" in cmdline:
            found[int(entry)] = cmdline
    return found


def survivors(pid: int, job_marker: str) -> list[str]:
    """Processes left over from the engine run `pid`: in its session, or running its job."""
    left = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, session = fields[0], int(fields[3])
        if state == "Z" and int(entry) != pid:
            continue  # a zombie of someone else's
        if int(entry) == pid or session == pid or job_marker in cmdline:
            left.append(f"{entry} [{state}] {cmdline}")
    return left


def wait_for_no_survivors(pid: int, job_marker: str) -> list[str]:
    deadline = time.monotonic() + GRACE
    while True:
        left = survivors(pid, job_marker)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def job_folders() -> set[str]:
    folder = QgsProcessingUtils.tempFolder()
    return {name for name in os.listdir(folder) if name.startswith("lcfusion-job-")}


def contents(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


class CancelAtStage(QgsProcessingFeedback):
    """Cancels once the engine reports a stage starting with `prefix`; remembers the engine
    child process that was running at that moment."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.cancelled_at: float | None = None
        self.engine: dict[int, str] = {}
        self.stages: list[str] = []
        self.watchdog: threading.Timer | None = None
        self.watchdog_fired = False

    def setProgressText(self, text):  # noqa: N802 - QGIS API
        self.stages.append(text)
        if self.cancelled_at is None and text.startswith(self.prefix):
            self.engine = engine_children()
            self.cancelled_at = time.monotonic()
            self.watchdog = threading.Timer(WATCHDOG, self._kill_engine)
            self.watchdog.daemon = True
            self.watchdog.start()
            self.cancel()
        super().setProgressText(text)

    def _kill_engine(self) -> None:
        """The engine outlived the cancel by far: stop it (only the process group we saw)."""
        for pid in self.engine:
            if pid in engine_children():
                self.watchdog_fired = True
                os.killpg(pid, signal.SIGKILL)


def run_and_cancel(algorithm: str, parameters: dict, feedback: CancelAtStage) -> tuple[str,
                                                                                        float]:
    """Run until the feedback cancels; the error message and seconds from cancel to return."""
    try:
        with pytest.raises(QgsProcessingException) as caught:
            processing.run(algorithm, parameters, feedback=feedback)
    finally:
        if feedback.watchdog is not None:
            feedback.watchdog.cancel()
    returned = time.monotonic()
    assert feedback.cancelled_at is not None, f"never reached {feedback.prefix!r}: " \
                                              f"{feedback.stages}"
    assert not feedback.watchdog_fired, "the engine ignored the cancel; the test killed it"
    return str(caught.value), returned - feedback.cancelled_at


def assert_engine_gone(feedback: CancelAtStage) -> None:
    assert len(feedback.engine) == 1, f"expected one engine child, saw {feedback.engine}"
    (pid, cmdline), = feedback.engine.items()
    job = next(part for part in cmdline.split() if part.endswith("job.json"))
    left = wait_for_no_survivors(pid, str(Path(job).parent))
    assert not left, f"engine processes left after cancel: {left}"
    assert not Path(job).parent.exists(), "the job folder was not removed"


def test_cancel_during_training(lcfusion_provider, scene, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    model = out / "model.lcfusion"
    # About a minute or more of training on two cores: cancelling must cut it short.
    parameters = {"INPUT": [str(p) for p in scene.s2_paths],
                  "REFERENCE": str(scene.reference_path), "CLASS_FIELD": "class_id",
                  "EPOCHS": 40, "PATCHES_PER_EPOCH": 256, "PATCH_SIZE": 32,
                  "VALIDATION_PATCHES": 16, "TILE_SIZE": 128, "OUTPUT_MODEL": str(model)}
    before = job_folders()
    feedback = CancelAtStage("epoch ")
    started = time.monotonic()

    message, stop_seconds = run_and_cancel(TRAIN, parameters, feedback)

    assert "Cancelled" in message and "no output" in message
    assert stop_seconds < STOP_WITHIN, f"the engine took {stop_seconds:.1f} s to stop"
    assert time.monotonic() - started < 60
    assert not model.exists()
    assert list(out.iterdir()) == []
    assert job_folders() == before
    assert_engine_gone(feedback)


def _big_series(scene, folder: Path, repeat: int) -> list[str]:
    """Each date as a VRT that tiles the scene `repeat` x `repeat` times: a local raster big
    enough that classifying it takes a while."""
    paths = []
    for source in scene.s2_paths:
        with rasterio.open(source) as ds:
            width, height, count = ds.width, ds.height, ds.count
            transform, crs = ds.transform, ds.crs.to_string()
        bands = []
        for band in range(1, count + 1):
            sources = "".join(
                f"<SimpleSource><SourceFilename relativeToVRT=\"0\">{source}</SourceFilename>"
                f"<SourceBand>{band}</SourceBand>"
                f"<SrcRect xOff=\"0\" yOff=\"0\" xSize=\"{width}\" ySize=\"{height}\"/>"
                f"<DstRect xOff=\"{i * width}\" yOff=\"{j * height}\" xSize=\"{width}\" "
                f"ySize=\"{height}\"/></SimpleSource>"
                for i in range(repeat) for j in range(repeat))
            bands.append(f"<VRTRasterBand dataType=\"UInt16\" band=\"{band}\">"
                         f"<NoDataValue>0</NoDataValue>{sources}</VRTRasterBand>")
        geo = ", ".join(str(v) for v in (transform.c, transform.a, transform.b, transform.f,
                                         transform.d, transform.e))
        text = (f"<VRTDataset rasterXSize=\"{width * repeat}\" "
                f"rasterYSize=\"{height * repeat}\"><SRS>{crs}</SRS>"
                f"<GeoTransform>{geo}</GeoTransform>{''.join(bands)}</VRTDataset>")
        path = folder / source.with_suffix(".vrt").name
        path.write_text(text)
        paths.append(str(path))
    return paths


def test_cancel_during_classification_keeps_the_existing_map(lcfusion_provider, scene,
                                                             trained, tmp_path):
    model, _ = trained
    inputs, out = tmp_path / "inputs", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    layers = _big_series(scene, inputs, repeat=8)
    with rasterio.open(layers[0]) as ds:
        assert (ds.width, ds.height) == (768, 768)
    (out / "map.tif").write_bytes(b"the previous class map" * 50)
    (out / "map.qml").write_text("<qgis>the previous style</qgis>")
    before_files = contents(out)
    before_jobs = job_folders()
    feedback = CancelAtStage("classifying")

    message, stop_seconds = run_and_cancel(CLASSIFY, {
        "INPUT": layers, "MODEL": str(model), "TILE_SIZE": 64, "MARGIN": 8,
        "OUTPUT": str(out / "map.tif"), "OUTPUT_CONFIDENCE": str(out / "confidence.tif")},
        feedback)

    assert "Cancelled" in message
    assert stop_seconds < STOP_WITHIN, f"the engine took {stop_seconds:.1f} s to stop"
    assert contents(out) == before_files  # no partial file, the old map untouched
    assert job_folders() == before_jobs
    assert_engine_gone(feedback)
