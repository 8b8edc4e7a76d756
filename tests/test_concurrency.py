"""Two engine runs at once: writing different outputs they do not interfere, and writing the
same output they leave one complete map, equal to the map of a single run.

The runs are made to overlap for certain: the first is paused (SIGSTOP, as a busy machine
would) once it has started writing, until the second has started writing too.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from fault_helpers import fgunet_classify_job, start_engine, tiled_series, wait_for_partial

from lcfusion.engine.io.outputs import PARTIAL_MARK

#: Seconds a classification of the tiled scene may take on two loaded cores.
RUN_WITHIN = 600


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


@pytest.fixture(scope="module")
def series(tmp_path_factory, scene) -> list[str]:
    """The scene's S2 dates tiled 2 x 2 (192 x 192 pixels): a few seconds to classify."""
    return tiled_series(scene.s2_paths, tmp_path_factory.mktemp("tiled"), repeat=2)


@pytest.fixture(scope="module")
def single_run(tmp_path_factory, trained, series) -> tuple[np.ndarray, np.ndarray]:
    """The class map and confidence of one run alone."""
    folder = tmp_path_factory.mktemp("single")
    job = fgunet_classify_job(folder, trained[0], series, folder / "map.tif",
                              folder / "confidence.tif")
    engine = start_engine("classify-fgunet", job)
    _, errors = engine.communicate(timeout=RUN_WITHIN)
    assert engine.returncode == 0, errors[-2000:]
    return read(folder / "map.tif"), read(folder / "confidence.tif")


def run_overlapping(jobs: list[Path], targets: list[Path]) -> list[subprocess.CompletedProcess]:
    """Run the classify jobs at once, each paused once writing its target until the next one
    writes its own; the runs' exit status and messages."""
    engines = []
    try:
        for job, target in zip(jobs, targets, strict=True):
            if engines:
                os.killpg(engines[-1].pid, signal.SIGSTOP)
            engines.append(start_engine("classify-fgunet", job))
            wait_for_partial(target, engines[-1].pid, process=engines[-1])
        for engine in engines[:-1]:
            os.killpg(engine.pid, signal.SIGCONT)
        done = []
        for engine in engines:
            _, errors = engine.communicate(timeout=RUN_WITHIN)
            done.append(subprocess.CompletedProcess(engine.args, engine.returncode, "", errors))
        return done
    finally:
        for engine in engines:
            if engine.poll() is None:
                os.killpg(engine.pid, signal.SIGKILL)
                engine.wait()


def test_two_runs_writing_different_outputs_do_not_interfere(trained, series, single_run,
                                                             tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    names = ["a", "b"]
    jobs = [fgunet_classify_job(tmp_path / f"job-{name}", trained[0], series,
                                out / f"map-{name}.tif", out / f"confidence-{name}.tif")
            for name in names]

    runs = run_overlapping(jobs, [out / f"map-{name}.tif" for name in names])

    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "confidence-a.tif", "confidence-b.tif", "map-a.tif", "map-b.tif"]
    for name in names:
        np.testing.assert_array_equal(read(out / f"map-{name}.tif"), single_run[0])
        np.testing.assert_array_equal(read(out / f"confidence-{name}.tif"), single_run[1])


def test_two_runs_writing_the_same_output_leave_one_complete_map(trained, series, single_run,
                                                                 tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    class_map, confidence = out / "map.tif", out / "confidence.tif"
    class_map.write_bytes(b"the previous class map")
    jobs = [fgunet_classify_job(tmp_path / f"job-{name}", trained[0], series, class_map,
                                confidence) for name in ("a", "b")]

    runs = run_overlapping(jobs, [class_map, class_map])

    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["confidence.tif", "map.tif"]
    assert not [p for p in out.iterdir() if PARTIAL_MARK in p.name]
    np.testing.assert_array_equal(read(class_map), single_run[0])
    np.testing.assert_array_equal(read(confidence), single_run[1])
