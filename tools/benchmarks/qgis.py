"""Figure 7: the same classification through ``qgis_process`` (QGIS, the plugin, the engine in
a child process) and through the engine CLI, run alternately (ABBA) to cancel drift."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import lcfusion
from benchmarks.config import BenchConfig
from benchmarks.engine_runs import classify_job, engine_command, run_measured
from benchmarks.scenes import SceneFiles

QGIS_PROCESS = "qgis_process.bin"
FAMILY = "mrfusion"


def qgis_env(profile: Path) -> dict[str, str]:
    """A headless QGIS with a profile folder of its own that sees and enables lcfusion."""
    env = dict(os.environ)
    env.update({"QT_QPA_PLATFORM": "offscreen", "QGIS_CUSTOM_CONFIG_PATH": str(profile),
                "QGIS_OPTIONS_PATH": str(profile), "XDG_RUNTIME_DIR": str(profile),
                "QGIS_PLUGINPATH": str(Path(lcfusion.__file__).parent.parent),
                "LCFUSION_PYTHON": sys.executable})
    env.pop("QGIS_OPTS", None)
    profile.mkdir(parents=True, exist_ok=True)
    os.chmod(profile, 0o700)
    subprocess.run([QGIS_PROCESS, "plugins", "enable", "lcfusion"], env=env, check=True,
                   capture_output=True)
    return env


def qgis_figures(model: Path, scene: SceneFiles, work: Path, config: BenchConfig) -> dict:
    if shutil.which(QGIS_PROCESS) is None:
        return {"skipped": f"{QGIS_PROCESS} is not installed"}
    env = qgis_env(work / "qgis-profile")
    order = ("cli", "qgis", "qgis", "cli") if config.repeats > 1 else ("cli", "qgis")
    seconds: dict[str, list[float]] = {"cli": [], "qgis": []}
    for index, way in enumerate(order):
        folder = work / f"qgis-{index}-{way}"
        job = classify_job(folder, FAMILY, model, scene)
        if way == "cli":
            run = run_measured(engine_command(f"classify-{FAMILY}", job), folder / "cli.log")
        else:
            run = run_measured([QGIS_PROCESS, "run", f"lcfusion:classify{FAMILY}", "--",
                                f"MODEL={model}", f"PAN={scene.pan}", f"MS={scene.ms}",
                                f"OUTPUT={folder / 'map.tif'}",
                                f"OUTPUT_CONFIDENCE={folder / 'confidence.tif'}"],
                               folder / "qgis.log", env)
        seconds[way].append(run[0])
    cli = sum(seconds["cli"]) / len(seconds["cli"])
    qgis = sum(seconds["qgis"]) / len(seconds["qgis"])
    return {"family": FAMILY, "side": scene.side, "pixels": scene.pixels(FAMILY),
            "seconds": seconds, "cli_seconds": cli, "qgis_seconds": qgis,
            "overhead": (qgis - cli) / cli}
