"""The Markdown summary of a bench's results."""

from __future__ import annotations

from benchmarks.config import LABELS

TARGETS = {
    "efficiency": ("FG-UNET compute efficiency (of the float32 peak)", ">= 0.6"),
    "dense": ("MRFusion dense vs the batched patch loop", ">= 50x"),
    "memory": ("peak memory ratio at 16x the pixels, in rows, columns or both", "<= 1.1"),
    "reading": ("tile reader vs plain read", "<= 1.3x"),
    "qgis": ("qgis_process overhead", "< 5 %"),
    "render": ("QGIS render of a Sentinel-2 tile's class map zoomed out", "< 1 s"),
    "forest": ("Random Forest prediction vs scikit-learn n_jobs=-1; vs the numpy path",
               ">= 1/1.5x; >= 10x"),
    "ranks": ("FG-UNET classification of a large area, 1 rank / 2 ranks of one thread "
              "(mpirun; Slurm)", ">= 1.8x"),
    "resume": ("rerun after a rank was killed at half the blocks, time saved against a full "
               "run", "> 0"),
}




#: Said of an efficiency whose run executed more than every measurement of the machine's limit.
DISTURBED = ("limit disturbed: the run executed more GFLOP/s than every measurement of the "
             "machine's limit, which other work slowed; this fraction is not the machine's")


def _f(value, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_f(v) if not isinstance(v, str) else v for v in row) + " |"
              for row in rows]
    return lines + [""]


def summary(results: dict) -> str:
    machine = results["machine"]
    lines = [f"# lcfusion bench ({results['config']})", "",
             f"{machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, "
             f"GPU: {machine['gpu'] or 'none'}. Float32 peak (the best over the run of a large "
             "sgemm and a large convolution): " + ", ".join(
                 f"{d} {_f(v['peak'], 1)} GFLOP/s (sgemm {_f(v['sgemm'], 1)}, convolution "
                 f"{_f(v['convolution'], 1)})" for d, v in results["peak_gflops"].items())
             + f". Bench time {_f(results['seconds'], 0)} s.", "",
             "## Targets", ""]
    lines += table(["figure", "target", "measured"], [
        [TARGETS[key][0], TARGETS[key][1], text] for key, text in results["targets"].items()])
    lines += ["## 1-3. Inference: throughput, compute efficiency, memory", ""]
    rows = []
    for family, figures in results["inference"].items():
        flops = figures["flops_per_pixel"]
        for device, run in figures["devices"].items():
            memory = figures["memory"]
            rows.append([LABELS[family], device, run["pixels"], run["mpx_per_s"],
                         None if flops["network"] is None else flops["network"] / 1e6,
                         run.get("efficiency"), run.get("executed_efficiency"),
                         f"{_f(memory['small']['peak_rss_mb'], 0)} / "
                         f"{_f(memory['large']['peak_rss_mb'], 0)} "
                         f"({memory['pixel_ratio']:.0f}x the pixels)", memory["ratio"],
                         memory.get("tall_ratio", "not measured"),
                         memory.get("wide_ratio", "not measured")])
    lines += table(["family", "device", "map pixels", "Mpx/s", "MFLOP/px", "efficiency",
                    "efficiency (executed)", "peak RSS MB small / large", "RSS ratio",
                    "RSS ratio, pixels added in rows only", "in columns only"], rows)
    lines += ["FLOPs per pixel: " + "; ".join(
        f"{LABELS[f]}: {v['flops_per_pixel']['how']}" for f, v in results["inference"].items()),
        "Efficiency counts the network's FLOPs per map pixel; 'executed' also counts the "
        "overlap the tiles recompute; both over the float32 peak (the best of the sgemm and "
        "the convolution over the whole run, measured at its start and just before and after "
        "each run: other work can only slow them down).", ""]
    lines += efficiency_section(results["inference"], results["profiles"])
    lines += ["## 4. Dense / batched inference vs the per-pixel patch loop", ""]
    rows = []
    for family, figures in results["dense"].items():
        for batch in (1, 64):
            loop = figures[f"loop_batch_{batch}"]
            rows.append([LABELS[family], batch, loop["speedup"], loop["max_abs_difference"],
                         loop["same_class"]])
    lines += table(["family", "loop batch", "speed-up", "max |difference|", "same class"],
                   rows)
    lines += ["## 5. Training throughput (samples per second)", ""]
    rows = [[LABELS[family], f["local"]["samples_per_s"],
             f["local_float32"]["samples_per_s"] if "local_float32" in f else "not timed",
             f.get("bfloat16_vs_float32", ""),
             *(f[label]["samples_per_s"] if label in f else "not timed"
               for label in ("mpi_1", "mpi_2")), f.get("mpi_2_vs_mpi_1", "")]
            for family, f in results["training"].items()]
    lines += table(["family", "local", "local in float32", "local / float32", "mpirun 1 rank",
                    "mpirun 2 ranks", "2 / 1 ranks"], rows)
    not_timed = next((f["float32_not_timed"] for f in results["training"].values()
                      if "float32_not_timed" in f), None)
    lines += ["Local training runs in bfloat16 autocast where its device computes it natively "
              "(a GPU, a CPU with AVX-512 BF16 or AMX); "
              + (f"float32 not timed: {not_timed}." if not_timed else
                 "in float32 is the same training with the job setting mixed_precision false."),
              ""]
    reading = results["reading"]
    lines += ["## 6. Reading a multi-date stack", "",
              f"{reading['dates']} dates x {reading['bands_per_date']} bands, "
              f"{reading['side']}x{reading['side']} pixels ({_f(reading['files_mb'], 1)} MB of "
              f"deflated GeoTIFFs); {reading['tiles']} tiles of {reading['tile_side']} pixels "
              f"read {_f(reading['overlap'])}x the pixels.", ""]
    lines += table(["read", "seconds"], [[k, v] for k, v in reading["seconds"].items()])
    lines += [f"Tile reader / plain read: {_f(reading['ratio'])} (without the margins "
              f"{_f(reading['ratio_without_margins'])}).", ""]
    qgis = results["qgis"]
    lines += ["## 7. qgis_process vs the engine CLI", ""]
    if "skipped" in qgis:
        lines += [qgis["skipped"], ""]
    else:
        lines += [f"{LABELS[qgis['family']]} classification of {_f(qgis['pixels'])} pixels: "
                  f"engine CLI {_f(qgis['cli_seconds'], 1)} s, qgis_process "
                  f"{_f(qgis['qgis_seconds'], 1)} s, overhead {_f(100 * qgis['overhead'], 1)} %.",
                  ""]
    lines += render_section(results["render"], results["inference"])
    forest = results["forest"]
    lines += ["## 9. Random Forest prediction", "",
              f"{forest['trees']} trees (depth {forest['depth']}, {_f(forest['nodes'])} nodes) "
              f"over {forest['features']} S2 pixel features of {_f(forest['pixels'])} pixels, "
              f"{forest['threads']} threads; the trees rebuilt in "
              f"{_f(1000 * forest['build_seconds'], 1)} ms.", ""]
    rows = [["engine (scikit-learn trees from the arrays)", forest["mpx_per_s"]["engine"], "-",
             "-"]]
    for path, label in (("sklearn", "scikit-learn predict_proba, n_jobs=-1"),
                        ("numpy", "numpy, one level per step (before)")):
        compared = forest["engine_vs"][path]
        rows.append([label, forest["mpx_per_s"][path], f"{compared['max_abs_difference']:.1e}",
                     compared["same_class"]])
    lines += table(["prediction", "Mpx/s", "largest difference from the engine",
                    "same class as the engine"], [[label, _f(mpx, 3), *rest]
                                                  for label, mpx, *rest in rows])
    lines += [f"Engine / scikit-learn: {_f(forest['vs_sklearn'])}; engine / numpy: "
              f"{_f(forest['speedup_vs_numpy'], 1)}x.", ""]
    lines += onnx_section(results["onnx"])
    lines += ranks_section(results["ranks"])
    lines += ["## Hot operations (torch.profiler, one tile)", ""]
    for family, operations in results["profiles"].items():
        lines.append(f"- {LABELS[family]}: " + ", ".join(
            f"{o['operation']} {100 * o['share']:.0f} %" for o in operations))
    return "\n".join(lines) + "\n"


def efficiency_section(inference: dict, profiles: dict) -> list[str]:
    """Each deep family's fraction of the peak on the CPU, the machine's load meanwhile and
    its top operations (one tile, torch.profiler)."""
    lines = ["Compute efficiency on the CPU, with the top operations (share of the operations' "
             "own CPU time on one tile):", ""]
    for family, figures in inference.items():
        run = figures["devices"]["cpu"]
        if "efficiency" not in run:
            lines.append(f"- {LABELS[family]}: not applicable (no floating-point "
                         "multiply-adds)")
            continue
        top = ", ".join(f"{o['operation']} {100 * o['share']:.0f} %"
                        for o in profiles.get(family, [])[:4])
        lines.append(f"- {LABELS[family]}: {run['efficiency']:.2f} of the peak (executed "
                     f"{run['executed_efficiency']:.2f}, {_f(run['useful_gflops'], 1)} "
                     f"GFLOP/s, load average {run['load_average']:.1f})"
                     + (f"; {DISTURBED}" if run["limit_disturbed"] else "") + f"; top: {top}")
    return lines + [""]


def onnx_section(onnx: dict) -> list[str]:
    """Figure 10: onnxruntime vs PyTorch on the CPU, one classification each per family."""
    lines = ["## 10. ONNX: onnxruntime vs PyTorch (CPU, one run each)", ""]
    lines += table(["family", "pixels", "PyTorch Mpx/s", "onnxruntime Mpx/s",
                    "onnxruntime / PyTorch speed", "export s", ".onnx MB",
                    "largest difference"],
                   [[LABELS[family], _f(f["pixels"]), _f(f["torch_mpx_per_s"], 3),
                     _f(f["onnx_mpx_per_s"], 3), _f(f["ratio"]), _f(f["export_seconds"], 1),
                     _f(f["onnx_mb"], 1), f"{f['max_difference']:.1e}"]
                    for family, f in onnx.items()])
    return lines + [""]


def run_label(label: str) -> str:
    """"mpi_2" as "mpirun, 2 ranks"; "local" as "here, 1 thread"."""
    if label == "local":
        return "here, 1 thread"
    kind, ranks = label.split("_")
    return f"{'mpirun' if kind == 'mpi' else 'Slurm'}, {ranks} rank{'s' * (ranks != '1')}"


def ranks_section(ranks: dict) -> list[str]:
    """Figure 11: FG-UNET on one large area here and on ranks; the resume after a killed
    rank."""
    side, copies = ranks["scene_side"], ranks["copies"]
    lines = ["## 11. Classification on ranks (FG-UNET, one thread per rank)", "",
             f"The {side} x {side} sample scene copied {copies} x {copies} times (VRTs) into "
             f"an area of {ranks['side']:,} x {ranks['side']:,} pixels, cut into "
             f"{ranks['blocks']} blocks (one per {ranks['tile_size']}-pixel tile, margin "
             f"{ranks['margin']}); every map equals the local one pixel for pixel. Seconds are "
             "the engine's own (staging, starting the ranks and the merge included); load: "
             "the 1-minute load average before / after the run.", ""]
    local = ranks["runs"]["local"]["seconds"]
    lines += table(["run", "seconds", "local / run", "load"], [
        [run_label(label), run["seconds"], local / run["seconds"],
         f"{run['load_before'][0]:.2f} / {run['load_after'][0]:.2f}"]
        for label, run in ranks["runs"].items()])
    ratios = [f"{kind} {_f(ranks[f'{kind}_ratio'])}x" for kind in ("mpi", "slurm")
              if f"{kind}_ratio" in ranks]
    lines += ["1 rank / 2 ranks: " + (", ".join(ratios) or "not timed (1 rank only)") + "."
              + (f" Slurm: {ranks['slurm_skipped']}." if "slurm_skipped" in ranks else ""), ""]
    resume = ranks["resume"]
    killed = run_label(f"mpi_{resume['ranks']}")
    lines += [f"Resume: {killed}, the last killed (SIGKILL) once half "
              f"the blocks were written; the failed run took "
              f"{_f(resume['killed_run_seconds'], 1)} s and kept {resume['kept']} of "
              f"{resume['blocks']} blocks; the rerun classified the other "
              f"{resume['blocks'] - resume['kept']} in {_f(resume['seconds'], 1)} s against "
              f"{_f(resume['full_seconds'], 1)} s for a full run: "
              f"{_f(resume['saved_seconds'], 1)} s ({_f(100 * resume['saved_share'], 0)} %) "
              f"saved (load {resume['load_before'][0]:.2f} / {resume['load_after'][0]:.2f}).",
              ""]
    return lines


def render_section(render: dict, inference: dict) -> list[str]:
    """Figure 8: QGIS's render of a class map zoomed out, with and without overviews; the
    overviews' share of a classification."""
    lines = ["## 8. QGIS rendering a class map zoomed out (QgsMapRendererParallelJob)", ""]
    if "skipped" in render:
        return lines + [render["skipped"], ""]
    side, size = render["side"], render["output_size"]
    lines += [f"An 8-bit class map of {side:,} x {side:,} pixels rendered to its full extent "
              f"at {size} x {size} pixels, in a fresh QGIS per render (median of "
              f"{len(render['renders']['with'])}); overviews at 1/"
              + ", 1/".join(map(str, render["factors"])) + ".", ""]
    lines += table(["map", "render seconds", "open seconds", "file MB"], [
        [f"{label} overviews", render["seconds"][label],
         min(r["open_seconds"] for r in render["renders"][label]), render["file_mb"][label]]
        for label in ("without", "with")])
    lines += [f"Without / with overviews: {_f(render['ratio'], 1)}x. Building the overviews "
              f"(mode) took {_f(render['overview_seconds'])} s, as a share of classifying as "
              "many pixels at each family's CPU throughput: " + ", ".join(
                  f"{LABELS[f]} {_f(100 * share, 2)} %"
                  for f, share in render["overview_share"].items()) + ". Measured on the "
              "inference figures' large scenes (overviews of the class and confidence maps "
              "over the whole classification): " + ", ".join(
                  f"{LABELS[f]} {_f(100 * run['overview_seconds'] / run['seconds'], 2)} %"
                  for f, run in ((f, v["devices"]["cpu"]) for f, v in inference.items()))
              + ".", ""]
    return lines
