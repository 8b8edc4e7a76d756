"""lcfusion:comparemaps — which of two class maps is better on one reference (McNemar)."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterRasterDestination,
)

from .base import EngineAlgorithm
from .bindings.outputs import RasterOutputBinding

#: The numbers a graphical model can chain: name, description.
NUMBERS = (("CHI_SQUARE", "McNemar chi-square (continuity-corrected)"),
           ("P_VALUE", "McNemar p-value (two-sided)"),
           ("ONLY_A", "Pixels right only in map A"), ("ONLY_B", "Pixels right only in map B"),
           ("OA_A", "Overall accuracy of map A"), ("OA_B", "Overall accuracy of map B"),
           ("MEAN_F1_A", "Mean F1 score of map A"), ("MEAN_F1_B", "Mean F1 score of map B"),
           ("N_PIXELS", "Pixels compared (reference pixels both maps classify)"))


class CompareMaps(EngineAlgorithm):
    algorithm_id = "comparemaps"
    title = "Compare two class maps (McNemar)"
    group_key = "evaluation"
    command = "compare-maps"
    icon_file = "evaluate.svg"
    engine_packages = ("scikit-learn",)
    help_text = """
<p>Tells whether one class map is significantly more accurate than another on the same
reference: McNemar's test on the reference pixels (or sample points) where exactly one of the
two maps is right, with both maps' overall accuracy and per-class F1. Use it to compare a deep
model's map with the Random Forest's, two training settings, or a new map with an old one.</p>
<p>Only the discordant pixels count: <i>b</i>, right in map A only, and <i>c</i>, right in map
B only. The statistic is chi-square with continuity correction,
(|<i>b</i> − <i>c</i>| − 1)² / (<i>b</i> + <i>c</i>), on 1 degree of freedom; below 25
discordant pixels the p-value is the two-sided exact binomial test's. <code>make
accuracy</code> runs the same test for its paired comparisons. Both accuracies are measured on
the same pixels: those of the reference that both maps classify.</p>
<h3>Parameters</h3>
<ul>
<li><b>Map A</b> and <b>Map B</b>: single-band rasters of integer class codes, on the
<b>same grid</b> (CRS, extent, pixel size). A map B on another grid is refused with the
<code>gdalwarp</code> call that puts it on map A's grid (nearest neighbour). Nodata pixels of
either map are left out (counted in the log and the report). A code that is not a reference
class counts as wrong; a class one map never gives still counts, with F1 0.</li>
<li><b>Reference polygons or sample points</b> and <b>Class field</b> (integer codes or text
names, as in <i>Evaluate a class map</i>), optionally a <b>Class name field</b> and a colour
field. Polygons label the pixels whose centre they hold; a point labels the pixel it falls
in. Pixels of one polygon are not independent, so with polygons the p-value is optimistic;
a probability sample of points is the test's ideal. The layer is reprojected to map A's
CRS.</li>
<li><b>Polygons of the split part</b>: <code>all</code>, or only the <code>train</code>,
<code>validation</code> or <code>test</code> features of a layer with a <code>part</code> field
(the split layer a training writes): with <code>test</code>, two models trained on the same
split are compared on the polygons neither saw.</li>
<li><b>Report</b>: an HTML page with the verdict, the 2 × 2 table of right and wrong pixels,
chi-square and p-value, both maps' per-class F1 and mean F1, and the area where the maps
differ. A temporary file when left out.</li>
<li><b>Disagreement raster</b> (optional, off by default): over map A's grid, on the compared
reference pixels 0 both right, 1 only A right, 2 only B right, 3 both wrong; elsewhere 4
where the maps give different classes; 255 (nodata) where they agree outside the reference
or a map is nodata. It is loaded with this legend.</li>
</ul>
<p>The outputs CHI_SQUARE, P_VALUE, ONLY_A, ONLY_B, OA_A, OA_B, MEAN_F1_A, MEAN_F1_B,
N_PIXELS and METHOD can be chained in the graphical modeler.</p>
<p>McNemar, <i>Psychometrika</i> 12(2):153-157, 1947; Foody, "Thematic map comparison:
evaluating the statistical significance of differences in classification accuracy",
<i>Photogrammetric Engineering &amp; Remote Sensing</i> 70(5):627-633, 2004.</p>
"""

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.add_class_map_input("MAP_A", "map_a", "Map A")
        self.add_class_map_input("MAP_B", "map_b", "Map B", sets_crs=False)
        self.add_reference(part_filter=True, points=True)
        self.add_file_output("OUTPUT_HTML", "Report (HTML)", "report", ".html",
                             "HTML files (*.html)")
        self.bind(RasterOutputBinding("OUTPUT_DISAGREEMENT", "disagreement",
                                      classes_key="DISAGREEMENT_CLASSES"),
                  QgsProcessingParameterRasterDestination(
                      "OUTPUT_DISAGREEMENT", "Disagreement raster", optional=True,
                      createByDefault=False))
        for name, text in NUMBERS:
            self.addOutput(QgsProcessingOutputNumber(name, text))
        self.addOutput(QgsProcessingOutputString(
            "METHOD", "How the p-value was computed (exact binomial or chi-square)"))
