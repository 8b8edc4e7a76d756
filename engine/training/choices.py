"""The choices of the training loop's settings, in the order the plugin offers them. This
module imports nothing, so the QGIS plugin (which never imports torch) and the loop share one
list of each."""

#: How training pixels are drawn: a class uniformly, then a pixel of it ("class"), or a class
#: uniformly, then one of its polygons uniformly, then a pixel of it ("polygon"), so that a few
#: large polygons do not make up most of a class's samples.
SAMPLINGS = ("class", "polygon")
OPTIMIZERS = ("adam", "adamw")
#: What picks the kept weights, drives the plateau schedule and early stopping: the validation
#: loss (the papers), or the validation pixels' overall accuracy (a loss that rises through
#: over-confident errors while more pixels come out right stops a training too early).
MONITORS = ("loss", "accuracy")
#: Which epoch's weights the model file keeps: the best by the monitored validation score
#: (the papers); the last one, which chooses nothing on a few noisy validation patches
#: (after a cosine schedule has brought the learning rate down to zero); or of those two, the
#: one whose map is right on more of the validation polygons' pixels (all of them, not the
#: few patches or samples the monitored score sees).
KEEPS = ("best", "last", "best-or-last")
#: How the learning rate falls after the warm-up: cut by `plateau_factor` when the monitored
#: validation score has not improved for `plateau_patience` epochs (the papers), or a cosine
#: from the full rate to zero over the budget, whichever of the epochs and the time limit ends
#: first (a fixed schedule that a noisy validation score on a few polygons cannot cut short).
SCHEDULES = ("plateau", "cosine")
#: How a training sets the strength of the class priors (`inference.priors`): chosen on the
#: validation polygons, 1 (the training polygons' shares), or 0 (the balanced sample's
#: ranking).
PRIOR_SETTINGS = ("validation", "training", "balanced")
