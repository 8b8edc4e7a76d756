"""What a bench run measures, and at which sizes."""

from __future__ import annotations

from dataclasses import dataclass, field

FAMILIES = ("fgunet", "mrfusion", "twinns", "randomforest")
LABELS = {"fgunet": "FG-UNET", "mrfusion": "MRFusion", "twinns": "TWINNS",
          "randomforest": "Random Forest"}


@dataclass(frozen=True)
class BenchConfig:
    """Sizes are sample-scene sides in 10 m pixels (MRFusion classifies the PAN, 4x finer).

    `sides[family]` is the small scene of the memory comparison; the large one has `scale`
    times its side (`scale` ** 2 times its pixels) and gives the throughput too.
    """

    name: str
    sides: dict[str, int]
    scale: int = 4
    train_side: int = 96
    #: Training settings of the small models the inference figures use (their accuracy does
    #: not matter) and of the MPI training figures.
    training: dict[str, dict] = field(default_factory=dict)
    #: Pixels of the per-pixel patch loops (figure 4) and side of the dense tile they lie in.
    loop_pixels: int = 256
    dense_tile: int = 256
    #: Side of the scene of the I/O figure, and repeats of each timing.
    io_side: int = 1024
    repeats: int = 3
    #: Scene side of the qgis_process comparison (MRFusion classification: 1 min at 384).
    qgis_side: int = 384
    #: The machine's float32 limit (`limits`): the side of the sgemm, the channels and side of
    #: the 3x3 convolution, and the timings of which each takes the best.
    matmul_size: int = 4096
    conv_channels: int = 256
    conv_side: int = 128
    peak_repeats: int = 5
    #: Side of the class map QGIS renders zoomed out (a Sentinel-2 tile at 10 m) and of the
    #: rendered image.
    render_side: int = 10980
    render_size: int = 1000
    #: Deep families whose training is also timed through mpirun with 1 and 2 ranks.
    mpi_families: tuple[str, ...] = ("fgunet", "mrfusion", "twinns")
    #: Families whose peak memory is also measured with the pixels added in rows only and in
    #: columns only (every family's is measured with them added in both).
    shape_families: tuple[str, ...] = FAMILIES
    #: Families exported to ONNX and classified with onnxruntime and with PyTorch (figure 10).
    onnx_families: tuple[str, ...] = FAMILIES
    #: Figure 11: the side of the sample scene copied `rank_copies` x `rank_copies` times into
    #: the large area FG-UNET classifies here and on ranks, and its tiles (one block each):
    #: by default cores of 512 pixels, 16 blocks that 2 ranks share evenly (the default tile
    #: of 512 would cut 2,048 pixels into 25 blocks, 13 for one rank and 12 for the other).
    rank_scene: int = 512
    rank_copies: int = 4
    rank_tiles: dict[str, int] = field(default_factory=lambda: {"tile_size": 552,
                                                                "margin": 20})
    #: The rank counts timed (the scaling ratio needs 1 and 2; the resume kills a rank of the
    #: most), and whether Slurm is started and timed too.
    rank_counts: tuple[int, ...] = (1, 2)
    rank_slurm: bool = True


TRAINING = {
    "fgunet": {"epochs": 2, "batch_size": 8, "patch_size": 32, "patches_per_epoch": 96,
               "validation_patches": 16, "max_shift": 8},
    "mrfusion": {"epochs": 2, "samples_per_epoch": 768, "batch_size": 32,
                 "validation_samples": 64},
    "twinns": {"epochs": 2, "samples_per_epoch": 1536, "batch_size": 64,
               "validation_samples": 128},
    "randomforest": {"n_trees": 100, "samples_per_class": 500},
}

TINY_TRAINING = {
    "fgunet": {"epochs": 1, "batch_size": 4, "patch_size": 32, "patches_per_epoch": 8,
               "validation_patches": 4, "max_shift": 8},
    "mrfusion": {"epochs": 1, "samples_per_epoch": 64, "batch_size": 16,
                 "validation_samples": 16},
    "twinns": {"epochs": 1, "samples_per_epoch": 64, "batch_size": 16,
               "validation_samples": 16},
    "randomforest": {"n_trees": 10, "samples_per_class": 50},
}

PRESETS = {
    "default": BenchConfig(
        "default", {"fgunet": 256, "mrfusion": 64, "twinns": 64, "randomforest": 256},
        training=TRAINING),
    "tiny": BenchConfig(
        "tiny", {"fgunet": 32, "mrfusion": 32, "twinns": 32, "randomforest": 32}, scale=2,
        train_side=96, training=TINY_TRAINING, loop_pixels=16, dense_tile=32, io_side=96,
        repeats=1, qgis_side=32, matmul_size=512, conv_channels=128, conv_side=64,
        peak_repeats=10, render_side=600, render_size=100, mpi_families=("fgunet",),
        shape_families=("fgunet",), onnx_families=("fgunet",), rank_scene=96, rank_copies=2,
        rank_tiles={"tile_size": 64, "margin": 12}, rank_counts=(1,), rank_slurm=False),
}
