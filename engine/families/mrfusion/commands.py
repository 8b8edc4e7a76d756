"""MRFusion training and classification on a PAN + MS pair (no pansharpening)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...compute.devices import configure_threads, resolve_device
from ...errors import LcfusionError
from ...inference.ensemble import Ensemble, network_from_state
from ...inference.priors import with_model_priors
from ...io.alignment import ALIGN_METHODS, PanMsAlignment
from ...io.pack import ArraySource, SamplePack
from ...io.panms import PanMsNormalizer, classification_alignment
from ...jobs import Job, check_settings, settings_from
from ...modelfile.storage import restore_model
from ...progress import Reporter
from ...reference.classes import ClassTable
from ...reference.splits import preset_split
from ...training.loop import FitResult, LoopSettings, RunContext
from ...wording import counted
from ..blockjobs import classify_command
from ..jobsteps import (
    TrainingPixels,
    evaluate_trained,
    fit_on_pixels,
    held_out_outputs,
    labelled_with_data,
    model_output,
    report_ensemble,
    save_trained_model,
    shared_normalization,
    split_reference,
)
from ..mapsteps import classify_to_files, map_outputs, model_input
from ..staged import StagedFit, fit_here_or_on_target, packed_model, restore_rng
from .classify_onnx import MRFusionClassifyConfig, log_pair, read_pair
from .network import (
    BRANCHES,
    MRFusion,
    MRFusionConfig,
    default_patch_size,
    smallest_patch,
)
from .patches import DensePanMsPredictor, PatchPairs, augment_pairs

FAMILY = "mrfusion"


@dataclass(frozen=True)
class MRFusionTrainConfig(LoopSettings):
    """Training settings. Defaults suit a CPU; the ``paper`` preset has the paper's values."""

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 5e-4
    #: 0: `default_patch_size` of the pair's ratio (the file records the side used).
    patch_size: int = 0
    samples_per_epoch: int = 2048
    validation_samples: int = 512
    augment: bool = True
    branches: str = "both"
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    early_stopping: int = 0
    sampling: str = "class"
    time_limit: float = 0.0
    device: str = "auto"
    threads: int = 0
    tile_size: int = 256
    memory_limit_mb: int = 2048
    align_ms: str = "none"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_settings(self, positive=("epochs", "batch_size", "samples_per_epoch",
                                       "tile_size"),
                       non_negative=("validation_samples", "patch_size"),
                       choices={"branches": BRANCHES,
                                "align_ms": ALIGN_METHODS})


#: The paper's values (Gaetano et al. 2018): 250 epochs, batch 64, Adam 2e-4, 30 % of each
#: class's polygons for training and 70 % for testing.
PRESETS = {
    "paper": {"epochs": 250, "batch_size": 64, "learning_rate": 2e-4, "patch_size": 32,
              "augment": True,
              "split": {"train": 0.3, "validation": 0.0, "test": 0.7}},
}


def check_patch_size(patch_size: int, ratio: int, branches: str) -> None:
    """The PAN patch must hold a whole number of MS pixels and be large enough for the
    branches' convolutions and poolings."""
    if patch_size % ratio:
        lower = patch_size // ratio * ratio
        raise LcfusionError(
            f"{patch_size} is not divisible by the PAN/MS ratio {ratio}, so the MS patch would "
            f"not cover the PAN patch's ground; use {max(lower, ratio)} or {lower + ratio}",
            "PATCH_SIZE")
    smallest = smallest_patch(ratio, branches)
    if patch_size < smallest:
        raise LcfusionError(
            f"{patch_size} pixels is too small for the network at ratio {ratio} (three 3x3 "
            f"convolutions per branch); use at least {smallest}", "PATCH_SIZE")


def _batches(pairs: PatchPairs, rows: np.ndarray, cols: np.ndarray, labels: np.ndarray,
             rng: np.random.Generator | None, batch_size: int):
    for start in range(0, rows.size, batch_size):
        part = slice(start, start + batch_size)
        pan, ms = pairs.read(rows[part], cols[part])
        if rng is not None:
            pan, ms = augment_pairs(pan, ms, rng)
        yield ((torch.from_numpy(pan), torch.from_numpy(ms)),
               torch.from_numpy(labels[part].astype(np.int64)))


def _loss(config: MRFusionTrainConfig) -> nn.Module:
    return nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)


def train_mrfusion(job: Job, reporter: Reporter) -> dict:
    """Train MRFusion on a PAN + MS pair and reference polygons; write the model file."""
    started = time.monotonic()
    settings = job.section("settings")
    config = settings_from(MRFusionTrainConfig, settings, PRESETS)
    split_config = preset_split(job.section("split"), settings, PRESETS)
    model_path = model_output(job)
    held_out = held_out_outputs(job)
    pair = read_pair(job.section("inputs"), config.align_ms)
    log_pair(pair, reporter)
    if not config.patch_size:
        config = replace(config, patch_size=default_patch_size(pair.ratio))
        reporter.info(f"patch size: {config.patch_size} PAN pixels, the default at ratio "
                      f"{pair.ratio} (PATCH_SIZE chooses another)")
    check_patch_size(config.patch_size, pair.ratio, config.branches)
    if config.patch_size > min(pair.pan.width, pair.pan.height):
        raise LcfusionError(
            f"{config.patch_size} pixels is larger than the PAN raster ({pair.pan.width} x "
            f"{pair.pan.height}); use a smaller patch", "PATCH_SIZE")
    threads = configure_threads(config.threads)
    device = resolve_device(config.device)
    torch.manual_seed(split_config.seed)
    rng = np.random.default_rng(split_config.seed)

    with job.workdir() as scratch:
        split = split_reference(job, pair.grid, split_config, Path(scratch), reporter)
        classes = split.reference.classes
        reporter.progress(0.05, "reference")
        architecture = MRFusionConfig(ms_channels=pair.ms_bands, ratio=pair.ratio,
                                      patch_size=config.patch_size, n_classes=len(classes),
                                      branches=config.branches)
        model = MRFusion(architecture).to(device)
        branches = {"both": "PAN and MS branches", "pan": "PAN branch only (ablation)",
                    "ms": "MS branch only (ablation)"}[config.branches]
        reporter.info(f"MRFusion: {branches}, PAN patch {config.patch_size} x "
                      f"{config.patch_size}, MS patch {architecture.ms_patch_size} x "
                      f"{architecture.ms_patch_size} x {counted(pair.ms_bands, 'band')}, "
                      f"{counted(len(classes), 'class')}, "
                      f"{sum(p.numel() for p in model.parameters()):,} parameters; "
                      f"{device.type}, {counted(threads, 'thread')}")
        with pair.open() as reader:
            shared = shared_normalization(job)
            normalizer = (PanMsNormalizer.from_json(shared) if shared
                          else PanMsNormalizer.fit(reader, rng))
            pixels = TrainingPixels.from_split(split, labelled_with_data(
                [reader.pan], pair.grid, split, reporter, "PAN nodata"))
            reporter.progress(0.08, "normalisation")

            def train_here(span: Reporter) -> FitResult:
                pairs = PatchPairs.of(reader, normalizer, config.patch_size,
                                      config.memory_limit_mb * 1024 * 1024)
                span.debug("training patches read from "
                           + ("memory" if pairs.in_memory else "the files, by windows"))
                return fit_on_pixels(
                    model, pixels, partial(_batches, pairs, batch_size=config.batch_size),
                    config, _loss(config), device, rng, span, config.augment)

            def staged() -> StagedFit:
                pairs = PatchPairs.of(reader, normalizer, config.patch_size, 0)
                rows, cols = pixels.all_rows_cols()
                return StagedFit(
                    FAMILY, [ArraySource("pan", 1, pair.pan.height, pair.pan.width,
                                         reader.pan.read, pairs.pan_boxes(rows, cols)),
                             ArraySource("ms", pair.ms_bands, pair.ms.height, pair.ms.width,
                                         reader.ms.read, pairs.ms_boxes(rows, cols))],
                    {"pixels": pixels.to_table()},
                    {"settings": asdict(config), "seed": split_config.seed,
                     "architecture": architecture.to_json(), "classes": classes.to_json(),
                     "normalization": normalizer.to_json(), "inputs": pair.to_json(),
                     "alignment": pair.alignment.to_json()}, rng)

            fit_result = fit_here_or_on_target(job, model, reporter.span(0.1, 0.9),
                                               train_here, staged)

            def new_predictor() -> DensePanMsPredictor:
                return DensePanMsPredictor(model, normalizer, device, config.tile_size)

            fit_result, priors, accuracy = evaluate_trained(
                model, fit_result, new_predictor, reader, pair.grid, split,
                config.class_priors, reporter.span(0.9, 0.99), held_out)

    return save_trained_model(
        model_path, model, family=FAMILY, architecture=architecture.to_json(),
        inputs=pair.to_json(),
        normalization=normalizer.to_json(), settings=config, split_config=split_config,
        split=split, fit_result=fit_result, device=device, threads=threads, started=started,
        accuracy=accuracy, reporter=reporter, priors=priors)


def fit_packed(pack: SamplePack, context: RunContext, device: torch.device,
               reporter: Reporter) -> tuple[MRFusion, FitResult]:
    """Train on a sample pack as `train_mrfusion` trains on the files (the ``fit`` command)."""
    meta, config, model = packed_model(pack, MRFusionTrainConfig, MRFusion, MRFusionConfig,
                                       device)
    pairs = PatchPairs(pack.array("pan"), pack.array("ms"),
                       PanMsAlignment.from_json(meta["alignment"]),
                       PanMsNormalizer.from_json(meta["normalization"]), config.patch_size, 0)
    result = fit_on_pixels(model, TrainingPixels.from_table(pack.table("pixels")),
                           partial(_batches, pairs, batch_size=config.batch_size), config,
                           _loss(config), device, restore_rng(meta["rng"]), reporter,
                           config.augment, context)
    return model, result


def load_mrfusion(path: Path, device: torch.device
                ) -> tuple[dict, MRFusion | Ensemble, ClassTable, PanMsNormalizer]:
    """A trained model ready for inference (an `Ensemble` for an ensemble's file), with its
    class table and normalisation."""
    def build(metadata: dict, state: dict
              ) -> tuple[MRFusion | Ensemble, ClassTable, PanMsNormalizer]:
        config = MRFusionConfig.from_json(metadata["architecture"])
        model = network_from_state(metadata, state, lambda: MRFusion(config))
        return (model.to(device).eval(), ClassTable.from_json(metadata["classes"]),
                PanMsNormalizer.from_json(metadata["normalization"]))

    metadata, (model, classes, normalizer) = restore_model(path, FAMILY, build)
    return metadata, model, classes, normalizer


@classify_command
def classify_mrfusion(job: Job, reporter: Reporter) -> dict:
    """Classify every PAN pixel of a PAN + MS pair with a trained MRFusion model."""
    config = settings_from(MRFusionClassifyConfig, job.section("settings"))
    maps = map_outputs(job)
    model_path = model_input(job)
    threads = configure_threads(config.threads)
    device = resolve_device(config.device)
    metadata, model, classes, normalizer = load_mrfusion(model_path, device)
    report_ensemble(model, reporter)
    pair = read_pair(job.section("inputs"),
                     classification_alignment(config.align_ms, metadata["inputs"], reporter))
    log_pair(pair, reporter)
    pair.check_model(metadata["inputs"], model.config.ratio, reporter)
    reporter.info(f"classifying with {model_path.name} ({counted(len(classes), 'class')}, "
                  f"branches {model.config.branches}) on {device.type}, "
                  f"{counted(threads, 'thread')}")
    predictor = with_model_priors(
        DensePanMsPredictor(model, normalizer, device, config.tile_size, config.tta), metadata,
        reporter)
    if config.tta:
        reporter.info("test-time augmentation: the mean of the 8 flips and rotations of each "
                      "patch pair")
    with pair.open() as reader:
        normalizer.check_scale(reader, reporter)
        return classify_to_files(predictor, reader, pair.grid, classes, maps, model_path,
                                 FAMILY, reporter)
