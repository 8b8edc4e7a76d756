"""Classifying on a compute target, for every family alike: the job's classify command runs on
every rank of the target (mpirun here or over ssh, or a Slurm batch job), each rank writes its
share of the map's blocks into the job folder (`inference.blocks`), and the blocks come back
here and are merged into the maps through the checked, atomic path of a local classification
(colour table, class tags, overviews, COG).

A family's classify command gets this with the `classify_command` decorator: without a compute
profile it runs as before; with one, `classify_on_target` stages and follows the job; on a
rank (a job whose outputs name a ``blocks`` folder) it runs on the rank's GPU with its share of
the CPU threads and writes blocks.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..compute.distributed import mpi_ranks
from ..compute.inputs import InputPlacer, is_remote_dataset
from ..compute.launcher import RESULT_FOLDER, RemoteJob
from ..compute.profiles import ComputeProfile
from ..errors import CancelledError, LcfusionError
from ..inference.blocks import BLOCK_FILE, LAYOUT_FILE, merge_blocks
from ..jobs import Job, write_job
from ..progress import FollowerReporter, Reporter
from ..wording import counted
from .mapsteps import MapOutputs, map_outputs, written_wording
from .staged import check_promised_gpus, compute_profile, copy_engine, threads_per_rank

ClassifyFunction = Callable[[Job, Reporter], dict]
#: The shares of the progress that hashing the inputs takes first, and the merge after the
#: blocks came back.
INPUTS_SHARE, MERGE_SHARE = 0.02, 0.05


def classify_command(function: ClassifyFunction) -> ClassifyFunction:
    """A family's classify command, run here, on a compute target, or as one of its ranks."""
    @functools.wraps(function)
    def classify(job: Job, reporter: Reporter) -> dict:
        if job.section("outputs").get("blocks"):
            return classify_rank(job, reporter, function)
        profile = compute_profile(job)
        if profile is None:
            return function(job, reporter)
        if job.section("outputs").get("attention"):
            raise LcfusionError("the attention map is written by a classification on this "
                                "machine only; choose the local compute profile, or leave the "
                                "attention map out", "OUTPUT_ATTENTION")
        return classify_on_target(job, profile, reporter)

    return classify


def classify_rank(job: Job, reporter: Reporter, function: ClassifyFunction) -> dict:
    """One rank of a classification on a target: on the GPU of its local rank (when the
    device resolves to CUDA), with its share of the node's cores unless the job sets the
    threads; only rank 0 speaks, except for warnings and errors."""
    check_promised_gpus(job)
    settings = job.section("settings")
    ranks, _ = mpi_ranks(str(settings.get("device") or "auto"))
    if not ranks.leader:
        reporter = FollowerReporter(reporter, ranks.rank)
    job.data["settings"] = {**settings,
                            "threads": threads_per_rank(int(settings.get("threads") or 0))}
    reporter.info(f"{counted(ranks.size, 'rank')}, each on "
                  f"{ranks.device.type if ranks.device.type == 'cpu' else 'its own GPU'}")
    return function(job, reporter)


class InputStager:
    """The paths of a job's inputs as the target sees them (`InputPlacer`: untouched for a
    dataset GDAL reads over the network, mapped by the profile's path_map, the file here, or
    its copy in the target's input cache)."""

    def __init__(self, job: Job, placer: InputPlacer):
        self.job, self.placer = job, placer
        self.sources: list[Path] = []

    def value(self, value: Any) -> Any:
        """`value` (a section of the inputs, a list or a string) with its paths replaced;
        strings that name no file here (options, URLs) stay as they are."""
        if isinstance(value, dict):
            return {key: self.value(entry) for key, entry in value.items()}
        if isinstance(value, list):
            return [self.value(entry) for entry in value]
        if not isinstance(value, str) or not value or is_remote_dataset(value):
            return value
        path = self.job.resolve(value)
        if path is None or not path.exists():
            return value
        self.sources.append(path)
        return self.placer.place(path)

    def identity(self) -> list[list]:
        """Each input file's path, size and modification time (a changed input is a new
        job)."""
        found = []
        for source in self.sources:
            files = sorted(source.rglob("*")) if source.is_dir() else [source]
            for file in files:
                if file.is_file():
                    stat = file.stat()
                    found.append([str(file), stat.st_size, stat.st_mtime_ns])
        return found


def stage_classification(job: Job, placer: InputPlacer, maps: MapOutputs,
                         stage: Path) -> str:
    """Write the job every rank runs into `stage` and return its identity: the classify
    command with the inputs as the target sees them (placed by `placer`), the settings, and
    the blocks of `maps` as the output (the maps are merged here)."""
    profile = placer.profile
    stager = InputStager(job, placer)
    sections = {name: value for name, value in job.data.items()
                if name not in ("version", "command", "compute", "outputs")}
    sections["inputs"] = stager.value(job.section("inputs"))
    outputs = {"blocks": RESULT_FOLDER, "confidence": maps.confidence is not None}
    if job.section("outputs").get("block_pixels"):
        outputs["block_pixels"] = int(job.section("outputs")["block_pixels"])
    path = write_job(stage, job.command, **sections, outputs=outputs,
                     compute={"gpus_per_node": profile.gpus or profile.gpus_per_node})
    digest = hashlib.sha256(path.read_bytes())
    digest.update(json.dumps(stager.identity()).encode())
    copy_engine(stage)
    return digest.hexdigest()[:16]


def finished_blocks(remote: RemoteJob) -> tuple[int, int | None] | None:
    """The blocks in a failed job's folder on the target and the blocks of its map (None when
    the layout was not written), or None when the target cannot be asked."""
    folder = f"{remote.folder}/{RESULT_FOLDER}"
    try:
        listing = remote.shell.run(["ls", "-1", "--", folder], check=False)
        layout = remote.shell.run(["cat", "--", f"{folder}/{LAYOUT_FILE}"], check=False)
    except LcfusionError:
        return None
    done = sum(BLOCK_FILE.fullmatch(name) is not None for name in listing.stdout.split()
               ) if listing.returncode == 0 else 0
    try:
        total = len(json.loads(layout.stdout)["blocks"]) if layout.returncode == 0 else None
    except (ValueError, KeyError, TypeError):
        total = None
    return done, total


def kept_wording(folder: str, finished: tuple[int, int | None] | None) -> str:
    """What a failed classification's job `folder` keeps (`finished`: blocks done and in all,
    see `finished_blocks`) and how to go on."""
    again = "run the algorithm again with the same inputs and profile"
    if finished is None:
        return (f"The blocks it finished, if any, are kept in {folder}; {again} to classify "
                "only the missing ones")
    done, total = finished
    if done == 0:
        return (f"It finished no block, so {folder} holds none to resume from; {again} once "
                "the cause is fixed")
    if total is None:
        return (f"It finished {counted(done, 'block')}, kept in {folder}; {again} to classify "
                "only the missing ones")
    if done >= total:
        return (f"It finished all {counted(total, 'block')}, kept in {folder}; {again} to "
                "merge them without classifying any again")
    return (f"It finished {done} of {counted(total, 'block')}, kept in {folder}; {again} to "
            f"classify only the {total - done} missing")


def kept_blocks(remote: RemoteJob) -> str:
    return kept_wording(remote.folder, finished_blocks(remote))


def classify_on_target(job: Job, profile: ComputeProfile, reporter: Reporter) -> dict:
    """Classify on `profile`'s ranks, fetch the blocks and merge them into the maps here.
    A failed job keeps its blocks: run again with the same inputs and profile, and only the
    missing ones are classified. Cancel stops every rank and removes the job's folder."""
    maps = map_outputs(job)
    started = time.monotonic()
    stage = Path(tempfile.mkdtemp(prefix="stage-", dir=job.folder))
    try:
        placer = InputPlacer(profile, reporter.span(0.0, INPUTS_SHARE))
        job_id = stage_classification(job, placer, maps, stage)
        with RemoteJob(profile, stage, job_id,
                       reporter.span(INPUTS_SHARE, 1.0 - MERGE_SHARE),
                       command=job.command) as remote:
            placer.transfer(remote.shell)
            outcome = remote.run()
            if outcome.failed:
                raise remote.failure(outcome, "the classification", kept_blocks(remote))
            try:
                blocks = remote.fetch(stage / RESULT_FOLDER)
                grid, classes, finishing = merge_blocks(
                    blocks, maps.class_map, maps.confidence, maps.cog,
                    reporter.span(1.0 - MERGE_SHARE, 1.0))
            except CancelledError:
                remote.clean()
                raise
            remote.clean()
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    seconds = time.monotonic() - started
    paths, finish_note = written_wording(maps, grid, finishing)
    reporter.info(f"class map merged from {counted(int(outcome.outputs.get('BLOCKS', 0)), 'block')}"
                  f" into {paths} ({seconds:.1f} s in all; {finish_note})")
    result = {"OUTPUT": str(maps.class_map), "CLASSES": classes.to_json(), "SECONDS": seconds,
              "OVERVIEW_SECONDS": finishing}
    if maps.confidence:
        result["OUTPUT_CONFIDENCE"] = str(maps.confidence)
    return result
