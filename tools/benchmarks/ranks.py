"""Figure 11: FG-UNET classifying one large area (the sample scene mosaicked) with one thread
here, and on 1 and 2 ranks of one thread each through mpirun and through a Slurm cluster started
for the bench (the tests' throw-away one); every map must equal the local one. Then a run on 2
ranks whose second rank is killed once half the blocks are written, and its rerun, which
classifies only the missing blocks."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
from rasterio.dtypes import dtype_rev, typename_fwd

from benchmarks.config import BenchConfig
from benchmarks.scenes import SceneFiles
from benchmarks.training import mpi_compute
from lcfusion.engine.compute.devices import configure_threads
from lcfusion.engine.errors import LcfusionError
from lcfusion.engine.families.fgunet.commands import classify_fgunet
from lcfusion.engine.families.fgunet.network import FGUNet
from lcfusion.engine.inference.tiles import balanced_steps
from lcfusion.engine.jobs import Job, write_job
from lcfusion.engine.progress import NullReporter

TESTS = Path(__file__).resolve().parents[2] / "tests"
#: One block per core of the predictor, as the compute tests cut them: many blocks, so that 2
#: ranks share them evenly.
BLOCK_PIXELS = 1
BLOCKS = "lcfusion-*/result/block-?????.tif"


def load() -> list[float]:
    """The machine's load averages (1, 5 and 15 minutes), as `uptime` shows them."""
    return [round(value, 2) for value in os.getloadavg()]


def mosaic_vrt(source: Path, target: Path, copies: int) -> Path:
    """A VRT of `copies` x `copies` copies of `source` side by side, on its grid extended to
    the right and down (each band keeps its description and nodata)."""
    with rasterio.open(source) as src:
        width, height = src.width, src.height
        transform = src.transform
        bands = [(src.dtypes[i], src.descriptions[i], src.nodatavals[i])
                 for i in range(src.count)]
        crs = src.crs.to_wkt()
    lines = [f'<VRTDataset rasterXSize="{width * copies}" rasterYSize="{height * copies}">',
             f"  <SRS>{escape(crs)}</SRS>",
             "  <GeoTransform>" + ", ".join(repr(v) for v in transform.to_gdal())
             + "</GeoTransform>"]
    for band, (dtype, description, nodata) in enumerate(bands, start=1):
        gdal_type = typename_fwd[dtype_rev[dtype]]
        lines.append(f'  <VRTRasterBand dataType="{gdal_type}" band="{band}">')
        if description:
            lines.append(f"    <Description>{escape(description)}</Description>")
        if nodata is not None:
            lines.append(f"    <NoDataValue>{nodata!r}</NoDataValue>")
        for row in range(copies):
            for col in range(copies):
                lines += ["    <SimpleSource>",
                          f'      <SourceFilename relativeToVRT="0">{escape(str(source))}'
                          "</SourceFilename>",
                          f"      <SourceBand>{band}</SourceBand>",
                          f'      <SrcRect xOff="0" yOff="0" xSize="{width}" '
                          f'ySize="{height}"/>',
                          f'      <DstRect xOff="{col * width}" yOff="{row * height}" '
                          f'xSize="{width}" ySize="{height}"/>',
                          "    </SimpleSource>"]
        lines.append("  </VRTRasterBand>")
    lines.append("</VRTDataset>")
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def mosaic(scene: SceneFiles, copies: int, folder: Path) -> SceneFiles:
    """`scene` with its S2 series (FG-UNET's input) as VRTs of `copies` x `copies` copies
    (the dates keep their file names); its other rasters are the scene's own."""
    folder.mkdir(parents=True, exist_ok=True)
    s2 = tuple(mosaic_vrt(path, folder / f"{path.stem}.vrt", copies) for path in scene.s2)
    return replace(scene, side=scene.side * copies, rows=scene.rows * copies, s2=s2)


def slurm_compute(cluster, ranks: int, work: Path) -> dict:
    """The compute section of a Slurm profile with `ranks` tasks on the bench's cluster."""
    mpi = mpi_compute(ranks, work)
    return {**mpi, "name": f"slurm{ranks}", "kind": "slurm", "partition": cluster.partition,
            "time_limit": "60:00", "env": {"SLURM_CONF": str(cluster.conf)}}


def slurm_services() -> tuple[type | None, str]:
    """The tests' Slurm cluster class, or None and why it cannot run here."""
    sys.path.insert(0, str(TESTS))
    try:
        from services import SlurmCluster, services_available
    except ImportError as exc:
        return None, f"the tests' Slurm services cannot be imported ({exc})"
    finally:
        sys.path.remove(str(TESTS))
    reason = services_available()
    return (None, reason) if reason else (SlurmCluster, "")


@contextmanager
def slurm_cluster(folder: Path) -> Iterator[object]:
    """The tests' single-node Slurm cluster (slurmctld, slurmd and munged as child processes,
    all state in `folder`), started here and stopped after; instead of a cluster, a string
    saying why it cannot run."""
    cluster_class, reason = slurm_services()
    if cluster_class is None:
        yield f"not timed: {reason}"
        return
    try:
        cluster = cluster_class(folder).start()
    except RuntimeError as exc:
        yield f"not timed: the test Slurm did not start: {str(exc).splitlines()[0]}"
        return
    try:
        yield cluster
    finally:
        cluster.stop()


def fgunet_job(folder: Path, model: Path, scene: SceneFiles, config: BenchConfig,
               compute: dict | None = None) -> Path:
    """A classify job of one thread (per rank) with one block per core, here or on
    `compute`."""
    sections = {"compute": compute} if compute else {}
    return write_job(folder, "classify-fgunet",
                     inputs={"model": str(model), **scene.inputs("fgunet")},
                     settings={"device": "cpu", "threads": 1, **config.rank_tiles},
                     outputs={"class_map": str(folder / "map.tif"),
                              "confidence": str(folder / "confidence.tif"),
                              "block_pixels": BLOCK_PIXELS}, **sections)


def classify(job: Path) -> dict:
    """Run the job's classification in this process (on a profile: staged, launched and
    followed from here); its outputs with the load before and after."""
    before = load()
    outputs = classify_fgunet(Job.load(job), NullReporter())
    return {"seconds": float(outputs["SECONDS"]), "load_before": before, "load_after": load()}


def read_maps(folder: Path) -> list[np.ndarray]:
    arrays = []
    for name in ("map.tif", "confidence.tif"):
        with rasterio.open(folder / name) as dataset:
            arrays.append(dataset.read(1))
    return arrays


def check_same(expected: Path, got: Path, label: str) -> None:
    """Fail the bench if a map differs from the local one."""
    for name, want, have in zip(("class map", "confidence"), read_maps(expected),
                                read_maps(got), strict=True):
        if want.shape != have.shape or not np.array_equal(want, have):
            differ = int((want != have).sum()) if want.shape == have.shape else "all"
            raise RuntimeError(f"the {label} {name} differs from the local one ({differ} "
                               f"pixels): {got}")


def killed_and_rerun(model: Path, area: SceneFiles, work: Path, config: BenchConfig,
                     expected: Path, ranks: int) -> dict:
    """`ranks` mpirun ranks; once half the blocks are written the last rank is SIGKILLed (as
    the OOM killer or a lost node would), the run fails naming COMPUTE, and the same job run
    again classifies only the missing blocks (timed, its map checked)."""
    stage = work / "resume-stage"
    job = fgunet_job(work / "resume", model, area, config, mpi_compute(ranks, stage))
    total = blocks_of(area, config)
    failures: list[LcfusionError] = []

    def first_run() -> None:
        try:
            classify_fgunet(Job.load(job), NullReporter())
        except LcfusionError as exc:
            failures.append(exc)

    running = threading.Thread(target=first_run)
    started = time.perf_counter()
    running.start()
    wait_for(lambda: len(list(stage.glob(BLOCKS))) >= total // 2 or not running.is_alive(),
             "half the blocks to be written")
    found = rank_processes(stage)
    if not running.is_alive() or len(found) != ranks:
        running.join(600)
        raise RuntimeError(f"the run to kill a rank of ended, or has {len(found)} of its "
                           f"{ranks} ranks, before half its blocks were written: {failures}")
    os.kill(max(found), signal.SIGKILL)
    running.join(600)
    killed_seconds = time.perf_counter() - started
    if not failures or failures[0].parameter != "COMPUTE":
        raise RuntimeError(f"the run with a killed rank did not fail on COMPUTE: {failures}")
    kept = len(list(stage.glob(BLOCKS)))
    rerun = classify(job)
    check_same(expected, job.parent, "resumed")
    return {"blocks": total, "kept": kept, "killed_run_seconds": killed_seconds, **rerun}


def blocks_of(scene: SceneFiles, config: BenchConfig) -> int:
    """The blocks (one per core of the predictor) the area is cut into."""
    tile, margin = config.rank_tiles["tile_size"], config.rank_tiles["margin"]
    rows, cols = (balanced_steps(size, tile, margin, FGUNet.size_multiple)
                  for size in (scene.rows, scene.side))
    return -(-scene.rows // rows) * -(-scene.side // cols)


def wait_for(done: Callable[[], bool], what: str, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"waited {seconds:.0f} s for {what}")
        time.sleep(0.05)


def rank_processes(work: Path) -> list[int]:
    """The process ids of the classify ranks working in `work` (this Python, started by
    mpirun in the job folder)."""
    found = []
    python = Path(sys.executable).resolve()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
            exe = Path(os.readlink(f"/proc/{entry}/exe")).resolve()
        except OSError:
            continue
        if cwd.startswith(str(work) + os.sep) and "classify-fgunet" in cmdline and exe == python:
            found.append(int(entry))
    return found


def timed_runs(model: Path, area: SceneFiles, work: Path, config: BenchConfig, local: Path,
               kind: str, compute: Callable[[int], dict]) -> dict:
    """The area classified on `compute(ranks)` for each of the configuration's rank counts,
    each map checked against the local one."""
    runs = {}
    for ranks in config.rank_counts:
        job = fgunet_job(work / f"{kind}-{ranks}", model, area, config, compute(ranks))
        runs[f"{kind}_{ranks}"] = classify(job)
        check_same(local, job.parent, f"{kind} {ranks}-rank")
    return runs


def rank_figures(model: Path, scene: SceneFiles, work: Path, config: BenchConfig) -> dict:
    """Seconds of each run (the engine's own: staging, ranks and merge included), the
    scaling ratios (1 rank / 2 ranks) and the resume after a killed rank."""
    area = mosaic(scene, config.rank_copies, work / "area")
    local = work / "local"
    runs = {"local": classify(fgunet_job(local, model, area, config))}
    configure_threads(0)
    stage = work / "stage"
    runs.update(timed_runs(model, area, work, config, local, "mpi",
                           lambda ranks: mpi_compute(ranks, stage)))
    figures: dict = {"scene_side": scene.side, "copies": config.rank_copies,
                     "side": area.side, "pixels": area.side * area.rows,
                     "blocks": blocks_of(area, config), **config.rank_tiles}
    if config.rank_slurm:
        with slurm_cluster(work / "slurm") as cluster:
            if isinstance(cluster, str):
                figures["slurm_skipped"] = cluster
            else:
                runs.update(timed_runs(model, area, work, config, local, "slurm",
                                       lambda ranks: slurm_compute(cluster, ranks, stage)))
    else:
        figures["slurm_skipped"] = f"not timed in the {config.name} configuration"
    figures.update(runs=runs, identical=True)
    for kind in ("mpi", "slurm"):
        if f"{kind}_1" in runs and f"{kind}_2" in runs:
            figures[f"{kind}_ratio"] = runs[f"{kind}_1"]["seconds"] / runs[f"{kind}_2"]["seconds"]
    ranks = max(config.rank_counts)
    resume = killed_and_rerun(model, area, work, config, local, ranks)
    full = runs[f"mpi_{ranks}"]["seconds"]
    resume.update(ranks=ranks, full_seconds=full, saved_seconds=full - resume["seconds"],
                  saved_share=1 - resume["seconds"] / full)
    figures["resume"] = resume
    return figures
