"""Figure 10: classification with onnxruntime against PyTorch on the CPU, per family: each
model exported to ONNX (``export-onnx``), then the same scene classified by the engine CLI
with the .lcfusion file and with the .onnx file (one run each, side by side), and the ratio of
their classification seconds (above 1: onnxruntime is faster)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.engine_runs import classify_job, run_engine
from benchmarks.scenes import SceneFiles
from lcfusion.engine.jobs import write_job


def onnx_figures(models: dict[str, Path], scenes: dict[str, SceneFiles], work: Path) -> dict:
    """Per family of `scenes`: the export's seconds and size, PyTorch's and onnxruntime's
    classification seconds and megapixels per second on its scene, and their ratio."""
    figures = {}
    for family, family_scene in scenes.items():
        model = models[family]
        folder = work / family
        target = folder / "model.onnx"
        export = run_engine("export-onnx", write_job(
            folder / "export", "export-onnx", inputs={"model": str(model)},
            outputs={"onnx": str(target)}))
        settings = {} if family == "randomforest" else {"device": "cpu"}
        seconds = {}
        for label, path in (("torch", model), ("onnx", target)):
            run = run_engine(f"classify-{family}", classify_job(
                folder / label, family, path, family_scene, settings))
            seconds[label] = float(run.outputs["SECONDS"])
        pixels = family_scene.pixels(family)
        figures[family] = {
            "pixels": pixels, "export_seconds": export.seconds,
            "onnx_mb": target.stat().st_size / 1e6,
            "max_difference": float(export.outputs["MAX_DIFFERENCE"]),
            "torch_seconds": seconds["torch"], "onnx_seconds": seconds["onnx"],
            "torch_mpx_per_s": pixels / seconds["torch"] / 1e6,
            "onnx_mpx_per_s": pixels / seconds["onnx"] / 1e6,
            "ratio": seconds["torch"] / seconds["onnx"]}
    return figures
