"""lcfusion:sampledesign — a stratified random sample of a class map for area estimates."""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from .base import EngineAlgorithm
from .bindings.samples import SamplePointsBinding


class SampleDesign(EngineAlgorithm):
    algorithm_id = "sampledesign"
    title = "Sample design for area estimation"
    group_key = "evaluation"
    command = "sample-design"
    icon_file = "sample.svg"
    engine_packages = ()
    help_text = """
<p>Draws a <b>stratified random sample</b> of a class map's pixels for good-practice area
estimates and accuracy (Olofsson et al. 2014): the strata are the map classes, the sample
points are pixel centres drawn uniformly at random within each class (seeded, never on nodata,
never twice the same pixel). Label each point from reference data (field visits, very high
resolution imagery) by filling its <code>reference</code> field with the class code, then give
the layer to <i>Area estimates and accuracy</i>.</p>
<p><b>Sample size</b>: n = (&Sigma; W<sub>i</sub> S<sub>i</sub> / S(O))<sup>2</sup> (eq. 13 of
the paper), where W<sub>i</sub> is the share of the map's area in class i,
S<sub>i</sub> = &radic;(U<sub>i</sub>(1 &minus; U<sub>i</sub>)) with U<sub>i</sub> the
expected user's accuracy of class i, and S(O) the target standard error of overall
accuracy.</p>
<p><b>Allocation</b> (what this tool chooses): every class whose share of n in proportion to
its area would fall below the <b>minimum per class</b> gets the minimum; the rest of n is
shared among the other classes in proportion to their area (largest remainders). The total
is therefore larger than n when the minimums alone exceed it, and a class with fewer pixels
than its allocation has all its pixels in the sample.</p>
<h3>Parameters</h3>
<ul>
<li><b>Class map</b>: a single-band raster of integer class codes in a projected CRS; its
nodata pixels are no stratum. The map is read window by window.</li>
<li><b>Target standard error of overall accuracy</b>: S(O), e.g. 0.01.</li>
<li><b>Expected user's accuracy</b>: U<sub>i</sub> of every class, and optionally per class as
<code>code: accuracy</code> pairs separated by commas (<code>1: 0.7, 2: 0.6</code>); rare
change classes are often mapped less accurately.</li>
<li><b>Minimum points per class</b>: 50 to 100 are common.</li>
<li><b>Total sample size</b>: 0 computes n from the target standard error; another value
replaces n.</li>
<li><b>Random seed</b>: the same seed on the same map gives the same points.</li>
<li><b>Sample points</b>: a point layer in the map's CRS with <code>point_id</code>,
<code>stratum</code> and <code>map_class</code> (the class code under the point: strata are
map classes), <code>class_name</code> and an empty integer field <code>reference</code> to
fill.</li>
</ul>
<p>The outputs N_POINTS (points drawn) and N_TARGET (n of eq. 13) can be chained in the
graphical modeler.</p>
<p>Olofsson, Foody, Herold, Stehman, Woodcock and Wulder, "Good practices for estimating area
and assessing accuracy of land change", <i>Remote Sensing of Environment</i> 148:42-57,
2014.</p>
"""

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.add_class_map_input()
        target = QgsProcessingParameterNumber(
            "TARGET_SE", "Target standard error of overall accuracy",
            type=QgsProcessingParameterNumber.Type.Double, defaultValue=0.01, minValue=0.0001,
            maxValue=0.5)
        target.setMetadata({"widget_wrapper": {"decimals": 4}})
        self.add_setting(target, "target_se")
        accuracy = QgsProcessingParameterNumber(
            "USERS_ACCURACY", "Expected user's accuracy (every class)",
            type=QgsProcessingParameterNumber.Type.Double, defaultValue=0.9, minValue=0.01,
            maxValue=0.99)
        accuracy.setMetadata({"widget_wrapper": {"decimals": 2}})
        self.add_setting(accuracy, "users_accuracy")
        self.add_setting(QgsProcessingParameterString(
            "USERS_ACCURACIES", "Expected user's accuracy per class (code: accuracy, ...)",
            optional=True), "users_accuracies")
        self.add_int("MINIMUM", "Minimum points per class", "minimum", 50, minimum=2)
        self.add_int("TOTAL", "Total sample size (0: from the target standard error)", "total",
                     0)
        self.add_int("SEED", "Random seed", "seed", 0)
        self.bind(SamplePointsBinding(), QgsProcessingParameterFeatureSink(
            "OUTPUT", "Sample points", QgsProcessing.SourceType.TypeVectorPoint))
        for name, text in (("N_POINTS", "Sample points drawn"),
                           ("N_TARGET", "Sample size for the target standard error (eq. 13)")):
            self.addOutput(QgsProcessingOutputNumber(name, text))
