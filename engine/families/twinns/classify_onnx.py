"""TWINNS classification with an ONNX model: onnxruntime, numpy and rasterio, no torch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from rasterio.windows import Window

from ...errors import LcfusionError
from ...inference.onnxsession import OnnxModel
from ...inference.priors import with_model_priors
from ...inference.tiles import DIHEDRAL, TilePredictor, any_finite
from ...io.normalization import PercentileNormalizer
from ...io.sources import FeatureReader
from ...jobs import Job, settings_from
from ...progress import Reporter
from ...reference.classes import ClassTable
from ...wording import counted
from ..mapsteps import classify_to_files, map_outputs, model_input
from .inputs import TWINNSClassifyConfig, check_scales, inputs_for_model, patch_batch

FAMILY = "twinns"


class OnnxPatchPredictor(TilePredictor):
    """Class probabilities of every pixel of a tile from its p x p patches of each source, in
    batches of rows through the exported network; each tile is read once with a halo of
    p // 2. With `tta`, the mean over the 8 symmetries of the tiles."""

    size_multiple = 1

    def __init__(self, model: OnnxModel, normalizers: Sequence[PercentileNormalizer],
                 patch_size: int, tile_size: int = 128, batch_size: int | None = None,
                 tta: bool = False):
        if tile_size < 1:
            raise LcfusionError(f"the tile size must be above 0, got {tile_size}", "TILE_SIZE")
        self.model, self.normalizers = model, list(normalizers)
        self.size, self.half = patch_size, patch_size // 2
        self.halo = self.half
        self.tile_size, self.tta = tile_size, tta
        self.batch_size = batch_size or patch_batch(model.on_gpu)

    def load(self, readers: Sequence[FeatureReader], core: Window
             ) -> tuple[list[np.ndarray], np.ndarray]:
        h, w = int(core.height), int(core.width)
        window = self.window(core)
        tiles, valid = [], np.zeros((h, w), dtype=bool)
        for reader, normalizer in zip(readers, self.normalizers, strict=True):
            data = reader.read(window)
            valid |= any_finite(data[:, self.half: self.half + h, self.half: self.half + w])
            tiles.append(normalizer.apply(data))
        return tiles, valid

    def probabilities(self, tiles: list[np.ndarray]) -> np.ndarray:
        """Probabilities (classes, h, w) of the pixels of tiles read with a halo of p // 2."""
        h, w = (side - 2 * self.half for side in tiles[0].shape[-2:])
        rows_per_batch = max(1, self.batch_size // w)
        parts = []
        for top in range(0, h, rows_per_batch):
            rows = min(rows_per_batch, h - top)
            patches = [sliding_window_view(tile[:, top: top + rows + 2 * self.half],
                                           (self.size, self.size), axis=(1, 2))
                       .transpose(1, 2, 0, 3, 4).reshape(rows * w, -1, self.size, self.size)
                       for tile in tiles]
            parts.append(self.model(*patches))
        return np.concatenate(parts).T.reshape(-1, h, w)

    def infer(self, tile: tuple[list[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        tiles, valid = tile
        if not self.tta:
            return self.probabilities(tiles).astype(np.float32), valid
        total = None
        for turns, transpose in DIHEDRAL:
            turned = [np.rot90(t, turns, axes=(-2, -1)) for t in tiles]
            turned = [t.swapaxes(-2, -1) if transpose else t for t in turned]
            probs = self.probabilities(turned)
            probs = np.rot90(probs.swapaxes(-2, -1) if transpose else probs, -turns,
                             axes=(-2, -1))
            total = probs if total is None else total + probs
        return (total / len(DIHEDRAL)).astype(np.float32), valid


def classify_twinns_onnx(job: Job, reporter: Reporter) -> dict:
    """Classify S1 + S2 time series with a TWINNS model exported to ONNX, tile by tile."""
    config = settings_from(TWINNSClassifyConfig, job.section("settings"))
    maps = map_outputs(job)
    model_path = model_input(job)
    model = OnnxModel(model_path, FAMILY, config.device, config.threads)
    metadata = model.metadata
    classes = ClassTable.from_json(metadata["classes"])
    inputs = inputs_for_model(job.section("inputs"), metadata, reporter)
    for line in inputs.describe():
        reporter.info(line)
    reporter.info(f"classifying with {model_path.name} ({counted(len(classes), 'class')}) "
                  f"with {model.runs_on}, {counted(model.threads, 'thread')}")
    if model.fallback:
        reporter.warning(model.fallback)
    normalizers = [PercentileNormalizer.from_json(metadata["normalization"][k])
                   for k in ("s1", "s2")]
    predictor = with_model_priors(
        OnnxPatchPredictor(model, normalizers, int(metadata["architecture"].get("patch_size", 5)),
                           config.tile_size, tta=config.tta), metadata, reporter)
    with inputs.s1.open() as s1, inputs.s2.open() as s2:
        check_scales([s1, s2], normalizers, reporter)
        return classify_to_files(predictor, [s1, s2], inputs.grid, classes, maps, model_path,
                                 FAMILY, reporter)
