"""Training on a compute target: the samples are packed here, where the rasters are; the
training runs there (mpirun or Slurm, one or more ranks); the weights come back here, are
verified, and the family goes on (accuracy on the test polygons, the model file).

Locally this is `fit_on_target`; on the target it is the ``fit`` job command (`fit_packed_job`),
which only needs the job folder: the pack, ``job.json`` and a copy of the engine.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..compute.devices import configure_threads
from ..compute.distributed import join_ranks
from ..compute.launcher import RESULT_FOLDER, RemoteJob
from ..compute.profiles import LOCAL, ComputeProfile
from ..errors import LcfusionError
from ..io.pack import PACK_FILE, ArraySource, PackWriter, SamplePack
from ..jobs import Job, settings_from, write_job
from ..modelfile.header import SUFFIX
from ..modelfile.storage import load_model, save_model
from ..progress import FollowerReporter, Reporter
from ..training.loop import FitResult, RunContext
from ..wording import counted

PACK_FOLDER = "pack"
CHECKPOINT = "checkpoint.pt"
MODEL = f"model{SUFFIX}"
#: The last epoch's weights, beside the kept ones, when keep "best-or-last" leaves the choice
#: between them to the family (it is made where the rasters are).
LAST_MODEL = f"last-epoch{SUFFIX}"
REPORT = "report.json"
#: Families that can train from a pack: family -> engine module with ``fit_packed``.
FAMILY_MODULES = {family: f"{family}.commands" for family in ("fgunet", "mrfusion", "twinns")}


def compute_profile(job: Job) -> ComputeProfile | None:
    """The job's compute profile, or None to train in this process."""
    compute = job.section("compute")
    if not compute or compute.get("kind", LOCAL) == LOCAL:
        return None
    values = {key: value for key, value in compute.items() if key != "name"}
    return ComputeProfile.from_json(str(compute.get("name") or "job"), values)


def rng_state(rng: np.random.Generator) -> str:
    return json.dumps(rng.bit_generator.state)


def restore_rng(state: str) -> np.random.Generator:
    rng = np.random.default_rng()
    rng.bit_generator.state = json.loads(state)
    return rng


@dataclass
class StagedFit:
    """What a family hands over to train elsewhere: the arrays to pack (with the pixels their
    reads may touch), the tables, and the metadata its ``fit_packed`` rebuilds the run from
    (settings, seed, architecture, normalisation, classes, ...)."""

    family: str
    arrays: list[ArraySource]
    tables: dict[str, dict[str, np.ndarray]]
    metadata: dict[str, Any]
    rng: np.random.Generator
    extra: dict[str, Any] = field(default_factory=dict)


def packed_model(pack: SamplePack, settings_type: type, model_type: type,
                 architecture_type: type, device: torch.device) -> tuple[dict, Any, Any]:
    """The pack's metadata, its training settings, and the model built from its architecture
    after seeding torch as the local run does (so one rank starts from the same weights)."""
    metadata = pack.metadata
    config = settings_from(settings_type, metadata["settings"])
    torch.manual_seed(metadata["seed"])
    architecture = architecture_type.from_json(metadata["architecture"])
    return metadata, config, model_type(architecture).to(device)


def copy_engine(target: Path) -> None:
    """A copy of this engine as the package ``lcfusion`` (no plugin, no qgis)."""
    package = target / "lcfusion"
    shutil.copytree(Path(__file__).parents[1], package / "engine",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (package / "__init__.py").write_text('"""lcfusion engine, staged for a training job."""\n',
                                         encoding="utf-8")


def job_digest(stage: Path) -> str:
    """The job's identity: the pack's content and metadata and the job's settings, so that a
    resubmitted job finds the folder (and the checkpoint) of its earlier run."""
    manifest = json.loads((stage / PACK_FOLDER / PACK_FILE).read_text(encoding="utf-8"))
    digest = hashlib.sha256(manifest["content_sha256"].encode())
    digest.update(json.dumps(manifest["metadata"], sort_keys=True).encode())
    digest.update((stage / "job.json").read_bytes())
    return digest.hexdigest()[:16]


def fit_on_target(job: Job, profile: ComputeProfile, staged: StagedFit,
                  reporter: Reporter) -> FitResult:
    """Pack, stage, train on `profile`, fetch and verify the weights; returns the fit result
    (its best state is the trained weights)."""
    stage = Path(tempfile.mkdtemp(prefix="stage-", dir=job.folder))
    try:
        writer = PackWriter(stage / PACK_FOLDER)
        packing = reporter.span(0.0, 0.1)
        for index, source in enumerate(staged.arrays):
            writer.add_array(source, packing.span(index / len(staged.arrays),
                                                  (index + 1) / len(staged.arrays)))
        for name, table in staged.tables.items():
            writer.add_table(name, **table)
        size = writer.finish({**staged.metadata, "family": staged.family,
                              "rng": rng_state(staged.rng)})
        reporter.info(f"sample pack: {size / 1e6:.1f} MB in {len(writer.files)} checksummed "
                      "files")
        write_job(stage, "fit", pack=PACK_FOLDER,
                  compute={"gpus_per_node": profile.gpus or profile.gpus_per_node},
                  outputs={"model": f"{RESULT_FOLDER}/{MODEL}",
                           "last_model": f"{RESULT_FOLDER}/{LAST_MODEL}",
                           "report": f"{RESULT_FOLDER}/{REPORT}"})
        copy_engine(stage)
        with RemoteJob(profile, stage, job_digest(stage),
                       reporter.span(0.1, 0.97)) as remote:
            remote.run_or_fail(
                "the training",
                f"Its last checkpoint is kept in {remote.folder}; run the algorithm again with "
                "the same inputs and profile to resume from it")
            result = remote.fetch(stage / RESULT_FOLDER)
            _, state = load_model(result / MODEL, staged.family, "COMPUTE", complete=False)
            report = json.loads((result / REPORT).read_text(encoding="utf-8"))
            last_state = (load_model(result / LAST_MODEL, staged.family, "COMPUTE",
                                     complete=False)[1] if report.get("last_epoch") else None)
            reporter.info(f"the trained weights came back from {remote.shell.where} and passed "
                          "their checksum")
            remote.clean()
        reporter.progress(1.0, "weights fetched")
        return FitResult(state, int(report["best_epoch"]), report["history"],
                         float(report["seconds"]), int(report["resumed_from"]),
                         float(report["samples_per_second"]), last_state,
                         int(report.get("last_epoch") or 0))
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def parameter_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a model's parameters (not its buffers), to compare the ranks' weights."""
    digest = hashlib.sha256()
    for name, parameter in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(parameter.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def fit_here_or_on_target(job: Job, model: torch.nn.Module, reporter: Reporter,
                          here: Callable[[Reporter], FitResult],
                          staged: Callable[[], StagedFit]) -> FitResult:
    """Train in this process (`here`) or, when the job names a compute profile, on that target
    with what `staged` packs; then `model` holds the trained weights either way."""
    profile = compute_profile(job)
    if profile is None:
        return here(reporter)
    result = fit_on_target(job, profile, staged(), reporter)
    model.load_state_dict(result.best_state)
    return result


def check_promised_gpus(job: Job) -> None:
    """A staged job whose profile gives GPUs fails clearly where torch sees none."""
    gpus = int(job.section("compute").get("gpus_per_node", 0))
    if gpus and not torch.cuda.is_available():
        raise LcfusionError(f"the profile gives {counted(gpus, 'GPU')} per node but torch "
                            f"{torch.__version__} on {socket.gethostname()} sees none; install "
                            "a CUDA build of torch there, or set the profile's GPUs to 0",
                            "COMPUTE")


def threads_per_rank(requested: int) -> int:
    """The CPU threads of one rank: `requested`, else the cores shared out over the ranks on
    this node."""
    local_ranks = int(os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE", "1"))
    if requested > 0:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    return max(1, cores // max(local_ranks, 1))


def fit_packed_job(job: Job, reporter: Reporter) -> dict:
    """The ``fit`` command: train on the job's pack on every rank; rank 0 writes the model and
    the report. A checkpoint left by an interrupted run of the same job is resumed."""
    pack = SamplePack(job.resolve(job.data.get("pack")) or job.folder / PACK_FOLDER)
    pack.verify()
    metadata = pack.metadata
    family = metadata.get("family")
    if family not in FAMILY_MODULES:
        raise LcfusionError(f"the pack is for an unknown model family {family!r}")
    module = importlib.import_module(f"{__package__}.{FAMILY_MODULES[family]}")
    settings = metadata["settings"]
    check_promised_gpus(job)
    ranks = join_ranks(settings.get("device", "auto"))
    try:
        if not ranks.leader:
            reporter = FollowerReporter(reporter, ranks.rank)
        threads = configure_threads(threads_per_rank(int(settings.get("threads", 0))))
        reporter.info(f"rank {ranks.rank} of {ranks.size} on {ranks.device} "
                      f"({ranks.backend or 'single process'}), "
                      f"{counted(threads, 'thread')} per rank")
        context = RunContext(ranks, checkpoint=job.folder / CHECKPOINT)
        model, result = module.fit_packed(pack, context, ranks.device, reporter)
        digests = ranks.gather(parameter_digest(model))
        outputs = job.section("outputs")
        model_path = job.resolve(outputs.get("model")) or job.folder / MODEL
        report_path = job.resolve(outputs.get("report")) or job.folder / REPORT
        if ranks.leader:
            model_path.parent.mkdir(parents=True, exist_ok=True)
            model_metadata = {key: metadata[key] for key in (
                "family", "architecture", "classes", "normalization", "inputs")
                if key in metadata}
            save_model(model_path, model_metadata, model.state_dict())
            if result.last_state is not None:
                save_model(job.resolve(outputs.get("last_model")) or job.folder / LAST_MODEL,
                           model_metadata, result.last_state)
            report_path.write_text(json.dumps({
                "best_epoch": result.best_epoch, "history": result.history,
                "last_epoch": result.last_epoch if result.last_state is not None else None,
                "seconds": result.seconds, "resumed_from": result.resumed_from,
                "samples_per_second": result.samples_per_second, "ranks": ranks.size,
                "parameter_digests": digests,
                "backend": ranks.backend, "device": ranks.device.type,
                "torch": torch.__version__}, indent=1), encoding="utf-8")
            same = len(set(digests)) == 1
            reporter.info(f"the weights are {'identical' if same else 'DIFFERENT'} on the "
                          f"{counted(ranks.size, 'rank')}")
            if not same:
                reporter.warning("the ranks ended with different weights: "
                                 + ", ".join(digests))
        ranks.barrier()
        return {"MODEL": str(model_path), "REPORT": str(report_path), "RANKS": ranks.size}
    finally:
        ranks.close()
