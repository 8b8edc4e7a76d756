"""lcfusion:areaaccuracy — area estimates and accuracy with confidence intervals from a
labelled stratified sample."""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
)

from .base import EngineAlgorithm
from .bindings.samples import REFERENCE_FIELD, LabelledPointsBinding


class AreaAccuracy(EngineAlgorithm):
    algorithm_id = "areaaccuracy"
    title = "Area estimates and accuracy"
    group_key = "evaluation"
    command = "area-accuracy"
    icon_file = "evaluate.svg"
    engine_packages = ()
    help_text = """
<p>Estimates the <b>area of each class</b> with its 95 % confidence interval, and the
overall, user's and producer's accuracies with theirs, from a class map and a
<b>stratified random sample</b> of points labelled with their reference class, as good
practice requires (Olofsson et al. 2014). Counting the map's pixels gives biased areas: the
map's errors add to some classes and take from others; the sample corrects them.</p>
<p>The strata are the map classes: each point's stratum is the class of the map under it, and
each stratum weighs its mapped area (its pixel count, nodata excluded, times the pixel area of
the map's grid). Use the points of <i>Sample design for area estimation</i> on the same map, or
any stratified random sample of the map's classes: with another design (simple random or
systematic points work too, taken as post-strata), the estimates hold only when every class
has enough points.</p>
<h3>Parameters</h3>
<ul>
<li><b>Class map</b>: a single-band raster of integer class codes in a projected CRS (areas
in hectares).</li>
<li><b>Sample points</b> and <b>Reference class field</b>: the points and the field of their
reference class codes (integers, the map's codes). Points with an empty field, outside the map
or on nodata are left out, with a warning. Every map class needs at least 2 labelled points
(50 or more for useful intervals). When the layer has the <code>stratum</code> field of the
sample design, points whose stratum is not the map's class under them are warned of (the
sample was drawn on another map).</li>
<li><b>Report</b>: an HTML page with overall accuracy, the table of areas and accuracies with
their confidence intervals beside the mapped area, and the error matrix in estimated area
proportions (<b>rows = map, columns = reference</b>).</li>
<li><b>Estimates per class</b>: a CSV file, one row per class: code, class, mapped area,
sample points, estimated area, its 95 % CI and standard error (ha), user's and producer's
accuracy and their 95 % CI.</li>
<li><b>Error matrix</b>: a CSV of the matrix in estimated area proportions with row and column
totals.</li>
</ul>
<p>The outputs OA, OA_CI95, N_POINTS and TOTAL_AREA_HA can be chained in the graphical
modeler. Confidence intervals are ± 1.96 standard errors of the stratified estimators.</p>
<p>Olofsson, Foody, Herold, Stehman, Woodcock and Wulder, "Good practices for estimating area
and assessing accuracy of land change", <i>Remote Sensing of Environment</i> 148:42-57,
2014.</p>
"""

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.add_class_map_input()
        self.bind(
            LabelledPointsBinding(),
            QgsProcessingParameterFeatureSource(
                "POINTS", "Sample points (labelled)",
                [QgsProcessing.SourceType.TypeVectorPoint]),
            QgsProcessingParameterField(
                "REFERENCE_FIELD", "Reference class field (integer codes)",
                defaultValue=REFERENCE_FIELD, parentLayerParameterName="POINTS",
                type=QgsProcessingParameterField.DataType.Any))
        self.add_file_output("OUTPUT_HTML", "Report (HTML)", "report", ".html",
                             "HTML files (*.html)")
        self.add_file_output("OUTPUT_CSV", "Estimates per class (CSV)", "table", ".csv",
                             "CSV files (*.csv)")
        self.add_file_output("OUTPUT_MATRIX", "Error matrix in area proportions (CSV)",
                             "matrix", ".csv", "CSV files (*.csv)")
        for name, text in (("OA", "Overall accuracy (stratified estimate)"),
                           ("OA_CI95", "Overall accuracy: half-width of the 95 % CI"),
                           ("N_POINTS", "Labelled points used"),
                           ("TOTAL_AREA_HA", "Classified area of the map (ha)")):
            self.addOutput(QgsProcessingOutputNumber(name, text))
