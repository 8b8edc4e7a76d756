"""Figure 8: QGIS rendering a Sentinel-2-tile-sized class map zoomed out, with and without
the engine's overviews, and the time the engine takes to build them.

The map (8-bit, a few classes in 40-pixel fields with 5 % salt noise, as a classification
gives) is written as the engine writes its maps; one copy gets the engine's overviews. Each
render runs in a fresh QGIS (``tools/render_in_qgis.py``, in QGIS's Python: this module never
imports qgis), alternating the two maps, so neither finds the other's blocks in a cache.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.windows import Window

from benchmarks.config import BenchConfig
from lcfusion.engine.io.overviews import CLASS_RESAMPLING, build_overviews, overview_factors
from lcfusion.engine.io.rasters import Grid, write_profile
from lcfusion.engine.progress import NullReporter

RENDER_SCRIPT = Path(__file__).resolve().parents[1] / "render_in_qgis.py"
CLASSES = 6
FIELD = 40
NOISE = 0.05
NODATA = 255


def write_class_map(path: Path, side: int, seed: int = 0) -> float:
    """An 8-bit class map `side` pixels square, written by strips; the seconds taken."""
    started = time.monotonic()
    rng = np.random.default_rng(seed)
    fields = rng.integers(0, CLASSES, size=(side // FIELD + 1,) * 2).astype(np.uint8)
    grid = Grid(CRS.from_epsg(32631).to_wkt(), (600000.0, 10.0, 0.0, 5700000.0, 0.0, -10.0),
                side, side)
    columns = np.arange(side) // FIELD
    with rasterio.open(path, "w", **write_profile(grid, 1, "uint8", NODATA)) as dataset:
        dataset.write_colormap(1, {code: (40 * code, 255 - 40 * code, 120, 255)
                                   for code in range(CLASSES)})
        for top in range(0, side, 1024):
            rows = min(1024, side - top)
            strip = fields[(np.arange(top, top + rows) // FIELD)[:, None], columns[None, :]]
            noisy = rng.random(strip.shape) < NOISE
            strip[noisy] = rng.integers(0, CLASSES, size=int(noisy.sum()), dtype=np.uint8)
            dataset.write(strip, 1, window=Window(0, top, side, rows))
    return time.monotonic() - started


def render_in_qgis(path: Path, size: int, work: Path) -> dict:
    """One render of `path` zoomed out to `size` pixels, in a fresh headless QGIS."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_RUNTIME_DIR=str(work),
               QGIS_CUSTOM_CONFIG_PATH=str(work / "qgis-profile"))
    run = subprocess.run([sys.executable, str(RENDER_SCRIPT), str(path), "--size", str(size)],
                         env=env, capture_output=True, text=True, check=False, timeout=600)
    if run.returncode != 0:
        raise RuntimeError(f"rendering {path.name} in QGIS failed: {run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def render_figures(config: BenchConfig, work: Path) -> dict:
    if importlib.util.find_spec("qgis") is None:
        return {"skipped": "QGIS's Python modules are not installed"}
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o700)
    side = config.render_side
    plain = work / "class-map.tif"
    written = write_class_map(plain, side)
    with_overviews = work / "class-map-overviews.tif"
    shutil.copyfile(plain, with_overviews)
    started = time.monotonic()
    build_overviews(with_overviews, CLASS_RESAMPLING, NullReporter())
    build_seconds = time.monotonic() - started
    renders: dict[str, list[dict]] = {"without": [], "with": []}
    for _ in range(config.repeats):
        for label, path in (("without", plain), ("with", with_overviews)):
            renders[label].append(render_in_qgis(path, config.render_size, work))
    seconds = {label: statistics.median(r["seconds"] for r in runs)
               for label, runs in renders.items()}
    return {"side": side, "pixels": side * side, "output_size": config.render_size,
            "factors": overview_factors(side, side), "write_seconds": written,
            "overview_seconds": build_seconds,
            "file_mb": {"without": plain.stat().st_size / 2 ** 20,
                        "with": with_overviews.stat().st_size / 2 ** 20},
            "renders": renders, "seconds": seconds,
            "ratio": seconds["without"] / seconds["with"]}


def overview_share(render: dict, inference: dict) -> dict[str, float]:
    """The overviews' build time over each family's classification of the same pixels at the
    CPU throughput measured by the inference figures."""
    return {family: render["overview_seconds"]
            / (render["pixels"] / (figures["devices"]["cpu"]["mpx_per_s"] * 1e6))
            for family, figures in inference.items()}
