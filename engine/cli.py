"""``python -m lcfusion.engine [--events json|text] <command> <job.json>``.

Exit status: 0 done, 2 a user error (message names the parameter), 3 cancelled, 1 a crash.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from . import __version__
from .errors import CancelledError, LcfusionError
from .progress import ConsoleReporter, JsonLinesReporter, Reporter

#: Job commands: name -> (module, function). Modules load lazily (torch is imported there).
JOB_COMMANDS = {
    "train-fgunet": ("families.fgunet.commands", "train_fgunet"),
    "classify-fgunet": ("families.fgunet.commands", "classify_fgunet"),
    "train-mrfusion": ("families.mrfusion.commands", "train_mrfusion"),
    "classify-mrfusion": ("families.mrfusion.commands", "classify_mrfusion"),
    "train-twinns": ("families.twinns.commands", "train_twinns"),
    "classify-twinns": ("families.twinns.commands", "classify_twinns"),
    "attention-twinns": ("families.twinns.commands", "attention_twinns"),
    "train-randomforest": ("families.randomforest.commands", "train_randomforest"),
    "classify-randomforest": ("families.randomforest.commands", "classify_randomforest"),
    "evaluate": ("reports.evaluation", "evaluate"),
    "sample-design": ("reports.area_estimation", "sample_design"),
    "area-accuracy": ("reports.area_estimation", "area_accuracy"),
    "compare-maps": ("reports.comparison", "compare_maps"),
    "fit": ("families.staged", "fit_packed_job"),
    "export-onnx": ("families.onnxexport", "export_onnx"),
}
#: The classify commands given an ``.onnx`` model: modules that import onnxruntime, not torch.
ONNX_COMMANDS = {
    "classify-fgunet": ("families.fgunet.classify_onnx", "classify_fgunet_onnx"),
    "classify-mrfusion": ("families.mrfusion.classify_onnx", "classify_mrfusion_onnx"),
    "classify-twinns": ("families.twinns.classify_onnx", "classify_twinns_onnx"),
    "classify-randomforest": ("families.randomforest.classify_onnx",
                              "classify_randomforest_onnx"),
}

EXIT_OK, EXIT_CRASH, EXIT_USER_ERROR, EXIT_CANCELLED = 0, 1, 2, 3
TORCH_VERSION = "2.13.0"


def _cancel(signum, frame) -> None:
    raise CancelledError()


def watch_parent(interval: float = 1.0) -> None:
    """Cancel this run (SIGTERM to itself) when the process that started it goes away.

    The plugin starts the engine in a session of its own so that cancel can stop the whole
    group; a killed QGIS or qgis_process would otherwise leave the engine running.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def job_command(name: str, onnx: bool = False) -> Callable:
    """The function of a job command (its module is imported now: torch loads there); with
    `onnx`, the classify command's ONNX version (onnxruntime, no torch)."""
    if onnx and name not in ONNX_COMMANDS:
        raise LcfusionError(f"{name} cannot use an .onnx model; give its .lcfusion model file",
                            "MODEL")
    module_name, function = (ONNX_COMMANDS if onnx else JOB_COMMANDS)[name]
    try:
        module = importlib.import_module(f"{__package__}.{module_name}")
    except ModuleNotFoundError as exc:
        if exc.name in ("torch", "safetensors", "sklearn", "rasterio", "osgeo"):
            raise LcfusionError(
                f"the engine interpreter {sys.executable} cannot import {exc.name}; "
                f"{creation_hint()}, or install torch=={TORCH_VERSION}, safetensors, "
                "scikit-learn, rasterio and GDAL's Python bindings into an interpreter and "
                "point the plugin's engine Python setting (or LCFUSION_PYTHON) at it") from exc
        raise
    return getattr(module, function)


def creation_hint() -> str:
    """How to create the engine environment: the plugin's action, and ``make setup`` only
    where the plugin folder is a source checkout (an installed ZIP has no Makefile)."""
    root = Path(__file__).parent.parent
    make = f" or run 'make setup' in {root}" if (root / "Makefile").is_file() else ""
    return ("create the engine environment with Plugins > Land Cover Fusion > Create Engine "
            f"Environment… in QGIS{make}")


def _environment() -> dict:
    info = {"lcfusion": __version__, "python": sys.version.split()[0],
            "executable": sys.executable}
    try:
        import torch
    except ImportError:
        info["torch"] = None
        return info
    info["torch"] = torch.__version__
    info["cuda"] = torch.cuda.is_available()
    info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def _model_info(path: str) -> dict:
    from .modelfile.header import read_metadata

    meta = read_metadata(path)
    metrics = meta.get("metrics") or {}
    return {"family": meta.get("family"), "created": meta.get("created"),
            "inputs": meta.get("inputs"),
            "classes": [f"{c['code']} {c['name']}" for c in meta.get("classes", [])],
            "overall_accuracy": metrics.get("overall_accuracy"),
            "kappa": metrics.get("kappa"), "mean_f1": metrics.get("mean_f1")}


def _model_report(model: str, report: str, reporter: Reporter) -> dict:
    from .modelfile.header import read_metadata
    from .reports.html import write_training_report

    path = write_training_report(Path(report), read_metadata(model))
    reporter.info(f"training report written to {path}")
    return {"OUTPUT_HTML": str(path)}


def _probe_compute(args: argparse.Namespace) -> dict:
    from .compute.launcher import probe
    from .compute.profiles import PROFILES_ENV, find_profile

    return probe(find_profile(args.profile, args.profiles or os.environ.get(PROFILES_ENV)))


def _sample_scene(args: argparse.Namespace, reporter: Reporter) -> dict:
    from .sample_scene import SampleSceneConfig, generate_sample_scene

    try:
        config = SampleSceneConfig(width=args.size, height=args.size, seed=args.seed,
                                   context=args.context)
        scene = generate_sample_scene(Path(args.folder), config)
    except ValueError as exc:
        raise LcfusionError(str(exc), "SIZE") from exc
    reporter.info(f"sample scene written to {scene.folder}")
    return {"FOLDER": str(scene.folder), "S2": [str(p) for p in scene.s2_paths],
            "S1": [str(p) for p in scene.s1_paths],
            "CLOUD_MASK": str(scene.s2_cloud_mask_path),
            "PAN": str(scene.pan_path), "MS": str(scene.ms_path),
            "REFERENCE": str(scene.reference_path), "TRUTH": str(scene.truth_path)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lcfusion.engine",
                                     description="lcfusion engine: train and apply land-cover "
                                     "models on raster time series.")
    parser.add_argument("--events", choices=("text", "json"), default="text",
                        help="progress as a progress bar (text) or JSON lines (json)")
    parser.add_argument("--verbose", action="store_true", help="show debug messages")
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in JOB_COMMANDS:
        sub = commands.add_parser(name, help=f"run a {name} job")
        sub.add_argument("job", help="path of the job.json file")
    commands.add_parser("check", help="report the Python, torch and GPUs the engine sees")
    info = commands.add_parser("model-info", help="show a model file's metadata")
    info.add_argument("model")
    report = commands.add_parser("model-report", help="write a model's training report (HTML)")
    report.add_argument("model")
    report.add_argument("report", help="the HTML file to write")
    probe = commands.add_parser("probe-compute", help="check a compute profile: connect, find "
                                "the Python, torch, GPUs and mpirun or Slurm")
    probe.add_argument("--profiles", help="the profiles TOML file (default: $LCFUSION_PROFILES)")
    probe.add_argument("profile", help="the profile's name")
    scene = commands.add_parser("sample-scene", help="generate the synthetic sample scene")
    scene.add_argument("folder")
    scene.add_argument("--size", type=int, default=160, help="grid side in 10 m pixels")
    scene.add_argument("--seed", type=int, default=7)
    scene.add_argument("--context", action="store_true",
                       help="add the context classes (orchard / wooded pasture, residential / "
                       "industrial), which only the arrangement of their pixels tells apart")
    return parser


def run(args: argparse.Namespace, reporter: Reporter) -> dict:
    if args.command in JOB_COMMANDS:
        from .jobs import Job
        from .modelfile.onnxfile import is_onnx

        job = Job.load(args.job)
        if job.command != args.command:
            raise LcfusionError(f"the job file is a {job.command} job, not {args.command}")
        onnx = args.command.startswith("classify-") and is_onnx(
            job.section("inputs").get("model") or "")
        if onnx and job.section("compute"):
            raise LcfusionError("an ONNX model classifies on this machine only; choose the "
                                "local compute profile, or the model's .lcfusion file to "
                                "classify on a compute target", "COMPUTE")
        function = job_command(args.command, onnx=onnx)
        rank_of_a_classification = bool(job.section("outputs").get("blocks"))
        if args.command.startswith(("train-", "classify-")) and not rank_of_a_classification:
            from .io.fill import report_fill_areas

            report_fill_areas(job, reporter)
        if args.command.startswith("train-"):
            from .families.repeats import run_training

            return run_training(job, reporter, function)
        return function(job, reporter)
    if args.command == "check":
        return _environment()
    if args.command == "model-info":
        return _model_info(args.model)
    if args.command == "model-report":
        return _model_report(args.model, args.report, reporter)
    if args.command == "probe-compute":
        return _probe_compute(args)
    return _sample_scene(args, reporter)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    reporter: Reporter = (JsonLinesReporter() if args.events == "json"
                          else ConsoleReporter(verbose=args.verbose))
    signal.signal(signal.SIGTERM, _cancel)
    if args.events == "json":
        watch_parent()
    try:
        outputs = run(args, reporter)
    except (CancelledError, KeyboardInterrupt):
        reporter.error("the run was cancelled; no output was written")
        return EXIT_CANCELLED
    except LcfusionError as exc:
        reporter.error(exc.message, exc.parameter)
        return EXIT_USER_ERROR
    except Exception as exc:  # noqa: BLE001 - a crash is reported, not hidden
        traceback.print_exc(file=sys.stderr)
        reporter.error(f"internal error: {type(exc).__name__}: {exc}")
        return EXIT_CRASH
    if args.events == "text" and args.command in ("check", "model-info",
                                                  "probe-compute"):
        print(json.dumps(outputs, indent=2, ensure_ascii=False))
    else:
        reporter.result(outputs)
    return EXIT_OK
