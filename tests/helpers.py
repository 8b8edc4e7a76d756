"""Helpers shared by the tests: small rasters, the shared data, quick settings."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from lcfusion.engine.compute.profiles import ComputeProfile, save_profiles
from lcfusion.engine.errors import CancelledError
from lcfusion.engine.jobs import write_job
from lcfusion.engine.progress import Reporter
from lcfusion.engine.sample_scene import SampleScene, SampleSceneConfig

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LCFUSION_SHARED_DATA", REPO.parent / "shared" / "data"))

#: A small but complete scene: every class has enough polygons for a 3-way split.
SMALL_SCENE = SampleSceneConfig(width=96, height=96, n_s2_dates=6, n_s1_dates=8, seed=11)

#: Training settings that learn the small scene in seconds on two CPU cores.
QUICK_TRAINING = {"epochs": 6, "batch_size": 8, "patch_size": 32, "patches_per_epoch": 96,
                  "validation_patches": 16, "learning_rate": 0.003, "max_shift": 8,
                  "tile_size": 128, "margin": 20}


#: MRFusion settings that learn the small scene's PAN textures in about 20 s on two cores.
QUICK_MRFUSION = {"epochs": 3, "samples_per_epoch": 512, "batch_size": 32,
                  "learning_rate": 0.001, "validation_samples": 128, "tile_size": 128}


#: TWINNS settings that learn the small scene in about half a minute on two cores.
QUICK_TWINNS = {"epochs": 4, "samples_per_epoch": 512, "batch_size": 64, "learning_rate": 0.002,
                "validation_samples": 128, "tile_size": 96}


def write_raster(path: Path, data: np.ndarray, origin=(500000.0, 5000000.0), pixel=10.0,
                 crs: str = "EPSG:32631", nodata=None, descriptions=None) -> Path:
    """A GeoTIFF of `data` (bands, rows, cols) on a north-up grid."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1],
               "count": data.shape[0], "dtype": data.dtype.name, "crs": crs,
               "transform": from_origin(origin[0], origin[1], pixel, pixel), "nodata": nodata}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, text in enumerate(descriptions or (), start=1):
            dst.set_band_description(i, text)
    return path


def shared_data(*parts: str) -> Path:
    """A path in ../shared/data; skips the test with a reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path} (tests read it from ../shared/data)")
    return path


#: The split of the helpers' training jobs; NO_TEST_SPLIT for tests that compare weights,
#: not accuracies (no time spent evaluating).
SPLIT = {"train": 0.6, "validation": 0.2, "test": 0.2, "seed": 3}
NO_TEST_SPLIT = {"train": 0.75, "validation": 0.25, "test": 0.0, "seed": 3}


def fgunet_train_job(folder: Path, scene: SampleScene, model: Path, split: dict | None = None,
                     **settings) -> Path:
    return write_job(
        folder, "train-fgunet",
        inputs={"series": {"paths": [str(p) for p in scene.s2_paths]}},
        reference={"path": str(scene.reference_path), "layer": scene.reference_layer,
                   "class_field": "class_id", "name_field": "class_name"},
        split=split or SPLIT,
        settings={**QUICK_TRAINING, **settings},
        outputs={"model": str(model)},
    )


def mrfusion_train_job(folder: Path, pan: Path, ms: Path, reference: Path, model: Path,
                       split: dict | None = None, **settings) -> Path:
    return write_job(
        folder, "train-mrfusion",
        inputs={"pan": {"paths": [str(pan)]}, "ms": {"paths": [str(ms)]}},
        reference={"path": str(reference), "layer": "reference", "class_field": "class_id",
                   "name_field": "class_name"},
        split=split or SPLIT,
        settings={**QUICK_MRFUSION, **settings},
        outputs={"model": str(model)},
    )


def mrfusion_classify_job(folder: Path, model: Path, pan: Path, ms: Path, confidence=True,
                          **settings) -> Path:
    return write_job(
        folder, "classify-mrfusion",
        inputs={"model": str(model), "pan": {"paths": [str(pan)]}, "ms": {"paths": [str(ms)]}},
        settings=settings,
        outputs={"class_map": str(folder / "map.tif"),
                 "confidence": str(folder / "confidence.tif") if confidence else None},
    )


#: FG-UNET classification settings for the small scene: several tiles with their margins.
FGUNET_CLASSIFY = {"tile_size": 64, "margin": 12}


def fgunet_classify_job(folder: Path, scene: SampleScene, model: Path) -> Path:
    """FG-UNET (an .lcfusion or .onnx `model`) on the small scene's S2 series."""
    return write_job(folder, "classify-fgunet",
                     inputs={"model": str(model),
                             "series": {"paths": [str(p) for p in scene.s2_paths]}},
                     settings=FGUNET_CLASSIFY,
                     outputs={"class_map": str(folder / "map.tif"),
                              "confidence": str(folder / "confidence.tif")})


def randomforest_classify_job(folder: Path, scene: SampleScene, model: Path) -> Path:
    """A Random Forest (an .lcfusion or .onnx `model`) on the small scene's S2 series."""
    return write_job(folder, "classify-randomforest",
                     inputs={"model": str(model),
                             "s2": twinns_inputs(scene, gapfill=False)["s2"]},
                     settings={"tile_size": 48},
                     outputs={"class_map": str(folder / "map.tif"),
                              "confidence": str(folder / "confidence.tif")})


def exported_onnx(folder: Path, model: Path, **settings) -> Path:
    """`model` exported to ``folder/model.onnx`` (its check against the model passed)."""
    from lcfusion.engine.families.onnxexport import export_onnx
    from lcfusion.engine.jobs import Job

    target = folder / "model.onnx"
    job = write_job(folder, "export-onnx", inputs={"model": str(model)}, settings=settings,
                    outputs={"onnx": str(target)})
    events = EventOrder()
    result = export_onnx(Job.load(job), events)
    assert result["MAX_DIFFERENCE"] <= 1e-4
    # the result line after the end of the progress, as qgis_process must print it
    assert events.order[-2:] == ["progress 1.0", f"info {model.name} exported to {target}"]
    return target


class EventOrder(Reporter):
    """The progress fractions and the start of each log line, in the order they came."""

    def __init__(self):
        self.order: list[str] = []

    def progress(self, fraction: float, stage: str = "") -> None:
        self.order.append(f"progress {fraction}")

    def log(self, message: str, level: str = "info") -> None:
        self.order.append(f"{level} {message.split(' (')[0]}")

    def result(self, outputs: dict) -> None:
        return None


def twinns_inputs(scene, mask: bool = True, gapfill: bool = True) -> dict:
    return {"s1": {"paths": [str(p) for p in scene.s1_paths]},
            "s2": {"paths": [str(p) for p in scene.s2_paths],
                   "masks": [str(scene.s2_cloud_mask_path)] if mask else [],
                   "gapfill": gapfill}}


def twinns_train_job(folder: Path, scene, model: Path, inputs: dict | None = None,
                     split: dict | None = None, **settings) -> Path:
    return write_job(
        folder, "train-twinns", inputs=inputs or twinns_inputs(scene),
        reference={"path": str(scene.reference_path), "layer": scene.reference_layer,
                   "class_field": "class_id", "name_field": "class_name"},
        split=split or SPLIT,
        settings={**QUICK_TWINNS, **settings},
        outputs={"model": str(model)},
    )


def randomforest_train_job(folder: Path, scene, model: Path, **settings) -> Path:
    """A Random Forest on the small scene's Sentinel-2 series (cloud mask, no gap-filling)."""
    return write_job(
        folder, "train-randomforest", inputs={"s2": twinns_inputs(scene, gapfill=False)["s2"]},
        reference={"path": str(scene.reference_path), "layer": scene.reference_layer,
                   "class_field": "class_id", "name_field": "class_name"},
        split=SPLIT,
        settings={"source": "s2", "n_trees": 20, "samples_per_class": 200, "tile_size": 64,
                  **settings},
        outputs={"model": str(model)},
    )


def with_compute(job_path: Path, name: str, kind: str, **values) -> Path:
    """Give a written job a compute profile (the section the plugin writes)."""
    data = json.loads(job_path.read_text(encoding="utf-8"))
    data["compute"] = {"name": name, "kind": kind, **values}
    job_path.write_text(json.dumps(data), encoding="utf-8")
    return job_path


class RecordingReporter(Reporter):
    """Keeps the log and the progress stages; `stop_at(stage)` raises CancelledError the first
    time a progress stage starts with `stage` (a user pressing Cancel)."""

    def __init__(self, stop_at: str | None = None):
        self.lines: list[str] = []
        self.stages: list[str] = []
        self.fractions: list[float] = []
        self.stop_at = stop_at

    def progress(self, fraction: float, stage: str = "") -> None:
        self.stages.append(stage)
        self.fractions.append(fraction)
        if self.stop_at and stage.startswith(self.stop_at):
            self.stop_at = None
            raise CancelledError()

    def log(self, message: str, level: str = "info") -> None:
        self.lines.append(message)

    def result(self, outputs: dict) -> None:
        return None

    def text(self) -> str:
        return "\n".join(self.lines)


#: mpirun as root and with more ranks than cores (the test machines).
MPIRUN_ARGS = ("--allow-run-as-root", "--oversubscribe")


def two_rank_profiles(path: Path, work: Path) -> Path:
    """A profiles file with the profile ``two``: mpirun with 2 ranks on this machine."""
    save_profiles(path, {"two": ComputeProfile("two", "mpi", python=sys.executable,
                                               mpirun_args=MPIRUN_ARGS, ranks=2,
                                               work_dir=str(work))})
    return path


def processes_in(folder: Path) -> list[str]:
    """Processes working in `folder` or below it, or naming it on their command line: the
    mpirun and rank processes of a job staged there (they run in a session of their own)."""
    found = []
    marker = str(folder)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd == marker or cwd.startswith(marker + os.sep) or marker in cmdline:
            found.append(f"{entry} (in {cwd}) {cmdline}")
    return found


#: What the command line of an engine training process (mpirun or one of its ranks) holds.
FIT_COMMAND = "lcfusion.engine --events json fit"


def fit_processes(folder: Path) -> list[str]:
    """The engine training processes (`processes_in`) of one test's `folder`: its own ranks,
    not those of tests running beside it (other test workers, other checkouts)."""
    return [line for line in processes_in(folder) if FIT_COMMAND in line]


def rank_pids(folder: Path) -> list[int]:
    """The PIDs of the training ranks among `fit_processes(folder)`: the processes running this
    Python, not the shell and the mpirun that started them (Open MPI 5 and later's mpirun runs
    as prterun, whose command line names no mpirun)."""
    ranks = []
    for line in fit_processes(folder):
        pid = int(line.split()[0])
        try:
            program = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if program == os.fsencode(sys.executable):
            ranks.append(pid)
    return ranks


def cropped_pair(folder: Path, scene, size: int = 96) -> tuple[Path, Path]:
    """The top-left `size` x `size` PAN pixels of the scene and the MS pixels under them."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for path, side in ((scene.pan_path, size), (scene.ms_path, size // 4)):
        with rasterio.open(path) as src:
            window = Window(0, 0, side, side)
            profile = {**src.profile, "width": side, "height": side,
                       "transform": src.window_transform(window), "tiled": False}
            profile.pop("blockxsize", None)
            profile.pop("blockysize", None)
            with rasterio.open(folder / path.name, "w", **profile) as dst:
                dst.write(src.read(window=window))
                dst.descriptions = src.descriptions
        paths.append(folder / path.name)
    return paths[0], paths[1]
