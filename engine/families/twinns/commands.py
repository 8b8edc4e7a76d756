"""TWINNS training and classification on a Sentinel-1 and a Sentinel-2 time series."""

from __future__ import annotations

import csv
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ...compute.devices import configure_threads, resolve_device
from ...errors import LcfusionError
from ...inference.classifying import ValueMap
from ...inference.ensemble import Ensemble, network_from_state
from ...inference.priors import with_model_priors
from ...io.indices import DEFAULT_INDICES, IndexConfig, parse_index_config
from ...io.normalization import PercentileNormalizer
from ...io.outputs import atomic_output, check_writable
from ...io.pack import ArraySource, SamplePack
from ...io.sources import FeatureReader, fit_normalizers
from ...jobs import Job, check_settings, settings_from
from ...modelfile.storage import restore_model
from ...progress import Reporter
from ...reference.classes import ClassTable
from ...reference.polygons import ReferenceSpec, load_reference
from ...reference.splits import SplitReference, preset_split
from ...training.loop import FitResult, LoopSettings, RunContext
from ...training.sampling import ChannelPerturbation
from ...wording import counted
from ..blockjobs import classify_command
from ..jobsteps import (
    TrainingPixels,
    check_odd_patch,
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
from ..mapsteps import MapOutputs, classify_to_files, map_outputs, model_input
from ..staged import StagedFit, fit_here_or_on_target, packed_model, restore_rng
from .inputs import (
    SOURCE_NAMES,
    TWINNSClassifyConfig,
    TWINNSInputs,
    check_scales,
    inputs_for_model,
)
from .network import BRANCHES, SOURCES, TWINNS, TWINNSConfig, TWINNSLoss
from .patches import BatchedPatchPredictor, GridPatches

FAMILY = "twinns"


@dataclass(frozen=True)
class TWINNSTrainConfig(LoopSettings):
    """Training settings. Defaults suit a CPU; the presets hold the paper's splits."""

    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    patch_size: int = 5
    alpha: float = 0.3
    samples_per_epoch: int = 2048
    validation_samples: int = 512
    sources: str = "both"
    branches: str = "both"
    auxiliary: bool = True
    add_indices: bool = True
    indices: str = ",".join(DEFAULT_INDICES)
    band_roles: str = ""
    s1_scale: str = "db"
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    early_stopping: int = 0
    sampling: str = "class"
    time_limit: float = 0.0
    jitter: float = 0.0
    date_dropout: float = 0.0
    device: str = "auto"
    threads: int = 0
    tile_size: int = 128
    memory_limit_mb: int = 2048

    def __post_init__(self) -> None:
        super().__post_init__()
        check_settings(self, positive=("epochs", "batch_size", "samples_per_epoch",
                                       "patch_size", "tile_size"),
                       non_negative=("validation_samples", "alpha"),
                       choices={"sources": SOURCES, "branches": BRANCHES})
        ChannelPerturbation(self.jitter, self.date_dropout, 1).check()
        if self.patch_size % 2 == 0:
            raise LcfusionError(f"must be odd so that a patch is centred on its pixel, got "
                                f"{self.patch_size}", "PATCH_SIZE")

    def index_config(self) -> IndexConfig | None:
        """The indices to add to S2, with the band roles (``role=band`` pairs)."""
        return parse_index_config(self.add_indices, self.indices, self.band_roles)


#: The paper's object splits (Reunion 30/20/50, Koumbia 50/30/20) and the optimiser values of
#: the group's related code (Adam 2e-4, batches of 64).
PRESETS = {
    "reunion": {"learning_rate": 2e-4, "batch_size": 64,
                "split": {"train": 0.3, "validation": 0.2, "test": 0.5}},
    "koumbia": {"learning_rate": 2e-4, "batch_size": 64,
                "split": {"train": 0.5, "validation": 0.3, "test": 0.2}},
}


def _perturbations(config: TWINNSTrainConfig, architecture: TWINNSConfig
                   ) -> tuple[ChannelPerturbation, ChannelPerturbation]:
    """The value augmentation of the S1 and the S2 patches (dates of each source dropped
    independently)."""
    return (ChannelPerturbation(config.jitter, config.date_dropout, architecture.s1_channels),
            ChannelPerturbation(config.jitter, config.date_dropout, architecture.s2_channels))


def _batches(patches: GridPatches, rows: np.ndarray, cols: np.ndarray, labels: np.ndarray,
             rng: np.random.Generator | None, batch_size: int,
             perturbations: tuple[ChannelPerturbation, ...] = ()):
    """Batches of the pixels' S1 and S2 patches; with `rng`, augmented (one rotation and
    transpose per batch, and each patch's `perturbations` of the values when active)."""
    for start in range(0, rows.size, batch_size):
        part = slice(start, start + batch_size)
        arrays = patches.read(rows[part], cols[part])
        if rng is not None:
            turns, flip = int(rng.integers(0, 4)), bool(rng.random() < 0.5)
            arrays = [np.rot90(a, turns, axes=(2, 3)) for a in arrays]
            if flip:
                arrays = [a.transpose(0, 1, 3, 2) for a in arrays]
            arrays = [np.ascontiguousarray(a) for a in arrays]
            for array, perturbation in zip(arrays, perturbations, strict=False):
                if perturbation.active:
                    for sample in array:
                        perturbation.apply(sample, rng)
        yield (tuple(torch.from_numpy(a) for a in arrays),
               torch.from_numpy(labels[part].astype(np.int64)))


def pixel_attention(model: TWINNS, patches: GridPatches, rows: np.ndarray, cols: np.ndarray,
                    device: torch.device, batch_size: int = 512
                    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Attention weights over the dates of each source with a ConvGRU branch (pixels, dates),
    and the predicted class index of each pixel."""
    model.eval()
    parts: dict[str, list[np.ndarray]] = {}
    predicted = []
    with torch.inference_mode():
        for start in range(0, rows.size, batch_size):
            arrays = patches.read(rows[start: start + batch_size],
                                  cols[start: start + batch_size])
            output = model(*(torch.from_numpy(a).to(device) for a in arrays))
            predicted.append(output.logits.argmax(dim=1).cpu().numpy())
            for source, weights in output.attention.items():
                parts.setdefault(source, []).append(weights.float().cpu().numpy())
    return ({source: np.concatenate(chunks) for source, chunks in parts.items()},
            np.concatenate(predicted) if predicted else np.zeros(0, dtype=np.int64))


def date_labels(dates: list[str | None]) -> list[str]:
    """Each date of a series as the attention outputs name it: the date, or "date k"."""
    return [d or f"date {i + 1}" for i, d in enumerate(dates)]


def mean_attention(weights: dict[str, np.ndarray], groups: np.ndarray, classes: ClassTable,
                   inputs: TWINNSInputs) -> dict:
    """Mean attention per date for each class of `groups` (class indices), per source."""
    report = {}
    for source, values in weights.items():
        dates = getattr(inputs, source).series.dates
        by_class = {c.name: values[groups == c.index].mean(axis=0, dtype=np.float64)
                    .round(4).tolist() for c in classes if (groups == c.index).any()}
        report[source] = {"dates": date_labels(dates),
                          "by_class": by_class,
                          "pixels": {c.name: int((groups == c.index).sum()) for c in classes
                                     if (groups == c.index).any()}}
    return report


def attention_by_class(model: TWINNS, patches: GridPatches, split: SplitReference,
                       inputs: TWINNSInputs, device: torch.device, rng: np.random.Generator,
                       reporter: Reporter, max_pixels: int = 4000) -> dict:
    """Mean attention per date per reference class over (a sample of) the test pixels,
    logged and returned for the model file."""
    part = 2 if split.mask(2).any() else 0
    index = np.flatnonzero(split.mask(part))
    if index.size > max_pixels:
        index = np.sort(rng.choice(index, max_pixels, replace=False))
    pixels = split.reference.pixels
    weights, _ = pixel_attention(model, patches, pixels.rows[index], pixels.cols[index], device)
    report = mean_attention(weights, split.pixel_class[index], split.reference.classes, inputs)
    for source, entry in report.items():
        entry["pixels_from"] = "test" if part == 2 else "training"
        reporter.info(f"{SOURCE_NAMES[source]} attention per date (mean over the "
                      f"{entry['pixels_from']} pixels of each class; most attended date in "
                      "brackets), dates: " + ", ".join(entry["dates"]))
        for name, row in entry["by_class"].items():
            top = int(np.argmax(row))
            reporter.info(f"  {name}: " + " ".join(
                f"[{value:.2f}]" if i == top else f"{value:.2f}" for i, value in enumerate(row)))
    return report


def _loss(config: TWINNSTrainConfig) -> TWINNSLoss:
    return TWINNSLoss(config.alpha, config.label_smoothing)


def train_twinns(job: Job, reporter: Reporter) -> dict:
    """Train TWINNS on S1 and S2 time series and reference polygons; write the model file."""
    started = time.monotonic()
    settings = job.section("settings")
    config = settings_from(TWINNSTrainConfig, settings, PRESETS)
    split_config = preset_split(job.section("split"), settings, PRESETS)
    model_path = model_output(job)
    held_out = held_out_outputs(job)
    inputs = TWINNSInputs.from_job(job.section("inputs"), None, config.s1_scale).with_indices(
        config.index_config(), reporter)
    inputs.sort_by_date(reporter)
    for line in inputs.describe():
        reporter.info(line)
    check_odd_patch(config.patch_size, inputs.grid)
    threads = configure_threads(config.threads)
    device = resolve_device(config.device)
    torch.manual_seed(split_config.seed)
    rng = np.random.default_rng(split_config.seed)

    with job.workdir() as scratch:
        split = split_reference(job, inputs.grid, split_config, Path(scratch), reporter)
        classes = split.reference.classes
        reporter.progress(0.05, "reference")
        architecture = TWINNSConfig(
            s1_dates=inputs.s1.n_dates, s1_channels=inputs.s1.channels,
            s2_dates=inputs.s2.n_dates, s2_channels=inputs.s2.channels,
            n_classes=len(classes), patch_size=config.patch_size, sources=config.sources,
            branches=config.branches, auxiliary=config.auxiliary)
        model = TWINNS(architecture).to(device)
        reporter.info(f"TWINNS: sources {config.sources}, branches {config.branches}, "
                      f"auxiliary classifiers {'on' if model.auxiliary is not None else 'off'} "
                      f"(alpha {config.alpha:g}), patches {config.patch_size} x "
                      f"{config.patch_size}, {len(classes)} classes, "
                      f"{sum(p.numel() for p in model.parameters()):,} parameters; "
                      f"{device.type}, {counted(threads, 'thread')}")
        with inputs.s1.open() as s1, inputs.s2.open() as s2:
            readers = [s1, s2]
            shared = shared_normalization(job)
            normalizers = ([PercentileNormalizer.from_json(shared[k]) for k in ("s1", "s2")]
                           if shared else fit_normalizers(readers, rng))
            patches = GridPatches(readers, normalizers, config.patch_size,
                                  config.memory_limit_mb * 1024 * 1024)
            reporter.progress(0.08, "normalisation")
            pixels = TrainingPixels.from_split(split, labelled_with_data(
                readers, inputs.s2.series.grid, split, reporter))
            reporter.debug("training patches read from "
                           + ("memory" if patches.in_memory else "the files, by windows"))

            def staged() -> StagedFit:
                boxes = patches.boxes(*pixels.all_rows_cols())
                return StagedFit(
                    FAMILY, [ArraySource(name, reader.series.n_channels, reader.series.height,
                                         reader.series.width, reader.read, boxes)
                             for name, reader in (("s1", s1), ("s2", s2))],
                    {"pixels": pixels.to_table()},
                    {"settings": asdict(config), "seed": split_config.seed,
                     "architecture": architecture.to_json(), "classes": classes.to_json(),
                     "normalization": {"s1": normalizers[0].to_json(),
                                       "s2": normalizers[1].to_json()}}, rng)

            fit_result = fit_here_or_on_target(
                job, model, reporter.span(0.1, 0.88),
                lambda span: fit_on_pixels(
                    model, pixels, partial(_batches, patches, batch_size=config.batch_size,
                                           perturbations=_perturbations(config, architecture)),
                    config, _loss(config), device, rng, span), staged)

            def new_predictor() -> BatchedPatchPredictor:
                return BatchedPatchPredictor(model, normalizers, device, config.patch_size,
                                             config.tile_size)

            fit_result, priors, accuracy = evaluate_trained(
                model, fit_result, new_predictor, readers, inputs.grid, split,
                config.class_priors, reporter.span(0.88, 0.97), held_out)
            attention = (attention_by_class(model, patches, split, inputs, device, rng,
                                            reporter) if model.rnn else None)
    return save_trained_model(
        model_path, model, family=FAMILY, architecture=architecture.to_json(),
        inputs={**inputs.to_json(), "indices": inputs.s2.indices.to_json()
                if inputs.s2.indices else None, "s1_scale": config.s1_scale},
        normalization={"s1": normalizers[0].to_json(), "s2": normalizers[1].to_json()},
        settings=config, split_config=split_config, split=split, fit_result=fit_result,
        device=device, threads=threads, started=started, accuracy=accuracy,
        reporter=reporter, priors=priors, extra={"attention": attention})


def fit_packed(pack: SamplePack, context: RunContext, device: torch.device,
               reporter: Reporter) -> tuple[TWINNS, FitResult]:
    """Train on a sample pack as `train_twinns` trains on the files (the ``fit`` command)."""
    meta, config, model = packed_model(pack, TWINNSTrainConfig, TWINNS, TWINNSConfig,
                                       device)
    normalizers = [PercentileNormalizer.from_json(meta["normalization"][k]) for k in ("s1", "s2")]
    patches = GridPatches([pack.array("s1"), pack.array("s2")], normalizers, config.patch_size, 0)
    result = fit_on_pixels(model, TrainingPixels.from_table(pack.table("pixels")),
                           partial(_batches, patches, batch_size=config.batch_size,
                                   perturbations=_perturbations(config, model.config)), config,
                           _loss(config), device, restore_rng(meta["rng"]), reporter,
                           context=context)
    return model, result


def load_twinns(path: Path, device: torch.device
                ) -> tuple[dict, TWINNS | Ensemble, ClassTable, list[PercentileNormalizer]]:
    """A trained model ready for inference (an `Ensemble` for an ensemble's file), with its
    class table and normalisation."""
    def build(metadata: dict, state: dict):
        config = TWINNSConfig.from_json(metadata["architecture"])
        model = network_from_state(metadata, state, lambda: TWINNS(config))
        normalizers = [PercentileNormalizer.from_json(metadata["normalization"][k])
                       for k in ("s1", "s2")]
        return model.to(device).eval(), ClassTable.from_json(metadata["classes"]), normalizers

    metadata, (model, classes, normalizers) = restore_model(path, FAMILY, build)
    return metadata, model, classes, normalizers


#: The classification output of the attention map, and the band tags naming each band's source
#: and date.
ATTENTION_PARAMETER = "OUTPUT_ATTENTION"
SOURCE_TAG, DATE_TAG = "LCFUSION_SOURCE", "LCFUSION_DATE"


def attention_output(job: Job, maps: MapOutputs) -> Path | None:
    """The attention map to write (``outputs.attention``), if any, checked before any work
    starts."""
    path = job.resolve(job.section("outputs").get("attention"))
    if path is None:
        return None
    check_writable(path, ATTENTION_PARAMETER)
    if path.resolve() in {m.resolve() for m in (maps.class_map, maps.confidence) if m}:
        raise LcfusionError("the attention map must be a file of its own, not the class map "
                            "or the confidence map; choose another file name",
                            ATTENTION_PARAMETER)
    return path


def attention_map(path: Path, model: TWINNS | Ensemble, inputs: TWINNSInputs,
                  tta: bool) -> ValueMap:
    """The attention map's bands: the weight of each date of each source with a ConvGRU
    branch (S1's dates, then S2's), named "S2 attention 2021-06-14"; the file's tags say how
    the weights were combined (ensemble members, test-time augmentation)."""
    if "rnn" not in model.config.used_branches():
        raise LcfusionError("the model has no ConvGRU branch (a CNN-only ablation), so it has "
                            "no attention weights; leave the attention map out",
                            ATTENTION_PARAMETER)
    descriptions, band_tags, spans = [], [], []
    for source in model.config.used_sources():
        labels = date_labels(getattr(inputs, source).series.dates)
        spans.append(f"{source.upper()} bands {len(descriptions) + 1}-"
                     f"{len(descriptions) + len(labels)}")
        for label in labels:
            descriptions.append(f"{source.upper()} attention {label}")
            band_tags.append({SOURCE_TAG: source.upper(), DATE_TAG: label})
    combined = []
    if isinstance(model, Ensemble):
        combined.append(f"the mean of the weights of the ensemble's {len(model.members)} "
                        "members")
    if tta:
        combined.append("the mean over the 8 flips and rotations of each pixel's patches")
    how = f"; {' and '.join(combined)}" if combined else ""
    return ValueMap(path, ATTENTION_PARAMETER, tuple(descriptions), tuple(band_tags), {
        "LCFUSION_ATTENTION": f"TWINNS attention weight of each date ({', '.join(spans)}); "
                              f"the weights of a source sum to 1 at every pixel{how}"})


@classify_command
def classify_twinns(job: Job, reporter: Reporter) -> dict:
    """Classify S1 + S2 time series with a trained TWINNS model, tile by tile (+ the attention
    map, when asked)."""
    config = settings_from(TWINNSClassifyConfig, job.section("settings"))
    maps = map_outputs(job)
    attention_path = attention_output(job, maps)
    model_path = model_input(job)
    threads = configure_threads(config.threads)
    device = resolve_device(config.device)
    metadata, model, classes, normalizers = load_twinns(model_path, device)
    report_ensemble(model, reporter)
    inputs = inputs_for_model(job.section("inputs"), metadata, reporter)
    attention = (attention_map(attention_path, model, inputs, config.tta)
                 if attention_path else None)
    for line in inputs.describe():
        reporter.info(line)
    reporter.info(f"classifying with {model_path.name} ({counted(len(classes), 'class')}) on "
                  f"{device.type}, {counted(threads, 'thread')}")
    predictor = with_model_priors(
        BatchedPatchPredictor(model, normalizers, device, model.config.patch_size,
                              config.tile_size, tta=config.tta), metadata, reporter)
    if config.tta:
        reporter.info("test-time augmentation: the mean of the 8 flips and rotations of each "
                      "pixel's patches")
    with inputs.s1.open() as s1, inputs.s2.open() as s2:
        readers: list[FeatureReader] = [s1, s2]
        check_scales(readers, normalizers, reporter)
        result = classify_to_files(predictor, readers, inputs.grid, classes, maps, model_path,
                                   FAMILY, reporter, attention)
    if attention is not None:
        report_attention_map(result[ATTENTION_PARAMETER + "_BANDS"], attention_path, reporter)
    return result


def report_attention_map(bands: list[dict], path: Path, reporter: Reporter) -> None:
    """Log where the attention map went and each source's most attended date over the map."""
    by_source: dict[str, list[dict]] = {}
    for band in bands:
        by_source.setdefault(band["tags"][SOURCE_TAG], []).append(band)
    tops = []
    for source, entries in by_source.items():
        top = max(entries, key=lambda band: band["mean"])
        tops.append(f"{source} {top['tags'][DATE_TAG]} ({top['mean']:.2f})")
    reporter.info(f"attention map written to {path} ({counted(len(bands), 'band')}); the "
                  f"most attended date on average: {', '.join(tops)}")


@dataclass(frozen=True)
class TWINNSAttentionConfig:
    max_pixels: int = 20000
    device: str = "auto"
    threads: int = 0
    memory_limit_mb: int = 2048


def attention_twinns(job: Job, reporter: Reporter) -> dict:
    """Attention weights per date for the pixels inside polygons, classified by the model:
    a CSV of the mean weight per source, predicted class and date."""
    config = settings_from(TWINNSAttentionConfig, job.section("settings"))
    table = job.resolve(job.section("outputs").get("table"))
    if table is None:
        raise LcfusionError("no output table given", "OUTPUT")
    check_writable(table, "OUTPUT")
    model_path = model_input(job)
    configure_threads(config.threads)
    device = resolve_device(config.device)
    metadata, model, classes, normalizers = load_twinns(model_path, device)
    if isinstance(model, Ensemble):
        raise LcfusionError(f"{model_path.name} is an ensemble of "
                            f"{counted(len(model.members), 'model')}, each with attention "
                            "weights of its own; give a model trained without the ensemble "
                            "option", "MODEL")
    if not model.rnn:
        raise LcfusionError("the model has no ConvGRU branch (a CNN-only ablation), so it has "
                            "no attention weights", "MODEL")
    inputs = inputs_for_model(job.section("inputs"), metadata, reporter)
    rng = np.random.default_rng(0)
    with job.workdir() as scratch:
        reference = load_reference(ReferenceSpec.from_json(job.section("reference")),
                                   inputs.grid, Path(scratch), reporter)
        rows, cols = reference.pixels.rows, reference.pixels.cols
        if rows.size > config.max_pixels:
            chosen = np.sort(rng.choice(rows.size, config.max_pixels, replace=False))
            rows, cols = rows[chosen], cols[chosen]
        reporter.info(f"attention of {rows.size} pixels inside {reference.n_features} polygons")
        with inputs.s1.open() as s1, inputs.s2.open() as s2:
            patches = GridPatches([s1, s2], normalizers, model.config.patch_size,
                                  config.memory_limit_mb * 1024 * 1024)
            weights, predicted = pixel_attention(model, patches, rows, cols, device)
    report = mean_attention(weights, predicted, classes, inputs)
    with atomic_output(table, "OUTPUT") as temporary, open(temporary, "w", newline="",
                                                            encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["source", "predicted_class", "pixels", "date", "mean_attention"])
        for source, entry in report.items():
            for name, row in entry["by_class"].items():
                for date, value in zip(entry["dates"], row, strict=True):
                    writer.writerow([SOURCE_NAMES[source], name, entry["pixels"][name], date,
                                     value])
    reporter.info(f"attention table written to {table}")
    return {"OUTPUT": str(table), "ATTENTION": report}
