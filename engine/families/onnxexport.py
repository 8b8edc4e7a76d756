"""The ``export-onnx`` command: an lcfusion model file to an ONNX model that the classify
commands run with onnxruntime, without torch (and, for FG-UNET, that Deepness opens).

The deep networks go through torch's TorchScript-based exporter (``dynamo=False``): it works
offline with torch alone (the dynamo exporter needs onnxscript), and traces the networks'
fixed loops (TWINNS's dates) into plain ONNX operators. The graph computes class
probabilities; the model file's JSON metadata travels in the ONNX metadata (`modelfile.onnxfile`)
and the export checks the graph against PyTorch on an example before writing the file.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from ..errors import LcfusionError
from ..inference.onnxsession import OnnxModel
from ..inference.priors import ClassPriors, describe
from ..io.outputs import atomic_output, check_writable
from ..jobs import Job, check_settings, settings_from
from ..modelfile.header import read_metadata
from ..modelfile.onnxfile import DIGEST_KEY, METADATA_KEY, metadata_digest, read_props
from ..progress import Reporter
from ..wording import counted

#: ONNX opset of the exports: onnxruntime 1.16 and later run it, Deepness's too.
OPSET = 17
OUTPUT = "probabilities"
#: The families whose export Deepness can open: one image input, probabilities per pixel.
#: (MRFusion's dense network takes two inputs at two resolutions; Deepness feeds one.)
DEEPNESS_FAMILIES = ("fgunet",)
#: Largest difference between the ONNX and PyTorch probabilities the export accepts.
TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportConfig:
    """Settings of an export: `resolution` (metres per pixel) and `overlap` (percent of the
    tile) are what Deepness reads; lcfusion's classifications take their own."""

    resolution: float = 10.0
    tile_size: int = 512
    overlap: int = 15

    def __post_init__(self) -> None:
        check_settings(self, positive=("resolution", "tile_size"), non_negative=("overlap",))
        if self.overlap >= 50:
            raise LcfusionError(f"must be below 50 %, got {self.overlap}", "OVERLAP")


@dataclass
class Exportable:
    """A network ready to trace: probabilities of its named inputs, an example of each."""

    network: nn.Module
    inputs: dict[str, torch.Tensor]
    #: Per input, its axes that vary (index -> name); the batch axis always does.
    dynamic: dict[str, dict[int, str]]
    #: The graph, where it is built rather than traced (the Random Forest).
    graph: onnx.ModelProto | None = None


class Probabilities(nn.Module):
    """Softmax over the classes of a network's scores (an ensemble's are log mean
    probabilities, whose softmax is the mean)."""

    def __init__(self, network: nn.Module, scores: Callable[..., torch.Tensor] | None = None):
        super().__init__()
        self.network, self.scores = network, scores
        # In eval mode as a whole: the exporter restores the top module's mode on every
        # submodule after tracing, which would switch dropout back on.
        self.eval()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        scores = (self.scores or self.network)(*inputs)
        return torch.softmax(scores.float(), dim=1)


def fgunet_exportable(path: Path) -> Exportable:
    from .fgunet.commands import load_fgunet

    _, network, _, _ = load_fgunet(path, torch.device("cpu"))
    channels = network.config.chunk_channels * network.config.n_chunks
    return Exportable(Probabilities(network), {"series": torch.randn(1, channels, 64, 64)},
                      {"series": {2: "height", 3: "width"}})


class DensePanMs(nn.Module):
    """MRFusion's dense network as a graph of four inputs: the tile's PAN (with the patch
    halo), its MS pixels, and per output row / column the start of its MS patch; the output
    sides are the lengths of those two (``dense_logits``'s height and width)."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        self.eval()

    def forward(self, pan: torch.Tensor, ms: torch.Tensor, ms_rows: torch.Tensor,
                ms_cols: torch.Tensor) -> torch.Tensor:
        return self.network.dense_logits(pan, ms, ms_rows, ms_cols, ms_rows.shape[0],
                                         ms_cols.shape[0])


def mrfusion_exportable(path: Path) -> Exportable:
    from .mrfusion.commands import load_mrfusion

    _, network, _, _ = load_mrfusion(path, torch.device("cpu"))
    config = network.config
    side, ms_side = 24, 24 // config.ratio + config.ms_patch_size
    rows = torch.arange(24) // config.ratio
    return Exportable(
        Probabilities(DensePanMs(network)),
        {"pan": torch.randn(1, 1, side + config.patch_size - 1, side + config.patch_size - 1),
         "ms": torch.randn(1, config.ms_channels, ms_side, ms_side),
         "ms_rows": rows, "ms_cols": rows.clone()},
        {"pan": {2: "pan_rows", 3: "pan_cols"}, "ms": {2: "ms_height", 3: "ms_width"},
         "ms_rows": {0: "height"}, "ms_cols": {0: "width"}})


def twinns_exportable(path: Path) -> Exportable:
    """TWINNS on batches of patch pairs (S1, S2): the fusion classifier's probabilities (the
    auxiliary classifiers only train); the ConvGRU's loop over the model's dates is traced
    into one unrolled graph."""
    from ..training.loop import logits_of
    from .twinns.commands import load_twinns

    _, network, _, _ = load_twinns(path, torch.device("cpu"))
    config, size = network.config, network.config.patch_size
    return Exportable(
        Probabilities(network, lambda s1, s2: logits_of(network(s1, s2))),
        {"s1": torch.randn(16, config.s1_dates * config.s1_channels, size, size),
         "s2": torch.randn(16, config.s2_dates * config.s2_channels, size, size)}, {})


def below_or_equal_float32(thresholds: np.ndarray) -> np.ndarray:
    """The largest float32 at or below each float64 threshold: for a float32 feature value
    x, ``x <= t`` exactly when ``x <= that float32`` (scikit-learn compares float32 values
    with float64 thresholds; ONNX's tree thresholds are float32)."""
    rounded = thresholds.astype(np.float32)
    above = rounded.astype(np.float64) > thresholds
    rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
    return rounded


def forest_graph(path: Path) -> onnx.ModelProto:
    """A Random Forest's arrays as an ai.onnx.ml TreeEnsembleClassifier, built node by node:
    missing values (NaN) replaced by the forest's fill values, then the sum of the leaves'
    class distributions over the trees, divided by their number (the forest's mean; the sum
    of whole distributions first, so that tied classes stay exactly tied)."""
    from onnx import TensorProto, helper, numpy_helper

    from .randomforest.commands import load_randomforest

    _, forest, _ = load_randomforest(path)
    sizes = np.diff(forest.tree_offsets)
    tree_ids = np.repeat(np.arange(forest.n_trees), sizes)
    local = np.arange(forest.children_left.size) - np.repeat(forest.tree_offsets[:-1], sizes)
    leaf = forest.is_leaf
    leaf_nodes = np.flatnonzero(leaf)
    weights = forest.leaf_value
    keep = weights > 0 if forest.n_classes > 2 else np.ones(weights.shape, dtype=bool)
    leaf_index, class_ids = np.nonzero(keep)
    ensemble = helper.make_node(
        "TreeEnsembleClassifier", ["filled"], ["label", "sums"], domain="ai.onnx.ml",
        nodes_treeids=tree_ids.tolist(), nodes_nodeids=local.tolist(),
        nodes_featureids=np.where(leaf, 0, forest.feature).tolist(),
        nodes_values=np.where(leaf, 0, below_or_equal_float32(forest.threshold)).tolist(),
        nodes_modes=np.where(leaf, "LEAF", "BRANCH_LEQ").tolist(),
        nodes_truenodeids=np.where(leaf, 0, forest.children_left).tolist(),
        nodes_falsenodeids=np.where(leaf, 0, forest.children_right).tolist(),
        class_treeids=tree_ids[leaf_nodes[leaf_index]].tolist(),
        class_nodeids=local[leaf_nodes[leaf_index]].tolist(),
        class_ids=class_ids.tolist(), class_weights=weights[keep].tolist(),
        classlabels_int64s=list(range(forest.n_classes)), post_transform="NONE")
    fill = numpy_helper.from_array(forest.fill_values.astype(np.float32)[np.newaxis], "fill")
    count = numpy_helper.from_array(np.array(forest.n_trees, dtype=np.float32), "trees")
    graph = helper.make_graph(
        [helper.make_node("IsNaN", ["features"], ["missing"]),
         helper.make_node("Where", ["missing", "fill", "features"], ["filled"]),
         ensemble, helper.make_node("Div", ["sums", "trees"], [OUTPUT])],
        "randomforest",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT,
                                       ["batch", forest.n_features])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT,
                                       ["batch", forest.n_classes])],
        initializer=[fill, count])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


class ForestProbabilities(nn.Module):
    """The forest's own prediction, as the reference the export is checked against."""

    def __init__(self, path: Path):
        super().__init__()
        from .randomforest.commands import load_randomforest

        _, self.forest, _ = load_randomforest(path)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.forest.fill_missing(features.numpy().copy())
        return torch.from_numpy(self.forest.predict_proba(x).astype(np.float32))


def randomforest_exportable(path: Path) -> Exportable:
    reference = ForestProbabilities(path)
    forest = reference.forest
    rng = np.random.default_rng(0)
    low, high = forest.fill_values.min(), forest.fill_values.max()
    example = rng.uniform(low - 1, high + 1, (256, forest.n_features)).astype(np.float32)
    example[::7, 0] = np.nan
    return Exportable(reference, {"features": torch.from_numpy(example)}, {},
                      graph=forest_graph(path))


EXPORTERS: dict[str, Callable[[Path], Exportable]] = {
    "fgunet": fgunet_exportable,
    "mrfusion": mrfusion_exportable,
    "twinns": twinns_exportable,
    "randomforest": randomforest_exportable,
}


def deepness_props(metadata: dict, config: ExportConfig) -> dict[str, str]:
    """The metadata keys Deepness reads (its documentation, "Adding metadata to ONNX model";
    its ModelBase reads `tile_size` where the table says `tiles_size`: both are written)."""
    names = {str(index): entry["name"] for index, entry in enumerate(metadata["classes"])}
    values = {"model_type": "Segmentor", "class_names": names,
              "resolution": round(config.resolution * 100, 3),
              "tile_size": config.tile_size, "tiles_size": config.tile_size,
              "tiles_overlap": config.overlap, "seg_thresh": 0.0}
    return {key: json.dumps(value) for key, value in values.items()}


def traced(exportable: Exportable) -> onnx.ModelProto:
    """The network traced to an ONNX graph."""
    names = list(exportable.inputs)
    axes = {name: ({0: "batch"} if exportable.inputs[name].dim() > 1 else {})
            | exportable.dynamic.get(name, {}) for name in names}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation, tracer notes
        torch.onnx.export(exportable.network, tuple(exportable.inputs.values()), buffer,
                          dynamo=False, input_names=names, output_names=[OUTPUT],
                          dynamic_axes={**axes, OUTPUT: {0: "batch"}}, opset_version=OPSET,
                          do_constant_folding=True)
    return onnx.load_from_string(buffer.getvalue())


def with_metadata(model: onnx.ModelProto, metadata: dict, extra: dict[str, str]) -> bytes:
    """The serialized model with lcfusion's metadata (and its checksum) and `extra` keys."""
    del model.metadata_props[:]
    text = json.dumps(metadata, ensure_ascii=False, sort_keys=True)
    for key, value in {METADATA_KEY: text, **extra}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    draft = model.SerializeToString()
    digest = metadata_digest(text, read_props(io.BytesIO(draft)).graph_sha256 or "")
    entry = model.metadata_props.add()
    entry.key, entry.value = DIGEST_KEY, digest
    return model.SerializeToString()


def largest_difference(exportable: Exportable, path: Path, family: str) -> float:
    """The largest difference between the exported file's probabilities (onnxruntime, CPU) and
    PyTorch's on the example inputs."""
    with torch.no_grad():
        expected = exportable.network.eval()(*exportable.inputs.values()).numpy()
    got = OnnxModel(path, family, "cpu", 0, "OUTPUT")(
        *[tensor.numpy() for tensor in exportable.inputs.values()])
    return float(np.abs(got - expected).max())


def export_onnx(job: Job, reporter: Reporter) -> dict:
    """Export the job's model file to the ONNX file ``outputs.onnx``."""
    config = settings_from(ExportConfig, job.section("settings"))
    source = job.resolve(job.section("inputs").get("model"))
    target = job.resolve(job.section("outputs").get("onnx"))
    if source is None:
        raise LcfusionError("no model file given", "MODEL")
    if target is None or target.suffix.lower() != ".onnx":
        raise LcfusionError("give an output file ending in .onnx", "OUTPUT")
    check_writable(target, "OUTPUT")
    metadata = read_metadata(source, "MODEL")
    family = metadata["family"]
    if family not in EXPORTERS:
        raise LcfusionError(f"{source.name} is a {family} model, which lcfusion cannot export "
                            "to ONNX yet", "MODEL")
    torch.manual_seed(0)
    exportable = EXPORTERS[family](source)
    reporter.progress(0.2, "tracing")
    graph = exportable.graph or traced(exportable)
    meta = {**metadata, "onnx": {"inputs": list(exportable.inputs), "output": OUTPUT}}
    extra = deepness_props(metadata, config) if family in DEEPNESS_FAMILIES else {}
    priors = ClassPriors.from_json(metadata.get("class_priors"), len(metadata["classes"]))
    if extra and priors.shifts:
        reporter.warning(f"the model file records {describe(priors, metadata)}; lcfusion's "
                         "Classify algorithms apply them to the ONNX file too, Deepness does "
                         "not: its maps rank the classes as the balanced training sample did")
    data = with_metadata(graph, meta, extra)
    reporter.progress(0.7, "checking")
    with atomic_output(target, "OUTPUT") as temporary:
        temporary.write_bytes(data)
        difference = largest_difference(exportable, temporary, family)
        if difference > TOLERANCE:
            raise LcfusionError(
                f"the exported graph's probabilities differ from PyTorch's by {difference:.2g} "
                f"(more than {TOLERANCE}); report this model to the lcfusion developers",
                "MODEL")
    # The progress ends before the result line, which qgis_process would print among its
    # progress dots otherwise.
    reporter.progress(1.0, "done")
    reporter.info(f"{source.name} exported to {target} ({len(data) / 1e6:.1f} MB, "
                  f"{counted(len(exportable.inputs), 'input')}; ONNX and PyTorch "
                  f"probabilities differ by at most {difference:.1g})")
    return {"OUTPUT": str(target), "FAMILY": family, "MAX_DIFFERENCE": difference}
