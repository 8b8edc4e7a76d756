"""Cancelling a running algorithm stops the engine child process at once and leaves nothing
behind: no model or map, no partial file, no job folder, no engine process."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import rasterio
from processing_helpers import STOP_WITHIN, CancelAtStage, run_and_cancel, wait_for_no_survivors
from qgis.core import QgsProcessingUtils

TRAIN = "lcfusion:trainfgunet"
CLASSIFY = "lcfusion:classifyfgunet"


def job_folders() -> set[str]:
    folder = QgsProcessingUtils.tempFolder()
    return {name for name in os.listdir(folder) if name.startswith("lcfusion-job-")}


def contents(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


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
