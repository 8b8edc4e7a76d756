"""The light engine environment, made as Create Engine Environment's light choice makes it (a
real virtual environment with requirements-light.txt: onnxruntime, no torch), classifies with
FG-UNET and Random Forest models exported to ONNX, giving the maps of the models themselves.

The environment is cached in build/ under the hash of requirements-light.txt (a second run
reuses it); building it needs pip's package index, and the tests are skipped, saying so, only
when that index cannot be reached."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import fgunet_classify_job, randomforest_classify_job

from lcfusion.engine.cli import job_command
from lcfusion.engine.jobs import Job
from lcfusion.engine.progress import NullReporter
from lcfusion.plugin.engine_process import engine_command, engine_environment
from lcfusion.plugin.environment import (
    LIGHT_DISK_MB,
    CreateEnvironmentTask,
    environment_stamp,
    is_light,
    light_requirements_file,
    pinned_versions,
    python_version,
    read_stamp,
    startup_problem,
)
from lcfusion.plugin.settings import qgis_python, venv_executable

BUILD = Path(__file__).resolve().parents[2] / "build"
PIP_TIMEOUT_SECONDS = 10

pytestmark = pytest.mark.slow


def index_problem() -> str | None:
    """Why pip (as pip.conf and PIP_* configure it) cannot get requirements-light.txt's
    onnxruntime from its package index, or None."""
    version = pinned_versions(light_requirements_file())["onnxruntime"]
    result = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", "onnxruntime", "--retries", "0",
         "--timeout", str(PIP_TIMEOUT_SECONDS), "--disable-pip-version-check"],
        capture_output=True, text=True, timeout=12 * PIP_TIMEOUT_SECONDS, check=False)
    offered = next((line for line in result.stdout.splitlines()
                    if line.startswith("Available versions:")), "")
    if result.returncode == 0 and version in offered.partition(":")[2].replace(",", " ").split():
        return None
    said = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines()
            or ["no answer"])[-1]
    return (f"pip's package index does not offer onnxruntime=={version} here (unreachable?): "
            f"pip index versions onnxruntime said: {said}")


@pytest.fixture(scope="module")
def light_python() -> Path:
    """The light environment's Python: made by the plugin's own creation task in
    build/light-environment-<hash>, or reused when its stamp matches."""
    stamp = environment_stamp(light_requirements_file(), python_version(qgis_python()), None)
    folder = BUILD / f"light-environment-{stamp['requirements_sha256'][:12]}"
    if read_stamp(folder) != stamp or not venv_executable(folder).exists():
        problem = index_problem()
        if problem:
            pytest.skip(f"the light environment cannot be built: {problem}")
        for old in BUILD.glob("light-environment-*"):  # other requirements, or half made
            shutil.rmtree(old)
        task = CreateEnvironmentTask(folder, light_requirements_file(), qgis_python())
        assert task.run(), f"{task.error}\n" + "\n".join(task.lines[-20:])
    return venv_executable(folder)


def disk_mb(folder: Path) -> float:
    """What `folder` takes on disk, in MiB (as ``du -m``: allocated blocks, each file once)."""
    seen, total = set(), 0
    for root, _, files in os.walk(folder):
        for name in files:
            status = os.lstat(os.path.join(root, name))
            if (status.st_dev, status.st_ino) not in seen:
                seen.add((status.st_dev, status.st_ino))
                total += status.st_blocks * 512
    return total / 2**20


def test_the_light_environment_has_no_torch_and_the_size_it_is_said_to_have(light_python):
    """torch cannot be imported; the plugin's start-up check accepts the environment as light;
    it takes the disk space Create Engine Environment announces (within 15 %)."""
    result = subprocess.run([str(light_python), "-c", "import torch"], capture_output=True,
                            text=True, env=engine_environment(), check=False)
    assert result.returncode == 1
    assert "ModuleNotFoundError: No module named 'torch'" in result.stderr
    assert is_light(str(light_python))
    assert startup_problem(str(light_python)) is None
    assert abs(disk_mb(light_python.parent.parent) - LIGHT_DISK_MB) <= 0.15 * LIGHT_DISK_MB


def read_maps(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    with rasterio.open(folder / "map.tif") as classes, \
            rasterio.open(folder / "confidence.tif") as confidence:
        return classes.read(1), confidence.read(1)


@pytest.mark.parametrize(("command", "job_of", "model", "onnx"), [
    ("classify-fgunet", fgunet_classify_job, "trained", "fgunet_onnx"),
    ("classify-randomforest", randomforest_classify_job, "trained_randomforest",
     "randomforest_onnx"),
])
def test_the_light_environment_classifies_as_the_model_does(
        request, tmp_path, scene, light_python, command, job_of, model, onnx):
    """The engine, run as the plugin runs it with the light environment's Python, classifies
    with the .onnx model; the map is the .lcfusion model's (PyTorch / scikit-learn) map."""
    light, original = tmp_path / "light", tmp_path / "original"
    light.mkdir()
    original.mkdir()
    job = job_of(light, scene, request.getfixturevalue(onnx))
    result = subprocess.run(engine_command(command, job, str(light_python)),
                            capture_output=True, text=True, env=engine_environment(),
                            timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    logs = [event["message"] for event in map(json.loads, result.stdout.splitlines())
            if event["event"] == "log"]
    assert any("with onnxruntime's CPU provider" in line for line in logs), logs

    job_command(command)(Job.load(job_of(original, scene, request.getfixturevalue(model)[0])),
                         NullReporter())
    (light_map, light_confidence), (expected_map, expected_confidence) = (
        read_maps(light), read_maps(original))
    np.testing.assert_array_equal(light_map, expected_map)
    np.testing.assert_allclose(light_confidence, expected_confidence, atol=1e-4)
    assert len(np.unique(expected_map)) > 1
